"""The app's web server: a small WSGI application (Werkzeug, already installed with TensorBoard)
serving one page and a JSON API over :mod:`avalanche_ext.api`, the run folders and training jobs.

    python app.py [--host 127.0.0.1] [--port 7860] [--work-dir work_dirs] [--configs DIR ...]
                  [--auth USER:PASSWORD]

Safe by default: it listens on 127.0.0.1; any other address needs ``--auth`` (HTTP basic
authentication), else it refuses to start with one ``error:`` line. The page picks configs from
the project's ``configs/`` and the folders named with ``--configs``, never a typed path; uploads
are images only, size-limited and decoded with Pillow's decompression-bomb guard.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import ipaddress
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from avalanche_ext.app import forms
from avalanche_ext.app.jobs import TRAIN_SCRIPT, JobManager
from avalanche_ext.app.runs import RunIndex, compare_runs, run_summary
from avalanche_ext.errors import ConfigError
from avalanche_ext.history import read_history
from avalanche_ext.images import MAX_IMAGE_BYTES, decode_image

__all__ = ["App", "check_host", "main", "shipped_configs"]

REPO = Path(__file__).resolve().parents[2]
STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD_BYTES = 3 * MAX_IMAGE_BYTES
MAX_UPLOAD_FILES = 32
_LOOPBACK_NAMES = {"localhost"}


def check_host(host: str, auth: str | None) -> None:
    """Refuses a non-loopback address without authentication.

    Raises:
        ConfigError: another address and no ``USER:PASSWORD``.
    """
    try:
        loopback = host in _LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not auth:
        raise ConfigError(
            f"--host {host}: listening beyond this machine needs --auth USER:PASSWORD "
            "(or AVALANCHE_APP_AUTH); without it the app only listens on 127.0.0.1"
        )
    if auth and ":" not in auth:
        raise ConfigError("--auth: expected USER:PASSWORD")


def shipped_configs(extra: list[Path]) -> dict[str, Path]:
    """Config id -> file: the project's ``configs/`` (``_base_`` pieces left out) and the folders
    named on the command line."""
    found: dict[str, Path] = {}
    base = REPO / "configs"
    if base.is_dir():
        for path in sorted(base.rglob("*.py")):
            if "_base_" not in path.parts:
                found[path.relative_to(REPO).as_posix()] = path
    for i, folder in enumerate(extra):
        for path in sorted(Path(folder).rglob("*.py")):
            if "_base_" not in path.parts:
                found[f"extra{i}/{path.relative_to(folder).as_posix()}"] = path.resolve()
    return found


class App:
    """The WSGI application.

    Args:
        work_dirs: run folders are listed under these; new runs go into the first.
        config_dirs: extra folders of configs the page may offer.
        auth: ``USER:PASSWORD`` for HTTP basic authentication, or None.
        device: the default device of new runs and of inference.
    """

    def __init__(
        self,
        work_dirs: list[Path],
        config_dirs: list[Path] | None = None,
        auth: str | None = None,
        device: str = "cpu",
    ):
        if not TRAIN_SCRIPT.is_file():
            raise ConfigError(
                f"{TRAIN_SCRIPT}: not found; the app runs from a checkout (pip install -e .)"
            )
        self.index = RunIndex(work_dirs)
        self.configs = shipped_configs(list(config_dirs or []))
        self.auth = auth
        self.device = device
        self.jobs = JobManager(REPO)
        self._predictors: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.urls = Map(
            [
                Rule("/", endpoint="page"),
                Rule("/api/configs", endpoint="configs"),
                Rule("/api/config", endpoint="config"),
                Rule("/api/train", endpoint="train", methods=["POST"]),
                Rule("/api/jobs", endpoint="jobs"),
                Rule("/api/jobs/<int:job_id>/stop", endpoint="stop", methods=["POST"]),
                Rule("/api/resume", endpoint="resume", methods=["POST"]),
                Rule("/api/runs", endpoint="runs"),
                Rule("/api/infer", endpoint="infer", methods=["POST"]),
                Rule("/api/compare", endpoint="compare", methods=["POST"]),
                Rule("/api/finetune", endpoint="finetune", methods=["POST"]),
                Rule("/report", endpoint="report"),
            ]
        )

    # ------------------------------------------------------------ plumbing
    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_UPLOAD_BYTES
        return self.dispatch(request)(environ, start_response)

    def _authorized(self, request: Request) -> bool:
        if not self.auth:
            return True
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(self.auth.encode()).decode()
        return hmac.compare_digest(header.encode(), expected.encode())

    def dispatch(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response(
                "authentication required", 401, {"WWW-Authenticate": 'Basic realm="app"'}
            )
        try:
            endpoint, values = self.urls.bind_to_environ(request.environ).match()
            return getattr(self, f"on_{endpoint}")(request, **values)
        except ConfigError as err:
            return _json({"error": str(err)}, 400)
        except HTTPException as err:
            if err.code == 413:
                limit = MAX_UPLOAD_BYTES // 2**20
                return _json({"error": f"upload too large (over {limit} MiB in all)"}, 413)
            return _json({"error": err.description or err.name}, err.code or 500)
        except Exception as err:  # noqa: BLE001  the page shows it; the app stays up
            return _json({"error": f"internal error: {type(err).__name__}: {err}"}, 500)

    # ------------------------------------------------------------ pages
    def on_page(self, request: Request) -> Response:
        return Response((STATIC / "index.html").read_bytes(), mimetype="text/html")

    def on_report(self, request: Request) -> Response:
        run_dir = self.index.resolve(request.args.get("run", ""))
        report = run_dir / "report.html"
        if not report.is_file():
            raise ConfigError(f"{run_dir.name}: no report yet")
        return Response(report.read_bytes(), mimetype="text/html")

    # ------------------------------------------------------------ train
    def on_configs(self, request: Request) -> Response:
        return _json({"configs": sorted(self.configs), "device": self.device})

    def _config(self, config_id: str):
        from avalanche_ext.config import load_config  # noqa: PLC0415

        if config_id not in self.configs:
            raise ConfigError(f"config {config_id!r}: not one the app offers")
        return self.configs[config_id], load_config(self.configs[config_id])

    def on_config(self, request: Request) -> Response:
        _, cfg = self._config(request.args.get("id", ""))
        return _json({"knobs": forms.knob_dicts(cfg)})

    def on_train(self, request: Request) -> Response:
        body = _body(request)
        path, cfg = self._config(str(body.get("config", "")))
        options, seed = forms.cfg_options(cfg, dict(body.get("values") or {}))
        work = self.index.roots[0] / path.stem
        args = [str(path), "--work-dir", str(work), "--device", _device(body, self.device)]
        if seed is not None:
            args += ["--seed", str(seed)]
        if options:
            args += ["--cfg-options", *options]
        job = self.jobs.start(args, label=path.stem)
        return _json({"job": job.describe()})

    def on_jobs(self, request: Request) -> Response:
        out = []
        for job in sorted(self.jobs.jobs.values(), key=lambda j: j.id, reverse=True):
            info = job.describe()
            info["history"] = read_history(job.run_dir) if job.run_dir else []
            info["run"] = self.index.run_id(job.run_dir) if job.run_dir else None
            out.append(info)
        return _json({"jobs": out})

    def on_stop(self, request: Request, job_id: int) -> Response:
        job = self.jobs.stop(job_id)
        if job is None:
            raise ConfigError(f"job {job_id}: unknown")
        return _json({"job": job.describe()})

    def on_resume(self, request: Request) -> Response:
        run_dir = self.index.resolve(str(_body(request).get("run", "")))
        if os.path.realpath(run_dir) in self.jobs.running_dirs():
            raise ConfigError(f"{run_dir.name}: already running")
        if not (run_dir / "checkpoints" / "latest.pth").is_file():
            raise ConfigError(f"{run_dir.name}: no checkpoint to resume from")
        args = [str(run_dir / "config.py"), "--resume", str(run_dir), "--device", self.device]
        job = self.jobs.start(args, label=f"resume {run_dir.parent.name}/{run_dir.name}")
        return _json({"job": job.describe()})

    def on_finetune(self, request: Request) -> Response:
        """The source document's Compare action: the run's model trained on with another loss
        for N epochs, as a new run beside it."""
        body = _body(request)
        run_dir = self.index.resolve(str(body.get("run", "")))
        ckpt = run_dir / "checkpoints" / "latest.pth"
        if not ckpt.is_file():
            raise ConfigError(f"{run_dir.name}: no checkpoint to fine-tune")
        loss = str(body.get("loss", ""))
        if loss not in forms._loss_names():
            raise ConfigError(f"loss {loss!r}: not a registered loss")
        try:
            epochs = int(body.get("epochs", 1))
        except (TypeError, ValueError):
            raise ConfigError("epochs: expected a whole number") from None
        if not 1 <= epochs <= 1000:
            raise ConfigError("epochs: between 1 and 1000")
        options = [f"load_from={ckpt}", f"cl_strategy.loss.type={loss}"]
        options.append(f"cl_strategy.train_epochs={epochs}")
        work = run_dir.parent.parent / f"{run_dir.parent.name}_finetune_{loss}"
        args = [str(run_dir / "config.py"), "--work-dir", str(work), "--device", self.device]
        job = self.jobs.start([*args, "--cfg-options", *options], label=f"fine-tune {loss}")
        info = job.describe()
        info["source"] = self.index.run_id(run_dir)
        return _json({"job": info})

    # ------------------------------------------------------------ runs, infer, compare
    def on_runs(self, request: Request) -> Response:
        running = self.jobs.running_dirs()
        errors = {
            os.path.realpath(j.run_dir): j.error for j in self.jobs.jobs.values() if j.run_dir
        }
        out = []
        for run_dir in self.index.folders():
            real = os.path.realpath(run_dir)
            info = run_summary(run_dir, real in running, errors.get(real))
            info["id"] = self.index.run_id(run_dir)
            out.append(info)
        return _json({"runs": out})

    def _predictor(self, run_dir: Path):
        from avalanche_ext import api  # noqa: PLC0415

        key = str(run_dir)
        stamp = (run_dir / "checkpoints" / "latest.pth").stat().st_mtime
        with self._lock:
            cached = self._predictors.get(key)
            if cached is None or cached[0] != stamp:
                cached = (stamp, api.load_model(run_dir, device=self.device))
                self._predictors[key] = cached
        return cached[1]

    def on_infer(self, request: Request) -> Response:
        run_dir = self.index.resolve(request.form.get("run", ""))
        files = request.files.getlist("images")
        if not files:
            raise ConfigError("no image uploaded")
        if len(files) > MAX_UPLOAD_FILES:
            raise ConfigError(f"{len(files)} files: at most {MAX_UPLOAD_FILES} at once")
        from avalanche_ext.api import find_checkpoint  # noqa: PLC0415

        find_checkpoint(run_dir)
        predictor = self._predictor(run_dir)
        out = []
        for upload in files:
            name = os.path.basename(upload.filename or "image")
            try:
                image = decode_image(upload.read(MAX_IMAGE_BYTES + 1), name)
                pred = predictor.predict([image])[0]
                pred.source = name
                out.append(pred.to_dict())
            except ConfigError as err:
                out.append({"source": name, "error": str(err)})
        return _json({"predictions": out, "discovery": predictor.discovery is not None})

    def on_compare(self, request: Request) -> Response:
        ids = list(_body(request).get("runs") or [])
        if len(ids) < 1:
            raise ConfigError("choose at least one run to compare")
        return _json(compare_runs([self.index.resolve(str(i)) for i in ids]))


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, allow_nan=False, default=str), status, mimetype="application/json"
    )


def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(request.get_data(as_text=True) or "{}")
    except ValueError:
        raise ConfigError("the request is not JSON") from None
    if not isinstance(data, dict):
        raise ConfigError("the request is not a JSON object")
    return data


def _device(body: dict[str, Any], default: str) -> str:
    device = str(body.get("device") or default)
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device {device!r}: expected cpu, cuda or cuda:N")
    return device


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train, infer and compare in a browser.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (0: any free port)")
    parser.add_argument(
        "--work-dir",
        action="append",
        default=None,
        help="folder of run folders (repeatable; default: work_dirs)",
    )
    parser.add_argument(
        "--configs",
        action="append",
        default=[],
        help="another folder of configs the page may offer (repeatable)",
    )
    parser.add_argument(
        "--auth",
        default=os.environ.get("AVALANCHE_APP_AUTH"),
        help="USER:PASSWORD (required for any address but loopback)",
    )
    parser.add_argument("--device", default="cpu", help="device of runs and inference (cpu)")
    return parser.parse_args(argv)


def serve(app: App, host: str, port: int, ready: Callable[[str], None] = print) -> None:
    """Serves until interrupted; ``ready`` gets the URL once the socket listens."""
    from werkzeug.serving import make_server  # noqa: PLC0415

    server = make_server(host, port, app, threaded=True)
    ready(f"serving on http://{host}:{server.server_port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.jobs.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_host(args.host, args.auth)
        for folder in args.configs:
            if not Path(folder).is_dir():
                raise ConfigError(f"--configs {folder}: no such folder")
        app = App(
            [Path(w) for w in (args.work_dir or ["work_dirs"])],
            [Path(c) for c in args.configs],
            args.auth,
            args.device,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    serve(app, args.host, args.port, lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
