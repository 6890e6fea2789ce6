"""Tests of per-class accuracy, shot groups, long-tail summaries and confusion helpers.

Expected values are computed by hand in the comments.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avalanche_ext.metrics.long_tail import (
    confusion_matrix,
    head_tail_groups,
    long_tail_summary,
    per_class_accuracy,
    shot_groups,
    top_confused_pairs,
)

__all__: list[str] = []


def test_per_class_accuracy_with_a_class_without_test_samples():
    y_true = [0, 0, 0, 1, 1, 3]
    y_pred = [0, 1, 0, 1, 1, 0]
    # class 0: 2 of 3, class 1: 2 of 2, class 2: no sample, class 3: 0 of 1
    acc = per_class_accuracy(y_true, y_pred, num_classes=4)
    assert acc == pytest.approx([2 / 3, 1.0, None, 0.0])
    json.dumps(acc, allow_nan=False)


def test_per_class_accuracy_accepts_tensors_and_ignores_unlabeled():
    y_true = torch.tensor([0, 1, -1])  # -1 = an unlabeled discovery sample
    y_pred = torch.tensor([0, 0, 1])
    assert per_class_accuracy(y_true, y_pred, 2) == [1.0, 0.0]
    with pytest.raises(ValueError, match="labels"):
        per_class_accuracy([0, 1], [0], 2)


def test_shot_groups_boundaries():
    # many: > 100, medium: 20..100 inclusive, few: < 20
    groups = shot_groups([500, 150, 100, 20, 19, 5])
    assert groups == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    assert shot_groups([10, 60], many=50, few=11) == {"many": [1], "medium": [], "few": [0]}


def test_long_tail_summary_by_hand():
    counts = [500, 150, 100, 20, 19, 5]
    acc = [0.9, 0.8, 0.6, 0.5, 0.4, None]  # class 5 has no test sample
    summary = long_tail_summary(acc, counts)
    assert summary["many_acc"] == pytest.approx(0.85)  # (0.9 + 0.8) / 2
    assert summary["medium_acc"] == pytest.approx(0.55)  # (0.6 + 0.5) / 2
    assert summary["few_acc"] == pytest.approx(0.4)  # class 4 only; class 5 is skipped
    # GM over the five measured classes: (0.9 * 0.8 * 0.6 * 0.5 * 0.4) ** (1 / 5) = 0.0864 ** 0.2
    assert summary["geometric_mean"] == pytest.approx(0.0864**0.2)
    # HM: 5 / (1/0.9 + 1/0.8 + 1/0.6 + 1/0.5 + 1/0.4) = 5 / 8.52778 = 0.58632
    assert summary["harmonic_mean"] == pytest.approx(5 / (1 / 0.9 + 1 / 0.8 + 1 / 0.6 + 2 + 2.5))
    assert summary["lowest_recall"] == pytest.approx(0.4)
    assert summary["lowest_recall_class"] == 4
    assert summary["groups"] == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    assert summary["thresholds"] == {"many": 100, "few": 20}
    assert "head_acc" not in summary  # three groups: no fallback needed
    json.dumps(summary, allow_nan=False)


def test_zero_recall_makes_the_means_zero_and_empty_groups_none():
    summary = long_tail_summary([0.5, 0.0], [500, 300])
    assert summary["geometric_mean"] == 0.0 and summary["harmonic_mean"] == 0.0
    assert summary["lowest_recall"] == 0.0 and summary["lowest_recall_class"] == 1
    assert summary["medium_acc"] is None and summary["few_acc"] is None


def test_step_tail_in_one_shot_group_falls_back_to_head_and_tail():
    # CIFAR-100-LT-like step profile, imbalance 2.5: every class is "many" (> 100)
    counts = [500, 500, 500, 200, 200]
    acc = [0.8, 0.7, 0.9, 0.4, 0.5]
    summary = long_tail_summary(acc, counts)
    assert summary["many_acc"] == pytest.approx(0.66)  # 3.3 / 5
    assert summary["medium_acc"] is None and summary["few_acc"] is None
    assert summary["head_acc"] == pytest.approx(0.8)  # (0.8 + 0.7 + 0.9) / 3
    assert summary["tail_acc"] == pytest.approx(0.45)  # (0.4 + 0.5) / 2
    assert summary["groups"]["head"] == [0, 1, 2] and summary["groups"]["tail"] == [3, 4]
    assert "head_acc" not in long_tail_summary(acc, counts, split_by_tail=False)


def test_head_tail_split_is_automatic_only_for_two_counts():
    # three distinct counts, all many-shot: no automatic split
    assert "head_acc" not in long_tail_summary([0.9, 0.8, 0.7], [500, 300, 200])
    # forced: midpoint sqrt(400 * 25) = 100 -> head = counts >= 100
    forced = long_tail_summary([0.9, 0.8, 0.3], [400, 100, 25], split_by_tail=True)
    assert forced["groups"]["head"] == [0, 1] and forced["tail_acc"] == pytest.approx(0.3)
    assert head_tail_groups([50, 50]) == {"head": [], "tail": []}


def test_confusion_matrix_covers_all_classes():
    cm = confusion_matrix([0, 1, 2, 2], np.array([0, 2, 2, 1]), num_classes=4)
    assert cm == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert all(isinstance(v, int) for row in cm for v in row)


def test_top_confused_pairs():
    cm = [[5, 3, 0], [1, 4, 0], [0, 6, 2]]
    pairs = top_confused_pairs(cm, ["a", "b", "c"], k=2)
    # c -> b: 6 of 8 samples of c; a -> b: 3 of 8 samples of a
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("c", "b", 6),
        ("a", "b", 3),
    ]
    assert pairs[0]["fraction"] == pytest.approx(0.75) and pairs[1]["fraction"] == pytest.approx(
        0.375
    )
    everything = top_confused_pairs(cm, None)
    assert len(everything) == 3  # zero cells are left out; b -> a is the third
    assert everything[-1] == {
        "true": "1",
        "predicted": "0",
        "true_id": 1,
        "predicted_id": 0,
        "count": 1,
        "fraction": 0.2,
    }
    assert top_confused_pairs([[3, 0], [0, 2]], ["x", "y"]) == []
