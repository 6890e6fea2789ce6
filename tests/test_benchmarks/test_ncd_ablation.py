"""The ablation benchmark's variants are each one change away from the shipped config (a row per
forgetting control and per objective of the update), and its table shows mean +- std over seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from avalanche_ext.config import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ablation(load_benchmark):
    return load_benchmark("ncd_ablation")


def _by_type(plugins):
    return {p["type"]: p for p in plugins}


def test_variants_change_one_setting_each(ablation):
    cfg = load_config(ROOT / ablation.DEFAULT_CONFIG)
    full = [dict(p) for p in cfg.cl_strategy.plugins]
    variants = ablation.variants(cfg)
    assert variants["config as shipped"] is None
    assert variants["no update (floor)"][0]["trigger_size"] > 10**6
    teacher = {
        k: _by_type(v or full)[ablation.TEACHER] for k, v in variants.items() if k != "LwF baseline"
    }
    assert teacher["no prototype replay"]["replay_weight"] == 0.0
    assert teacher["no feature distillation"]["feature_weight"] == 0.0
    assert teacher["no old-logit distillation"]["alpha_old"] == 0.0
    assert teacher["no operating-point calibration"]["calibrate_new_bias"] is False
    assert teacher["config as shipped"]["calibration_objective"] == "hm"
    budget = teacher["operating point: HM within a 5-point old-class budget"]
    assert budget["calibration_objective"] == "hm_within_old_budget"
    assert budget["max_old_drop"] == 0.05
    assert ablation.EXEMPLARS in _by_type(full)
    assert ablation.EXEMPLARS not in _by_type(variants["no known exemplar replay"])
    assert ablation.EXEMPLARS not in _by_type(variants["LwF baseline"])
    assert teacher["operating point: routing estimated on the pool only"]["routing_estimate"] == (
        "pool"
    )
    novel = _by_type(variants["objective: pairwise"])[ablation.NOVEL]
    assert novel["objective"] == "pairwise"
    assert _by_type(variants["novel head, backbone frozen"])[ablation.NOVEL]["trainable"] == [
        "head"
    ]
    head_only = _by_type(variants["head-only update (no novel head, backbone frozen)"])
    assert ablation.NOVEL not in head_only
    assert (
        _by_type(variants["k estimated (silhouette over 10..40)"])[ablation.CLUSTER]["num_clusters"]
        is None
    )
    assert "LwFPlugin" in _by_type(variants["LwF baseline"])
    gate = _by_type(variants["gate: Mahalanobis distance"])[ablation.GATE]
    assert gate["score"] == "mahalanobis" and gate["score_kwargs"] == {}
    cluster = _by_type(variants["clustering: known prototypes as fixed centres"])[ablation.CLUSTER]
    assert cluster["known_centres"] is True
    for name, plugins in variants.items():
        if plugins is None or name.startswith(("LwF", "head-only")):
            continue
        changed = [i for i, (a, b) in enumerate(zip(full, plugins)) if a != b]
        assert len(changed) == 1, (name, changed)


def test_table_reports_mean_and_std_over_seeds(ablation):
    keys = ["old_acc", "new_acc", "all_acc", "hm", "cluster_acc", "auroc"]
    row = {"variant": "config as shipped", "seconds": 10.0}
    seeds = [[{**row, **dict.fromkeys(keys, v)}] for v in (0.2, 0.4)]
    text = ablation.table(seeds)
    assert "0.300 ± 0.141" in text, text
    assert "HM" in text.splitlines()[0]


def test_only_refuses_a_variant_name_it_does_not_have(ablation, capsys):
    with pytest.raises(SystemExit) as stop:
        ablation.main(["--only", "no such variant"])
    assert stop.value.code == 2
    assert "--only: unknown variant(s) ['no such variant']" in capsys.readouterr().err
