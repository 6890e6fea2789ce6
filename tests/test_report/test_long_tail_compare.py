"""The long-tail comparison: table across runs, per-class bars head to tail, through tools/report.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from matplotlib.image import imread

from avalanche_ext.report import compare_runs
from avalanche_ext.report.long_tail_compare import (
    head_to_tail_order,
    long_tail_rows,
    plot_per_class_comparison,
)
from avalanche_ext.report.summarize import summarize


def _tail_heavy(results: dict) -> dict:
    """A run that trades head accuracy for tail accuracy (what balanced softmax does)."""
    other = copy.deepcopy(results)
    other["per_class_accuracy"] = [0.7, 0.7, 0.6, 0.5, 0.6, 0.55, 0.5, 0.45, 0.5, 0.4]
    other["final"] = {"stream_accuracy": 0.55, "stream_forgetting": 0.1}
    other.pop("long_tail", None)
    return other


def test_head_to_tail_order_sorts_by_count_then_id():
    assert head_to_tail_order([5, 500, 50, 500]) == [1, 3, 2, 0]


def test_long_tail_rows_hand_computed(example_results):
    # fixture counts [500, 500, 320, 200, 120, 80, 50, 30, 15, 5]: many (> 100) = classes 0-4,
    # medium = 5-7, few (< 20) = 8, 9
    results = [summarize(copy.deepcopy(example_results)), summarize(_tail_heavy(example_results))]
    rows = long_tail_rows(["ce", "bs"], results)
    ce, bs = rows
    assert ce["many_acc"] == pytest.approx(np.mean([0.86, 0.84, 0.71, 0.55, 0.62]))
    assert ce["few_acc"] == pytest.approx((0.35 + 0.22) / 2)
    assert bs["few_acc"] == pytest.approx((0.5 + 0.4) / 2)
    assert bs["lowest_recall"] == pytest.approx(0.4) and ce["lowest_recall"] == pytest.approx(0.22)
    values = np.array(_tail_heavy(example_results)["per_class_accuracy"])
    assert bs["geometric_mean"] == pytest.approx(float(np.exp(np.log(values).mean())))
    assert bs["harmonic_mean"] == pytest.approx(float(len(values) / (1 / values).sum()))
    assert bs["top1"] == 0.55


def test_per_class_bars_are_drawn_head_to_tail(tmp_path):
    counts = [5, 500]  # class 1 is the head: drawn first (left)
    path = plot_per_class_comparison(
        {"a": [1.0, 0.0], "b": [1.0, 0.0]}, counts, tmp_path / "bars.png"
    )
    image = imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 300
    # left half holds the head class (0 % bars: nothing drawn), right half the 100 % tail bars:
    # the right half of the plot area is much darker than the left
    body = image[int(image.shape[0] * 0.2) : int(image.shape[0] * 0.7), :, :3].mean(axis=2)
    mid = body.shape[1] // 2
    assert body[:, mid:].mean() < body[:, :mid].mean() - 0.05


def test_compare_runs_adds_the_long_tail_table_and_chart(make_run, example_results, tmp_path):
    first = make_run(example_results, work_dir="ce")
    second = make_run(_tail_heavy(example_results), work_dir="balanced-softmax")
    comparison = compare_runs([first, second], tmp_path / "cmp")
    assert comparison["artifacts"]["per_class_comparison_png"] == "per_class_comparison.png"
    assert (tmp_path / "cmp" / "per_class_comparison.png").is_file()
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## Long tail" in md and "lowest recall" in md
    # the balanced-softmax row: few = 45.00 %, lowest recall 40.00 %
    row = next(
        line for line in md.splitlines() if line.startswith("| balanced-softmax") and "45.0" in line
    )
    assert "40.0" in row


def test_runs_without_counts_get_no_long_tail_section(make_run, example_results, tmp_path):
    plain = copy.deepcopy(example_results)
    plain["scenario"]["train_class_counts"] = None
    first, second = make_run(plain, work_dir="a"), make_run(plain, work_dir="b")
    comparison = compare_runs([first, second], tmp_path / "cmp")
    assert "per_class_comparison_png" not in comparison["artifacts"]
    assert "## Long tail" not in (tmp_path / "cmp" / "comparison.md").read_text()


def test_report_tool_compares_long_tail_runs(make_run, example_results, tmp_path, capsys):
    import importlib.util  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    tool = Path(__file__).resolve().parents[2] / "tools" / "report.py"
    spec = importlib.util.spec_from_file_location("report_tool_lt", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = make_run(example_results, work_dir="ce")
    second = make_run(_tail_heavy(example_results), work_dir="bs")
    assert module.main([str(first), str(second), "--out", str(tmp_path / "out")]) == 0
    assert "per_class_comparison_png" in capsys.readouterr().out
