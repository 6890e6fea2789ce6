#!/usr/bin/env python
"""The app's answer times and the API's inference speed, in one run.

    python benchmarks/app_latency.py [--config configs/synthetic/naive_resnet8_1ep_synthetic.py]
        [--epochs 30] [--samples 50] [--images 1000] [--repeats 200] [--json OUT]

Measures, on this machine:
- start to first page: ``python app.py`` started, until ``GET /`` answers;
- page answer time while a run trains: ``GET /`` and ``GET /api/jobs`` (the page's 1 s poll)
  sampled ``--samples`` times while the app's child process trains ``--config`` for ``--epochs``;
- one-image inference: :meth:`avalanche_ext.api.Predictor.predict` on one image of the trained
  run's size, after loading (median of ``--repeats``);
- a folder: ``--images`` PNG files predicted in batches of 256 (images/s, file decoding included).

Goals: the page answers within 1 s while a run trains on every core, start to first page under
10 s, one 32x32 image under 50 ms. Timings on a shared or loaded machine are meaningless: run it
on a quiet one. Everything is written to a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import avalanche_ext  # noqa: E402, F401  (fixes before torchvision/avalanche)

SYNTHETIC = "configs/synthetic/naive_resnet8_1ep_synthetic.py"


def _get(url: str, data: bytes | None = None) -> tuple[float, dict | str]:
    """Seconds to answer, and the answer (JSON when it is)."""
    start = time.perf_counter()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    elapsed = time.perf_counter() - start
    try:
        return elapsed, json.loads(body)
    except ValueError:
        return elapsed, body.decode("utf-8", "replace")


def start_app(work: Path) -> tuple[subprocess.Popen, str, float]:
    """The app on a free port; its URL and the seconds from start to the first page."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--port", "0", "--work-dir", str(work)],
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("serving on "):
        proc.kill()
        raise SystemExit(f"error: the app did not start: {line}")
    url = line.removeprefix("serving on ")
    _get(url + "/")
    return proc, url, time.perf_counter() - t0


def page_latency(url: str, config: str, epochs: int, samples: int) -> dict[str, Any]:
    """Answer times of the page and of its poll while the app trains ``config``."""
    body = {"config": config, "values": {"cl_strategy.train_epochs": str(epochs)}}
    _get(url + "/api/train", json.dumps(body).encode())
    page, poll, during = [], [], 0
    run = None
    for _ in range(samples):
        seconds, _ = _get(url + "/")
        page.append(seconds)
        seconds, jobs = _get(url + "/api/jobs")
        poll.append(seconds)
        job = jobs["jobs"][0]
        during += job["status"] == "running"
        run = job["run_dir"] or run
        time.sleep(0.2)
    while True:  # the run must finish: the inference below uses it
        _, jobs = _get(url + "/api/jobs")
        job = jobs["jobs"][0]
        if job["status"] != "running":
            break
        time.sleep(0.5)
    if job["status"] != "completed":
        raise SystemExit(f"error: the benchmark run {job['status']}: {job['error']}")
    return {
        "samples_while_training": during,
        "page_median_s": statistics.median(page),
        "page_max_s": max(page),
        "poll_median_s": statistics.median(poll),
        "poll_max_s": max(poll),
        "run_dir": job["run_dir"] or run,
    }


def inference(run_dir: str, images: int, repeats: int, folder: Path) -> dict[str, Any]:
    """One-image latency after loading, and a folder of ``images`` PNGs in batches."""
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from avalanche_ext import api  # noqa: PLC0415

    t0 = time.perf_counter()
    predictor = api.load_model(run_dir)
    load_s = time.perf_counter() - t0
    side = predictor.input_size or 32
    rng = np.random.default_rng(0)
    one = Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
    predictor.predict([one])  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.predict([one])
        times.append(time.perf_counter() - t)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
            folder / f"{i:05d}.png"
        )
    files = sorted(folder.glob("*.png"))
    t = time.perf_counter()
    preds = predictor.predict(files, batch_size=256)
    folder_s = time.perf_counter() - t
    assert len(preds) == images
    return {
        "image_side": side,
        "load_s": load_s,
        "one_image_median_ms": 1000 * statistics.median(times),
        "folder_images": images,
        "folder_s": folder_s,
        "folder_images_per_s": images / max(folder_s, 1e-9),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=SYNTHETIC, help="a config the app offers")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the training run")
    parser.add_argument("--samples", type=int, default=50, help="page requests while it trains")
    parser.add_argument("--images", type=int, default=1000, help="images of the folder")
    parser.add_argument("--repeats", type=int, default=200, help="one-image predictions")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, first_page_s = start_app(Path(tmp) / "runs")
        try:
            page = page_latency(url, args.config, args.epochs, args.samples)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        infer = inference(page.pop("run_dir"), args.images, args.repeats, Path(tmp) / "images")
    out = {"start_to_first_page_s": first_page_s, **page, **infer, "config": args.config}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
