"""The ablation benchmark's variants are the stages the issue names, each one change away from the
full pipeline, and its table shows mean +- std over seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from avalanche_ext.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location(
        "ncd_ablation", ROOT / "benchmarks" / "ncd_ablation.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_change_one_stage_each():
    ablation = _module()
    cfg = load_config(ROOT / ablation.DEFAULT_CONFIG)
    full = [dict(p) for p in cfg.cl_strategy.plugins]
    variants = ablation.variants(cfg)
    assert variants["full pipeline"] is None
    assert variants["oracle gate"][0]["type"] == "OracleGatePlugin"
    assert variants["no gate (pool everything)"][0]["threshold"] == "all"
    assert variants["no update (floor)"][0]["trigger_size"] > 10**6
    assert variants["no replay"][2]["replay_weight"] == 0.0
    assert variants["no calibration"][2]["calibrate_new_bias"] is False
    assert variants["LwF baseline"][2]["type"] == "LwFPlugin"
    for name, plugins in variants.items():
        if plugins is None or name == "LwF baseline":
            continue
        changed = [i for i, (a, b) in enumerate(zip(full, plugins)) if a != b]
        assert len(changed) == 1, (name, changed)


def test_table_reports_mean_and_std_over_seeds():
    ablation = _module()
    keys = ["old_acc", "new_acc", "all_acc", "cluster_acc", "cluster_chance", "auroc"]
    row = {"variant": "full pipeline", "novel_predicted_new": 0.5, "seconds": 10.0}
    seeds = [[{**row, **dict.fromkeys(keys, v)}] for v in (0.2, 0.4)]
    text = ablation.table(seeds)
    assert "0.300 ± 0.141" in text, text
