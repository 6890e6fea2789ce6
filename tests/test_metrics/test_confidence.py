"""Tests of the novelty scores (higher = more novel) and of threshold calibration.

Expected values are derived by hand in the comments.
"""

import math

import numpy as np
import pytest
import torch

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.metrics.confidence import (
    NOVELTY_SCORERS,
    calibrate_threshold,
    energy_score,
    entropy_score,
    evidential_score,
    msp_score,
)

LN3 = math.log(3.0)


def test_msp():
    # softmax([ln3, 0]) = [3/4, 1/4] -> 1 - 3/4 = 1/4; uniform over 4 classes -> 1 - 1/4
    logits = torch.tensor([[LN3, 0.0, -math.inf, -math.inf], [0.0, 0.0, 0.0, 0.0]])
    assert msp_score(logits).tolist() == pytest.approx([0.25, 0.75])


def test_entropy():
    # -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.215762 + 0.346574 = 0.562335; uniform over 4: ln 4 = 1.386294
    logits = torch.tensor([[LN3, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    logits[0, 2:] = -1e4  # probability 0, contributes 0 * log 0 = 0
    assert entropy_score(logits).tolist() == pytest.approx([0.562335, math.log(4)], abs=1e-6)


def test_energy_with_temperature():
    # T = 1, [0, 0]: -ln(e^0 + e^0) = -ln 2 = -0.693147
    # T = 2, [2, 0]: -2 ln(e^1 + e^0) = -2 * 1.313262 = -2.626523
    assert energy_score(torch.zeros(1, 2)).item() == pytest.approx(-0.693147, abs=1e-6)
    energy = energy_score(torch.tensor([[2.0, 0.0]]), temperature=2.0)
    assert energy.item() == pytest.approx(-2.626523, abs=1e-6)


def test_evidential():
    # softplus(0) = ln 2 -> S = 2 (1 + ln 2) = 3.386294 -> K / S = 0.590616
    assert evidential_score(torch.zeros(1, 2)).item() == pytest.approx(0.590616, abs=1e-6)
    # relu evidence: [2, 0, -1] -> alpha [3, 1, 1], 3 / 5
    relu = evidential_score(torch.tensor([[2.0, 0.0, -1.0]]), evidence="relu")
    assert relu.item() == pytest.approx(0.6)


@pytest.mark.parametrize("method", ["msp", "entropy", "energy", "evidential"])
def test_every_logit_score_is_registered_and_ranks_a_flat_prediction_above_a_confident_one(method):
    scorer = NOVELTY_SCORERS[method]
    assert not scorer.needs_features and scorer.reference
    confident = torch.tensor([[8.0, 0.0, 0.0]])
    flat = torch.tensor([[0.5, 0.4, 0.3]])
    assert scorer.fn(flat) > scorer.fn(confident)


def test_calibrate_threshold_quantile():
    scores = np.arange(1, 21, dtype=float)  # 1, 2, ..., 20
    # target 0.95: k = ceil(0.95 * 20) = 19 -> threshold = 19; only 20 > 19: 1 / 20 = 5 % pooled
    assert calibrate_threshold(scores, 0.95) == 19.0
    # target 0.9: k = 18 -> threshold 18; 19, 20 pooled (10 %)
    assert calibrate_threshold(torch.tensor(scores), 0.9) == 18.0
    # target 1: the maximum, nothing pooled
    assert calibrate_threshold(scores, 1.0) == 20.0
    # target 0.7, n = 10: 0.7 * 10 = 7.000000000000001 in floating point, still k = 7
    assert calibrate_threshold(np.arange(1, 11), 0.7) == 7.0


def test_calibrate_threshold_ties_are_not_pooled():
    # k = ceil(0.5 * 5) = 3 -> threshold = 1 (third smallest); pooled = scores > 1 = [2]:
    # 1 / 5 pooled, known recall 0.8 >= 0.5 (ties at the threshold stay out of the pool)
    scores = np.array([1.0, 1.0, 2.0, 1.0, 1.0])
    threshold = calibrate_threshold(scores, 0.5)
    assert threshold == 1.0
    assert (scores > threshold).sum() == 1


def test_calibrate_threshold_bounds_the_known_false_positive_rate():
    rng = np.random.default_rng(0)
    for n in (1, 7, 100, 333):
        scores = rng.normal(size=n)
        for target in (0.5, 0.8, 0.95, 0.99):
            pooled = (scores > calibrate_threshold(scores, target)).mean()
            assert pooled <= 1 - target + 1e-12


def test_calibrate_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        calibrate_threshold(np.array([]))
    with pytest.raises(ValueError, match="target_known_recall"):
        calibrate_threshold(np.ones(3), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        calibrate_threshold(np.array([1.0, math.nan]))
