"""Tests of the gate's precision / recall / AUROC and of the score histograms.

Expected values are derived by hand in the comments.
"""

import numpy as np
import pytest
import torch

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.metrics.gate import gate_metrics, score_histogram


def test_gate_metrics_hand_computed():
    pooled = torch.tensor([True, True, False, False, True])
    novel = np.array([True, False, True, False, True])
    scores = [0.9, 0.8, 0.3, 0.1, 0.7]
    result = gate_metrics(pooled, novel, scores)
    # pooled = {0, 1, 4}, novel = {0, 2, 4}: hits = {0, 4} -> precision 2/3, recall 2/3
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    # AUROC = P(novel score > known score): novel {0.9, 0.3, 0.7} vs known {0.8, 0.1}
    # pairs won: 0.9>0.8, 0.9>0.1, 0.3>0.1, 0.7>0.1 = 4 of 6
    assert result["auroc"] == pytest.approx(4 / 6)
    assert result["num_pooled"] == 3 and result["num_novel"] == 3
    assert all(isinstance(result[k], float) for k in ("precision", "recall", "auroc"))


def test_gate_metrics_undefined_values_are_none():
    nothing_pooled = gate_metrics([False, False], [True, False], [0.1, 0.2])
    assert nothing_pooled["precision"] is None
    assert nothing_pooled["recall"] == 0.0
    assert nothing_pooled["auroc"] == pytest.approx(0.0)  # the novel sample scores lower
    no_novel = gate_metrics([True, False], [False, False], [0.5, 0.2])
    assert no_novel["recall"] is None and no_novel["auroc"] is None
    assert no_novel["precision"] == 0.0
    empty = gate_metrics([], [], [])
    assert empty == {
        "precision": None,
        "recall": None,
        "auroc": None,
        "num_pooled": 0,
        "num_novel": 0,
    }


def test_gate_metrics_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="lengths differ"):
        gate_metrics([True], [True, False], [0.1, 0.2])


def test_score_histogram():
    scores = [0.0, 0.25, 0.5, 0.75, 1.0]
    novel = [False, False, True, True, True]
    hist = score_histogram(scores, novel, bins=2)
    # edges [0, 0.5, 1]; bins are [0, 0.5) and [0.5, 1]: known {0, 0.25} -> [2, 0];
    # novel {0.5, 0.75, 1.0} -> [0, 3]
    assert hist == {"bins": [0.0, 0.5, 1.0], "known": [2, 0], "novel": [0, 3]}


def test_score_histogram_counts_every_sample():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    novel = rng.random(200) < 0.3
    hist = score_histogram(torch.tensor(scores), torch.tensor(novel), bins=20)
    assert len(hist["bins"]) == 21 and len(hist["known"]) == len(hist["novel"]) == 20
    assert sum(hist["known"]) == (~novel).sum() and sum(hist["novel"]) == novel.sum()
