"""Shared fixtures: the package's import fixes first, a seconds-long synthetic config, CLI runners."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

import avalanche_ext  # noqa: F401  (torchvision/avalanche fixes before anything else)

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: each worker and every process it starts
    # (CLI runs, torchrun ranks) computes on one thread, so no two OpenMP thread pools spin on the
    # same core (that contention made runs ~10x slower on the 2-core machines).
    import torch  # noqa: PLC0415

    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
SYNTHETIC_CONFIG = REPO / "configs" / "synthetic" / "naive_resnet8_1ep_synthetic.py"
# --cfg-options that shrink the synthetic config to a second-long run (no log file).
TINY_OPTIONS = [
    "scenario.images_per_class=6",
    "scenario.test_images_per_class=2",
    "scenario.image_size=8",
    "loggers=[]",
]


def pytest_collection_modifyitems(config, items):
    import torch  # noqa: PLC0415

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def synthetic_cfg():
    """A loaded copy of the synthetic config (3 experiences x 2 classes, ResNet-8, 1 epoch)."""
    from avalanche_ext.config import load_config  # noqa: PLC0415

    return load_config(SYNTHETIC_CONFIG)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Runs ``train_config.py`` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "train_config.py"), *args],
        cwd=str(cwd or REPO),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 0):
    """``train_config.main(args)`` in this process, as a CompletedProcess (exit code, stdout, stderr).

    The same code path as the command line without a process start (5-7 s of imports each on
    these machines): an uncaught exception becomes exit 1 with its traceback on stderr, like
    Python's. ``run_cli`` keeps the real subprocess for what only a process shows (imports from
    nothing, the top-level traceback of ``--debug``, signals). ``timeout`` is accepted for
    signature parity and ignored.
    """
    import train_config  # noqa: PLC0415

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    code: int
    try:
        os.environ.update(env or {})
        os.chdir(cwd or REPO)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = int(train_config.main(list(args)) or 0)
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - reported like the interpreter would
                traceback.print_exc(file=err)
                code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """train_config.py in-process (:func:`run_main`)."""
    return run_main


@pytest.fixture
def cli_process():
    """train_config.py in a real subprocess (:func:`run_cli`)."""
    return run_cli
