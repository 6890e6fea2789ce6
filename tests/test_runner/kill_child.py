"""The processes behind tests/test_runner/test_kill_anywhere.py (forked from a forkserver that has
already imported the package; not a test module). Each runs ``train_config.main`` and SIGKILLs
itself at one chosen instant: before or after the n-th file rename (every checkpoint, ``latest``,
``config.py``, ``results.json`` and report file is written as a temporary file renamed into
place), half-way through the n-th ``torch.save``, or when the n-th evaluation starts."""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import torch

import avalanche_ext  # noqa: F401  (the package's fixes before avalanche/torchvision)

REPO = Path(__file__).resolve().parents[2]
PRELOAD = ["kill_child", "train_config", "avalanche_ext.runner"]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str, count: int) -> None:
    """Makes this process SIGKILL itself at the ``count``-th occurrence of ``point``."""
    from avalanche.training.templates.base import BaseTemplate  # noqa: PLC0415

    seen = {"replace": 0, "save": 0, "eval": 0}
    replace, save, evaluate = os.replace, torch.save, BaseTemplate.eval

    def _replace(src, dst, *args, **kwargs):
        seen["replace"] += 1
        if point == "before_replace" and seen["replace"] == count:
            _die()
        replace(src, dst, *args, **kwargs)
        if point == "after_replace" and seen["replace"] == count:
            _die()

    def _save(obj, f, *args, **kwargs):
        seen["save"] += 1
        if point == "half_save" and seen["save"] == count:
            buffer = io.BytesIO()
            save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            Path(f).write_bytes(data[: len(data) // 2])
            _die()
        return save(obj, f, *args, **kwargs)

    def _eval(self, *args, **kwargs):
        seen["eval"] += 1
        if point == "eval" and seen["eval"] == count:
            _die()
        return evaluate(self, *args, **kwargs)

    os.replace, torch.save, BaseTemplate.eval = _replace, _save, _eval


def run_killed(argv: list[str], point: str, count: int, threads: int) -> None:
    """``train_config.py ARGV`` in this process, killed at the chosen instant."""
    import train_config  # noqa: PLC0415

    torch.set_num_threads(threads)
    os.chdir(REPO)
    _arm(point, count)
    sys.exit(train_config.main(argv))
