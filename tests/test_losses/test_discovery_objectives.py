"""The self-supervised discovery objectives and the harmonic mean, on hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from avalanche_ext.losses.discovery import (
    DISCOVERY_OBJECTIVES,
    balanced_targets,
    harmonic_mean,
    pairwise_loss,
    rank_statistics_pairs,
    register_objective,
    swapped_prediction_loss,
)


def test_harmonic_mean_values_and_limits():
    assert harmonic_mean(0.5, 0.5) == pytest.approx(0.5)
    assert harmonic_mean(0.6, 0.2) == pytest.approx(2 * 0.6 * 0.2 / 0.8)
    assert harmonic_mean(0.9, 0.0) == 0.0  # never predicting a new class scores 0
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(None, 0.3) is None


def test_balanced_targets_balance_an_unbalanced_batch_only_with_the_queue():
    torch.manual_seed(0)
    # a batch of 8 that all lean to cluster 0: alone, Sinkhorn must split them evenly
    batch = torch.tensor([[0.9, 0.1]] * 6 + [[0.1, 0.9]] * 2)
    alone = balanced_targets(batch, None, epsilon=0.05, n_iter=20)
    assert alone.sum(0).tolist() == pytest.approx([4.0, 4.0], abs=0.05)
    assert torch.allclose(alone.sum(1), torch.ones(8))
    # with a queue leaning to cluster 1, the batch keeps its own majority in cluster 0
    queue = torch.tensor([[0.1, 0.9]] * 24 + [[0.9, 0.1]] * 8)
    joint = balanced_targets(batch, queue, epsilon=0.05, n_iter=20)
    assert joint.shape == (8, 2)
    assert (joint[:6].argmax(1) == 0).all() and (joint[6:].argmax(1) == 1).all()


def test_swapped_prediction_is_the_mean_cross_entropy_against_the_other_views_targets():
    l1 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    l2 = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    q1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q2 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    ce1 = -(q2 * F.log_softmax(l1, 1)).sum(1).mean()
    ce2 = -(q1 * F.log_softmax(l2, 1)).sum(1).mean()
    got = swapped_prediction_loss(l1, l2, q1, q2)
    assert float(got) == pytest.approx(float(0.5 * (ce1 + ce2)))
    # hand value of the first term's first row: -0.5 * (log s(2) + log s(-2))
    row = -0.5 * (math.log(1 / (1 + math.exp(-2))) + math.log(1 / (1 + math.exp(2))))
    assert float(-(q2[:1] * F.log_softmax(l1[:1], 1)).sum()) == pytest.approx(row)


def test_swapped_prediction_gradient_flows_to_logits_not_targets():
    l1 = torch.randn(4, 3, requires_grad=True)
    l2 = torch.randn(4, 3, requires_grad=True)
    q = torch.full((4, 3), 1 / 3, requires_grad=True)
    swapped_prediction_loss(l1, l2, q, q).backward()
    assert l1.grad is not None and l2.grad is not None and q.grad is None


def test_rank_statistics_pairs_match_top_k_sets():
    f = torch.tensor(
        [[5.0, 4.0, 0.0, 0.0], [4.0, 5.0, 1.0, 0.0], [0.0, 0.0, 5.0, 4.0], [3.0, 0.0, 4.0, 0.0]]
    )
    pairs = rank_statistics_pairs(f, top_k=2)
    expected = torch.tensor(
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float32
    )
    assert torch.equal(pairs, expected)


def test_pairwise_loss_is_low_for_agreeing_pairs_and_high_for_disagreeing():
    confident = torch.tensor([[10.0, -10.0], [10.0, -10.0]])
    same = torch.ones(2, 2)
    assert float(pairwise_loss(confident, confident, same)) < 1e-3
    apart = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert float(pairwise_loss(apart, apart, same)) > 5.0


def test_objectives_are_registered_and_names_cannot_clash():
    assert {"swapped", "pairwise", "swapped+pairwise"} <= set(DISCOVERY_OBJECTIVES)
    with pytest.raises(KeyError):
        register_objective("swapped")(lambda *a: None)
