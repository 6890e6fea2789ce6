"""benchmarks/longtail_seeds.py: its methods and budget, seed means, paired differences, the section."""

from __future__ import annotations

import json

import pytest

from avalanche_ext.config import load_config


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("longtail_seeds")


def test_every_method_has_a_config_and_takes_the_same_budget(bench):
    options = bench.budget_options(epochs=20, depth=20, base_channels=16, seed=2)
    for method in bench.METHODS:
        cfg = load_config(bench.config_path(method), dict(options))
        assert cfg.cl_strategy.train_epochs == 20 and cfg.model.backbone.depth == 20
        assert cfg.scenario.n_max == 500 and cfg.scenario.seed == 0 and cfg.seed == 2
        assert cfg.scenario.imbalance_ratio == 100 and cfg.scenario.test_subset is None
    assert ("model-doctor", "model-doctor-unconstrained") in bench.PAIRS


def row(top1: float, few: float | None) -> dict:
    values = dict.fromkeys(("many", "medium", "GM", "HM", "lowest recall"), 0.1)
    return {**values, "top-1": top1, "few": few, "time (s)": 10.0}


def test_seed_means_and_paired_differences_hand_computed(bench):
    rows = {
        "ce": {0: row(0.30, 0.02), 1: row(0.32, 0.04), 2: row(0.28, 0.00)},
        "gml": {0: row(0.31, 0.10), 1: row(0.32, 0.08)},  # seed 2 not run yet
    }
    means = bench.seed_means(rows)
    assert means["ce"]["top-1"] == pytest.approx((0.30, 0.02))
    diff = bench.paired_differences(rows, "gml", "ce")
    # seeds 0 and 1 only: top-1 +0.01 and 0.00; few +0.08 and +0.04
    assert diff["top-1"] == pytest.approx((0.005, 0.00707107, 2), rel=1e-5)
    assert diff["few"] == pytest.approx((0.06, 0.02828427, 2), rel=1e-5)
    rows["gml"][1]["few"] = None  # a missing value leaves that seed out of that metric
    assert bench.paired_differences(rows, "gml", "ce")["few"][2] == 1
    text = bench.tables(rows)
    assert "| ce | 3 | 30.00 ± 2.00 |" in text
    assert "| gml - ce | +0.50 ± 0.71 |" in text


def test_section_has_its_own_markers(bench, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(
        f"# Benchmark results\n\n{bench._single.BEGIN}\nother\n{bench._single.END}\n"
    )
    bench._single.write_section(results, "first", bench.BEGIN, bench.END)
    bench._single.write_section(results, "second", bench.BEGIN, bench.END)
    content = results.read_text()
    assert "other" in content and "second" in content and "first" not in content


def test_jobs_run_cross_entropy_then_second_stages_then_the_rest(bench):
    order = bench.jobs(["ce", "balanced-softmax", "crt", "gml"], [0, 1])
    assert order == [
        ("ce", 0), ("ce", 1),
        ("crt", 0), ("gml", 0), ("crt", 1), ("gml", 1),
        ("balanced-softmax", 0), ("balanced-softmax", 1),
    ]  # fmt: skip


@pytest.mark.slow
def test_second_stage_starts_from_the_cross_entropy_checkpoint(bench, tmp_path):
    options = bench.budget_options(epochs=1, depth=8, base_channels=8, seed=0, test_subset=2)
    options["scenario.n_max"] = 10
    row = bench.run_stage_two("crt", options, tmp_path, fresh=False)
    ce = json.loads((tmp_path / "ce" / "seed0" / "latest" / "results.json").read_text())
    stamp = json.loads((tmp_path / "crt" / "seed0" / "options.json").read_text())
    # the cross-entropy run was made first, and the second stage loaded its final weights and
    # trained nothing before its plugin
    assert stamp["cl_strategy.train_epochs"] == 0
    assert stamp["load_from"] == str(
        tmp_path / "ce" / "seed0" / "latest" / "checkpoints" / "experience_1.pth"
    )
    crt = json.loads((tmp_path / "crt" / "seed0" / "latest" / "results.json").read_text())
    assert row["time (s)"] == pytest.approx(ce["timing"]["total_s"] + crt["timing"]["total_s"])
    # --finished-only tabulates exactly the runs that exist
    assert bench.is_finished("crt", options, tmp_path) and bench.is_finished(
        "ce", options, tmp_path
    )
    assert not bench.is_finished("gml", options, tmp_path)
    assert not bench.is_finished("crt", {**options, "seed": 1}, tmp_path)


def test_pause_file_holds_the_next_job(bench, tmp_path):
    import threading  # noqa: PLC0415

    flag = tmp_path / "PAUSE"
    flag.touch()
    waiter = threading.Thread(target=bench.wait_while_paused, args=(flag, 0.01))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), "must wait while the file exists"
    flag.unlink()
    waiter.join(5)
    assert not waiter.is_alive()
