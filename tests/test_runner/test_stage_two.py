"""``load_from`` with ``cl_strategy.train_epochs=0``: only the plugins' after-training stage runs on
the loaded model, and it ends exactly where the whole two-stage run ends (the long-tail benchmark
relies on this to share the cross-entropy stage between cRT, GML and Model Doctor)."""

from __future__ import annotations

import pytest
import torch

from avalanche_ext.checkpoint import load_checkpoint
from avalanche_ext.config import load_config, validate_config
from avalanche_ext.errors import ConfigError
from avalanche_ext.runner import run
from tests.conftest import SYNTHETIC_CONFIG

pytestmark = pytest.mark.slow

# one experience of all six classes, 3 epochs: enough for the second stage to change the classifier
BASE = {
    "scenario.num_experiences": 1,
    "cl_strategy.train_epochs": 3,
    "loggers": [],
    "seed": 3,
}
STAGE_TWO = [dict(type="GMLRetrainingPlugin", epochs=4, lr=0.1, ensemble=False)]


def _run(tmp_path, name: str, **options) -> tuple[dict, dict]:
    cfg = load_config(SYNTHETIC_CONFIG, {**BASE, **options})
    results = run(cfg, work_dir=str(tmp_path / name))
    model = load_checkpoint(tmp_path / name / "latest" / "checkpoints" / "latest.pth")["model"]
    return results, model


def test_second_stage_from_a_checkpoint_equals_the_whole_run(tmp_path):
    whole, whole_model = _run(tmp_path, "whole", **{"cl_strategy.plugins": STAGE_TWO})
    first, first_model = _run(tmp_path, "first")
    ckpt = tmp_path / "first" / "latest" / "checkpoints" / "latest.pth"
    second, second_model = _run(
        tmp_path,
        "second",
        **{"cl_strategy.plugins": STAGE_TWO, "load_from": str(ckpt), "cl_strategy.train_epochs": 0},
    )
    # the second stage did something (the classifier moved) ...
    head = [k for k in first_model if k.startswith("head.") and k.endswith("weight")]
    assert head and not all(torch.equal(first_model[k], second_model[k]) for k in head)
    # ... and nothing else: the backbone is the loaded one, bit for bit
    backbone = [k for k in first_model if k.startswith("backbone.")]
    assert all(torch.equal(first_model[k], second_model[k]) for k in backbone)
    # and the result is the whole two-stage run's
    assert all(torch.equal(whole_model[k], second_model[k]) for k in whole_model)
    assert second["final"]["stream_accuracy"] == whole["final"]["stream_accuracy"]


def test_zero_epochs_needs_trained_weights(synthetic_cfg):
    synthetic_cfg.cl_strategy.train_epochs = [2, 0]
    with pytest.raises(ConfigError, match="cl_strategy.train_epochs.*0 only with load_from"):
        validate_config(synthetic_cfg)
    synthetic_cfg.load_from = "weights.pth"
    validate_config(synthetic_cfg)  # accepted: the second experience runs the plugins only
    synthetic_cfg.cl_strategy.train_epochs = -1
    with pytest.raises(ConfigError, match="cl_strategy.train_epochs"):
        validate_config(synthetic_cfg)
