"""Tests of discovery_summary: old/new/all accuracy, cluster accuracy and gate metrics on
hand-computed examples, aggregation over discovery experiences, and None (never NaN) when undefined.
"""

import json

import numpy as np
import pytest
import torch

from avalanche_ext.metrics.discovery import discovery_summary, experience_summary

Y_ALL = [0, 0, 1, 1, 2, 2, 3, 3]  # classes 0, 1 known; 2, 3 novel
P_ALL = [0, 1, 1, 1, 5, 5, 4, 2]  # novel classes predicted under cluster ids 5, 4 / 2
ENTRY = {
    "experience": 1,
    "true_labels": torch.tensor([0, 2, 2, 3, 1, 3]),
    "pool_indices": torch.tensor([1, 2, 3, 4]),
    "all_scores": torch.tensor([0.1, 0.9, 0.8, 0.3, 0.7, 0.2]),
    "threshold": 0.25,
    "pseudo_labels": torch.tensor([-1, 5, 5, 4, 4, -1]),
}


def test_hand_computed_summary():
    out = discovery_summary(Y_ALL, P_ALL, [0, 1], [ENTRY], {"histogram_bins": 2})
    # One Hungarian matching over all test samples: 0->0, 1->1, 5->2, and 4 or 2 -> 3 (1 each):
    # old samples right 3 / 4 (the 0 predicted as 1 is wrong), new 3 / 4, all 6 / 8.
    assert (out["old_acc"], out["new_acc"], out["all_acc"]) == (0.75, 0.75, 0.75)
    assert "one Hungarian matching" in out["hungarian"]
    gate = out["gate"]
    # pooled {1, 2, 3, 4}; novel {1, 2, 3, 5}: precision 3/4, recall 3/4
    assert (gate["precision"], gate["recall"]) == (0.75, 0.75)
    # AUROC: novel scores {.9, .8, .3, .2} vs known {.1, .7}: 6 of 8 pairs ordered right
    assert gate["auroc"] == pytest.approx(0.75)
    assert gate["threshold"] == 0.25 and gate["num_pooled"] == 4 and gate["num_novel"] == 4
    # edges over [0.1, 0.9] in 2 bins; known {.1, .7}, novel {.9, .8, .3, .2}
    assert gate["histogram"] == {
        "bins": pytest.approx([0.1, 0.5, 0.9]),
        "known": [1, 1],
        "novel": [2, 2],
    }
    # pooled AND truly novel: samples 1, 2, 3 with pseudo 5, 5, 4 for true 2, 2, 3 -> 1.0
    assert out["cluster_acc"] == 1.0 and out["num_clustered"] == 3
    assert out["per_experience"][0]["cluster_acc"] == 1.0
    assert out["per_experience"][0]["gate"]["precision"] == 0.75
    json.dumps(out, allow_nan=False)


def test_novel_convention():
    out = discovery_summary(Y_ALL, P_ALL, 2, [ENTRY], {"hungarian": "novel"})
    # old: plain accuracy 3/4; new: matching within new samples (5->2, 4 or 2->3): 3/4
    assert (out["old_acc"], out["new_acc"], out["all_acc"]) == (0.75, 0.75, 0.75)
    assert "new-class samples" in out["hungarian"]
    with pytest.raises(ValueError):
        discovery_summary(Y_ALL, P_ALL, 2, [], {"hungarian": "best"})


def test_aggregates_experiences_with_one_matching():
    second = {
        "experience": 2,
        "true_labels": np.array([3, 2, 0]),
        "pool_indices": [0, 1, 2],
        "all_scores": np.array([0.6, 0.6, 0.6]),
        "threshold": 0.5,
        "pseudo_labels": [5, 4, 4],  # swaps the ids of experience 1: cluster 5 is now class 3
    }
    out = discovery_summary(Y_ALL, P_ALL, [0, 1], [ENTRY, second])
    # clustered: (2,5), (2,5), (3,4) from exp 1 and (3,5), (2,4) from exp 2: best one-to-one
    # matching 5->2, 4->3 gets 3 of 5 right
    assert out["cluster_acc"] == pytest.approx(3 / 5) and out["num_clustered"] == 5
    assert [e["cluster_acc"] for e in out["per_experience"]] == [1.0, 1.0]
    assert out["gate"]["threshold"] == 0.5  # the last discovery experience's
    assert out["gate"]["num_pooled"] == 7 and out["gate"]["precision"] == pytest.approx(5 / 7)


def test_undefined_values_are_none_never_nan():
    out = discovery_summary([0, 1], [0, 1], [0, 1], [], None)
    assert out["new_acc"] is None and out["old_acc"] == 1.0
    assert out["cluster_acc"] is None and out["gate"]["precision"] is None
    assert out["gate"]["histogram"] is None and out["per_experience"] == []
    partial = {
        "experience": 1,
        "true_labels": [2, 3],
        "pool_indices": [],
        "all_scores": [float("nan"), 0.5],
        "threshold": float("nan"),
    }
    out = discovery_summary([2], [2], [0, 1], [partial])
    gate = out["gate"]
    assert gate["precision"] is None and gate["recall"] == 0.0 and gate["auroc"] is None
    assert gate["threshold"] is None and gate["histogram"] is None and out["cluster_acc"] is None
    json.dumps(out, allow_nan=False)
    single = experience_summary({"true_labels": [0, 2]}, 2)
    assert single["num_novel"] == 1 and single["gate"]["precision"] is None
