"""Every shipped config loads; the CIFAR-based ones build completely (dry run) on tiny subsets."""

from __future__ import annotations

from pathlib import Path

import pytest

from avalanche_ext.config import load_config
from avalanche_ext.runner import Experiment

CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.py")
    if "_base_" not in p.parts
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_loads(path):
    cfg = load_config(path)
    assert cfg.scenario and cfg.model and cfg.cl_strategy


CIFAR_CONFIGS = [p for p in CONFIGS if "CIFAR100" in p.read_text() or p.name.startswith("demo")]


@pytest.mark.slow
@pytest.mark.parametrize("path", CIFAR_CONFIGS, ids=lambda p: p.name)
def test_cifar_configs_build(path):
    cfg = load_config(path, {"scenario.train_subset": 4, "scenario.test_subset": 2})
    exp = Experiment(cfg)
    summary = exp.describe()
    assert summary["train_stream"] and summary["test_stream"]
    assert summary["model"]["num_params"] > 0
