"""Pure functions of the discovery pipeline on hand-made inputs: the gate's pool-filling and trigger
rule (``fill_pool``), the old-vs-new offset calibrated on known samples (``novel_rate_offset``) and
semi-supervised k-means with the known classes' centres fixed.
"""

import numpy as np
import pytest
import torch

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.clustering import semi_supervised_kmeans
from avalanche_ext.metrics.clustering import cluster_accuracy
from avalanche_ext.ncd import novel_rate_offset
from strategies.confidence_gate import fill_pool

SCORES = torch.tensor([0.9, 0.1, 0.5, 0.7, 0.5, 0.2])


# ----------------------------------------------------------------------------- fill_pool
def test_fill_pool_triggers_when_the_pool_reaches_the_trigger_size():
    kept, candidates, topped, triggered, reason = fill_pool(
        SCORES, 0.4, capacity=10, eviction="most_confident_out", trigger_size=3, min_fill=0.5
    )
    assert kept.tolist() == [0, 2, 3, 4] and candidates == 4 and topped == 0 and triggered
    assert reason == "4 pooled >= trigger_size 3"


def test_fill_pool_capacity_evicts_before_the_trigger_is_checked():
    kept, candidates, _, triggered, _ = fill_pool(SCORES, 0.4, 2, "most_confident_out", 2, 0.5)
    assert kept.tolist() == [0, 3] and candidates == 4 and triggered  # the two highest scores
    kept, _, _, _, _ = fill_pool(SCORES, 0.4, 2, "fifo", 2, 0.5)
    assert kept.tolist() == [3, 4]  # the two latest candidates


def test_fill_pool_tops_up_a_slightly_short_pool():
    # candidates {0, 3}: 2 >= 0.5 * 4, so the 2 highest scores left out join: 2 and 4 (0.5 each,
    # ties by arrival), not 5 (0.2) or 1 (0.1)
    kept, candidates, topped, triggered, reason = fill_pool(
        SCORES, 0.6, 10, "most_confident_out", 4, 0.5
    )
    assert kept.tolist() == [0, 2, 3, 4] and candidates == 2 and topped == 2 and triggered
    assert reason == (
        "2 pooled < trigger_size 4, >= min_fill 0.5 x trigger_size: topped up with the 2 next "
        "most novel samples"
    )


def test_fill_pool_does_not_trigger_below_min_fill():
    kept, candidates, topped, triggered, reason = fill_pool(
        SCORES, 0.8, 10, "most_confident_out", 4, 0.5
    )
    assert kept.tolist() == [0] and candidates == 1 and topped == 0 and not triggered
    assert reason == "update not triggered: 1 pooled < trigger_size 4"
    # min_fill = 1 disables the top-up: 2 of 4 is short
    *_, triggered, reason = fill_pool(SCORES, 0.6, 10, "most_confident_out", 4, 1.0)
    assert not triggered and reason.startswith("update not triggered: 2 pooled")
    # a trigger size larger than the experience never triggers, whatever min_fill
    *_, triggered, _ = fill_pool(SCORES, 0.0, 10, "most_confident_out", 10, 0.0)
    assert not triggered


# ----------------------------------------------------------------------------- novel_rate_offset
def test_novel_rate_offset_hand_computed():
    margins = torch.tensor([2.0, -3.0, 4.0, -1.0])  # sorted: 4, 2, -1, -3
    # rate 0.5: 2 of 4 above the cut, halfway between 2 and -1 -> b = -0.5
    assert novel_rate_offset(margins, 0.5) == pytest.approx(-0.5)
    assert int((margins - 0.5 > 0).sum()) == 2
    assert novel_rate_offset(margins, 0.25) == pytest.approx(-3.0)  # between 4 and 2
    assert novel_rate_offset(margins, 0.0) == pytest.approx(-4.5)  # none: above the top margin
    b = novel_rate_offset(margins, 0.99)  # floor(3.96) = 3: between -1 and -3
    assert b == pytest.approx(2.0) and int((margins + b > 0).sum()) == 3
    assert novel_rate_offset(torch.empty(0), 0.1) == 0.0


def test_novel_rate_offset_ignores_which_samples_a_gate_would_pool():
    """Only the known samples' margins set the cut: the target share is met on them exactly."""
    margins = torch.linspace(-5, 3, 101)
    for rate in (0.0, 0.05, 0.2):
        b = novel_rate_offset(margins, rate)
        assert int((margins + b > 0).sum()) == int(np.floor(rate * 101 + 1e-9))


# ----------------------------------------------------------------------------- semi-supervised k-means
def _scene(seed: int = 0):
    """Known centres (10, 0), (0, 10); novel blobs around (-10, 0), (0, -10); 5 leaked known
    samples next to each known centre."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    novel_means = torch.tensor([[-10.0, 0.0], [0.0, -10.0]])
    novel = novel_means.repeat_interleave(20, 0) + 0.5 * torch.randn(40, 2, generator=gen)
    leaked = centres.repeat_interleave(5, 0) + 0.5 * torch.randn(10, 2, generator=gen)
    x = torch.cat([novel, leaked])
    truth = torch.tensor([2] * 20 + [3] * 20 + [0] * 5 + [1] * 5)
    return x, centres, truth


def test_semi_supervised_kmeans_known_points_join_their_centre_novel_blobs_are_recovered():
    x, centres, truth = _scene()
    labels, novel = semi_supervised_kmeans(x, centres, k=2, seed=0, n_init=2)
    assert labels.dtype == np.int64 and labels.shape == (50,)
    # leaked known samples: exactly the fixed centres' labels 0 and 1
    assert labels[40:45].tolist() == [0] * 5 and labels[45:].tolist() == [1] * 5
    # novel blobs: the free clusters 2, 3, one per blob
    assert set(labels[:40].tolist()) == {2, 3}
    assert cluster_accuracy(truth[:40], labels[:40]) == 1.0
    # the free centres end at their members' means (Lloyd converged)
    for c in range(2):
        members = x[torch.from_numpy(labels == 2 + c)]
        assert np.allclose(novel[c], members.mean(0).numpy(), atol=1e-4)


def test_semi_supervised_kmeans_keeps_the_known_centres_where_they_are():
    """A known centre far from its leaked samples still claims them when it is the nearest centre;
    a free centre would have moved onto them."""
    x, centres, _ = _scene()
    shifted = centres + torch.tensor([[3.0, 0.0], [0.0, 3.0]])  # (13, 0), (0, 13)
    labels, novel = semi_supervised_kmeans(x, shifted, k=2, seed=0)
    assert labels[40:45].tolist() == [0] * 5 and labels[45:].tolist() == [1] * 5
    # neither free centre moved to the leaked samples
    assert all(min(np.linalg.norm(c - np.array([10.0, 0.0])), 99) > 5 for c in novel)


def test_semi_supervised_kmeans_without_known_centres_is_plain_kmeans_and_checks_k():
    x, _, truth = _scene()
    labels, novel = semi_supervised_kmeans(x, np.zeros((0, 2)), k=4, seed=1, n_init=3)
    assert novel.shape == (4, 2) and cluster_accuracy(truth, labels) == 1.0
    again, _ = semi_supervised_kmeans(x, np.zeros((0, 2)), k=4, seed=1, n_init=3)
    assert np.array_equal(labels, again)  # seeded
    with pytest.raises(ValueError, match="novel clusters"):
        semi_supervised_kmeans(x, np.zeros((0, 2)), k=0)
    with pytest.raises(ValueError, match="novel clusters"):
        semi_supervised_kmeans(x[:3], np.zeros((0, 2)), k=4)
