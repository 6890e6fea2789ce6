"""Shared fixtures: the package's import fixes first, a seconds-long synthetic config, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import avalanche_ext  # noqa: F401  (torchvision/avalanche fixes before anything else)

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_CONFIG = REPO / "configs" / "synthetic" / "naive_resnet8_1ep_synthetic.py"


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


@pytest.fixture
def cli():
    return run_cli
