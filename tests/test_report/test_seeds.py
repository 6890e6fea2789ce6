"""The --seeds summary: mean and sample std per headline number, and the update's gain over the
base model paired by seed (two overlapping means would hide a consistent gain, or fake one)."""

from __future__ import annotations

import pytest

from avalanche_ext.report.seeds import aggregate_seeds, seeds_markdown


def _run(seed: int, all_acc: float, floor_all: float, old: float, floor_old: float) -> dict:
    floor = {"frost_task_agnostic": {"old_acc": floor_old, "all_acc": floor_all}}
    return {
        "seed": seed,
        "discovery": {"all_acc": all_acc, "old_acc": old, "floor": floor},
    }


def test_mean_std_and_the_gain_paired_by_seed():
    # the base model's spread (0.30 .. 0.40) is larger than the gain, which is +0.01 every time
    runs = [_run(0, 0.31, 0.30, 0.38, 0.40), _run(1, 0.41, 0.40, 0.47, 0.50)]
    out = aggregate_seeds(runs)
    assert out["seeds"] == [0, 1]
    assert out["all_acc"]["mean"] == pytest.approx(0.36)
    assert out["all_acc"]["std"] == pytest.approx(0.0707107, abs=1e-6)
    gain = out["all_acc_gain"]
    assert gain["values"] == pytest.approx([0.01, 0.01]) and gain["std"] == pytest.approx(0.0)
    assert out["old_acc_drop"]["values"] == pytest.approx([0.02, 0.03])
    text = seeds_markdown(out)
    assert "| all_acc_gain | 0.0100 | 0.0000 | 0.0100, 0.0100 |" in text


def test_rows_without_values_are_left_out_and_one_run_has_no_std():
    out = aggregate_seeds([{"seed": 3, "final": {"stream_accuracy": 0.5}}])
    assert out["final_accuracy"] == {"mean": 0.5, "std": None, "values": [0.5], "n": 1}
    assert "all_acc_gain" not in out and "all_acc" not in out
    assert "| final_accuracy | 0.5000 |  | 0.5000 |" in seeds_markdown(out)
