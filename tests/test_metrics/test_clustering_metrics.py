"""Tests of Hungarian matching, cluster accuracy and the old/new/all discovery accuracies.

Expected values are derived by hand from the contingency tables in the comments.
"""

import numpy as np
import pytest
import torch

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.metrics.clustering import (
    HUNGARIAN_CONVENTIONS,
    cluster_accuracy,
    hungarian_match,
    old_new_all_accuracy,
)


def test_hungarian_match_and_cluster_accuracy():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [5, 5, 3, 3, 3, 4]
    # contingency (pred x true): 3 -> {1: 2, 2: 1}; 4 -> {2: 1}; 5 -> {0: 2}
    # best one-to-one: 5->0 (2) + 3->1 (2) + 4->2 (1) = 5 of 6
    assert hungarian_match(y_true, y_pred) == {5: 0, 3: 1, 4: 2}
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert cluster_accuracy(torch.tensor(y_true), np.array(y_pred)) == pytest.approx(5 / 6)


def test_more_clusters_than_classes_leaves_clusters_unmatched():
    # 4 clusters, 2 classes: one of {0, 1, 2} -> class 0 and 3 -> class 1: 2 of 4 correct
    mapping = hungarian_match([0, 0, 0, 1], [0, 1, 2, 3])
    assert len(mapping) == 2 and mapping[3] == 1
    assert cluster_accuracy([0, 0, 0, 1], [0, 1, 2, 3]) == pytest.approx(0.5)


def test_cluster_accuracy_is_permutation_invariant():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=50)
    permuted = np.array([3, 0, 4, 1, 2])[y] + 10
    assert cluster_accuracy(y, permuted) == 1.0
    with pytest.raises(ValueError, match="at least one sample"):
        cluster_accuracy([], [])


def test_all_hungarian_lets_a_new_class_take_an_old_id():
    # old classes {0, 1}; new classes {2, 3}. The model predicts class 0 for all three samples of
    # new class 2.
    y_true = [0, 0, 1, 1, 2, 2, 2, 3]
    y_pred = [0, 0, 1, 1, 0, 0, 0, 3]
    # 'all': contingency pred 0 -> {0: 2, 2: 3}, pred 1 -> {1: 2}, pred 3 -> {3: 1}; one-to-one
    # best is 0->2 (3) + 1->1 (2) + 3->3 (1) = 6 (vs 0->0: 5). Under it: old samples 0, 1 wrong,
    # 2, 3 right -> old 2/4; new 4/4; all 6/8.
    res = old_new_all_accuracy(y_true, y_pred, known_classes=[0, 1], convention="all")
    assert (res["old_acc"], res["new_acc"], res["all_acc"]) == pytest.approx((0.5, 1.0, 0.75))
    assert res["hungarian"] == HUNGARIAN_CONVENTIONS["all"]


def test_old_new_all_with_cluster_ids_for_new_classes():
    # new classes 2, 3 discovered as clusters 7, 9; one old sample confused with cluster 7
    y_true = [0, 1, 1, 2, 2, 3, 3]
    y_pred = [0, 1, 7, 7, 7, 9, 3]
    # 'all': pred 7 -> {1: 1, 2: 2}, 9 -> {3: 1}, 3 -> {3: 1}, 0 -> {0: 1}, 1 -> {1: 1}
    # best: 0->0, 1->1, 7->2, 9->3 or 3->3 (one of them) = 1 + 1 + 2 + 1 = 5 of 7
    # old: samples 0, 1 right, 2 wrong (7 -> 2) -> 2/3; new: 3, 4 right, one of 5, 6 -> 3/4
    res = old_new_all_accuracy(y_true, y_pred, [0, 1], "all")
    assert (res["old_acc"], res["new_acc"], res["all_acc"]) == pytest.approx((2 / 3, 3 / 4, 5 / 7))


def test_the_lenient_novel_convention_is_gone():
    """'novel' matched joint-argmax predictions (old ids included) on the novel subset: a model that
    never predicts a new id scored well on new classes. It is refused now."""
    assert set(HUNGARIAN_CONVENTIONS) == {"all"}
    with pytest.raises(ValueError, match="convention"):
        old_new_all_accuracy([0, 2], [0, 0], known_classes=1, convention="novel")


def test_old_new_all_empty_subsets_and_bad_convention():
    res = old_new_all_accuracy([0, 1], [0, 1], known_classes=2)
    assert res["new_acc"] is None and res["old_acc"] == 1.0 and res["all_acc"] == 1.0
    res = old_new_all_accuracy([5, 6], [1, 0], known_classes=2)
    assert res["old_acc"] is None and res["new_acc"] == 1.0  # 1 -> 5, 0 -> 6
    with pytest.raises(ValueError, match="convention"):
        old_new_all_accuracy([0], [0], 1, convention="old")
    assert all(text.count(" ") > 5 for text in HUNGARIAN_CONVENTIONS.values())
