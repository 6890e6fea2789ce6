"""Tests of avalanche_ext/novelty.py: every registered novelty score on hand-made logits and features
(higher = more novel), the known classes' statistics and old-class feature replay.
"""

import math

import pytest
import torch

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.ncd_state import KnownClassStats
from avalanche_ext.novelty import (
    NOVELTY_SCORERS,
    known_class_stats,
    sample_replay_features,
    score_samples,
)

# class 0 around (1, 0), class 1 around (0, 1)
FEATURES = torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
LABELS = torch.tensor([0, 0, 1, 1])
# known, halfway, opposite to class 0, opposite to both
QUERIES = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0], [-1.0, -1.0]])
NO_LOGITS = torch.zeros(4, 2)


def stats(**overrides) -> KnownClassStats:
    return known_class_stats(FEATURES, LABELS, num_classes=2, **overrides)


def test_registry_names_and_kinds():
    logit = {"msp", "entropy", "energy", "evidential", "max_logit"}
    feature = {"cosine_prototype", "knn", "mahalanobis", "kmeans_margin"}
    assert logit | feature <= set(NOVELTY_SCORERS)
    assert not any(NOVELTY_SCORERS[n].needs_features for n in logit)
    assert all(NOVELTY_SCORERS[n].needs_features for n in feature)
    assert all(s.reference for s in NOVELTY_SCORERS.values())


def test_logit_scores_hand_computed():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    # 1 - max softmax: [1 - 3/4, 1 - 1/2]
    assert score_samples("msp", logits).tolist() == pytest.approx([0.25, 0.5])
    assert score_samples("max_logit", logits).tolist() == pytest.approx([-math.log(3.0), 0.0])
    ent = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert score_samples("entropy", logits).tolist() == pytest.approx([ent, math.log(2.0)])
    # energy -logsumexp: [-log 4, -log 2]; higher = more novel
    assert score_samples("energy", logits).tolist() == pytest.approx([-math.log(4), -math.log(2)])


def test_cosine_prototype_hand_computed_and_ordered():
    scores = score_samples("cosine_prototype", NO_LOGITS, QUERIES, stats())
    # 1 - max cos to the prototypes (1, 0), (0, 1): 0, 1 - 1/sqrt(2), 1 - 0, 1 + 1/sqrt(2)
    r = 1 / math.sqrt(2)
    assert scores.tolist() == pytest.approx([0.0, 1 - r, 1.0, 1 + r], abs=1e-6)


def test_cosine_prototype_ignores_classes_without_samples():
    s = known_class_stats(FEATURES, LABELS, num_classes=3)  # class 2: no sample, prototype 0
    assert s.counts.tolist() == [2, 2, 0] and s.prototypes[2].abs().sum() == 0
    # an all-zero prototype would cap every score at 1 (cos 0); it is left out
    score = score_samples("cosine_prototype", NO_LOGITS[:1], QUERIES[3:], s)
    assert score.item() == pytest.approx(1 + 1 / math.sqrt(2), abs=1e-6)


def test_knn_distance_hand_computed():
    s = stats()
    scores = score_samples("knn", NO_LOGITS, QUERIES, s, k=1)
    # nearest normalised bank feature of (1, 0) is (1, +-0.1) / sqrt(1.01): 1 - 1 / sqrt(1.01);
    # of (-1, 0) it is (-0.1, 1) / sqrt(1.01): 1 - 0.1 / sqrt(1.01)
    n = math.sqrt(1.01)
    assert scores[0].item() == pytest.approx(1 - 1 / n, abs=1e-6)
    assert scores[2].item() == pytest.approx(1 - 0.1 / n, abs=1e-6)
    assert scores[0] < scores[1] < scores[2] < scores[3]
    # k = 4 (the whole bank): the farthest bank point counts
    far = score_samples("knn", NO_LOGITS[:1], QUERIES[:1], s, k=4)
    assert far.item() == pytest.approx(1 + 0.1 / n, abs=1e-6)  # (1, 0) vs (-0.1, 1): cos < 0


def test_mahalanobis_hand_computed():
    s = KnownClassStats(
        prototypes=torch.tensor([[0.0, 0.0], [10.0, 0.0]]),
        counts=torch.tensor([3, 3]),
        radius=1.0,
        precision=torch.diag(torch.tensor([1.0, 4.0])),
        bank=torch.ones(1, 2),
        bank_labels=torch.zeros(1, dtype=torch.long),
    )
    f = torch.tensor([[1.0, 1.0], [5.0, 0.0], [0.0, 2.0], [5.0, 3.0]])
    scores = score_samples("mahalanobis", torch.zeros(4, 2), f, s)
    # min over classes of dx^2 + 4 dy^2: min(5, 85), min(25, 25), min(16, 116), min(61, 61)
    assert scores.tolist() == pytest.approx([5.0, 25.0, 16.0, 61.0])


def test_feature_scores_rank_far_points_above_known_ones():
    s = stats()
    known, novel = FEATURES, torch.tensor([[-1.0, -0.9], [-0.8, -1.1], [-1.2, -1.0]])
    for method in ("cosine_prototype", "knn", "mahalanobis"):
        on_known = score_samples(method, torch.zeros(4, 2), known, s)
        on_novel = score_samples(method, torch.zeros(3, 2), novel, s)
        assert on_novel.min() > on_known.max(), method
    # transductive: scored on the set together, one free centre settles on the novel points
    both = torch.cat([known, novel])
    margin = score_samples("kmeans_margin", torch.zeros(7, 2), both, s, k=1)
    assert margin[4:].min() > 0 > margin[:4].max()


def test_bad_method_or_missing_features():
    with pytest.raises(ValueError, match="unknown novelty score"):
        score_samples("odin", NO_LOGITS)
    with pytest.raises(ValueError, match="needs features"):
        score_samples("knn", NO_LOGITS, None, stats())
    with pytest.raises(ValueError, match="needs features"):
        score_samples("mahalanobis", NO_LOGITS, QUERIES, None)


def test_known_class_stats_hand_computed():
    s = known_class_stats(FEATURES, LABELS, num_classes=2, bank_size=3, seed=0)
    assert torch.allclose(s.prototypes, torch.eye(2))  # class means (1, 0), (0, 1)
    assert s.counts.tolist() == [2, 2] and s.num_classes == 2
    # within-class deviations are +-0.1 on one axis per class: covariance diag 0.02 / 3 each
    var = 0.02 / 3
    assert s.radius == pytest.approx(math.sqrt(var), rel=1e-5)
    expected_precision = torch.eye(2) / (var * (1 + 1e-3))  # shrinkage 1e-3 x mean variance
    assert torch.allclose(s.precision, expected_precision, rtol=1e-4)
    # the bank: a seeded subsample of 3 L2-normalised features, with their labels
    assert s.bank.shape == (3, 2) and torch.allclose(s.bank.norm(dim=1), torch.ones(3))
    normalised = FEATURES / FEATURES.norm(dim=1, keepdim=True)
    for row, label in zip(s.bank, s.bank_labels):
        match = torch.nonzero(torch.isclose(normalised, row).all(1)).flatten()
        assert match.numel() == 1 and int(LABELS[match[0]]) == int(label)
    again = known_class_stats(FEATURES, LABELS, num_classes=2, bank_size=3, seed=0)
    assert torch.equal(again.bank, s.bank)
    restored = KnownClassStats.from_state_dict(s.state_dict())
    assert torch.equal(restored.precision, s.precision) and restored.radius == s.radius


def test_replay_features_are_class_balanced_around_the_prototypes():
    s = KnownClassStats(
        prototypes=torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]),
        counts=torch.tensor([500, 0, 5]),  # long tail; class 1 has no sample
        radius=0.5,
        precision=torch.eye(2),
        bank=torch.ones(1, 2),
        bank_labels=torch.zeros(1, dtype=torch.long),
    )
    gen = torch.Generator().manual_seed(0)
    feats, labels = sample_replay_features(s, 4000, gen)
    assert feats.shape == (4000, 2) and set(labels.tolist()) == {0, 2}
    # uniform over the classes with a prototype, whatever their counts: 2000 +- 4 sigma (31.6)
    assert abs(int((labels == 0).sum()) - 2000) < 130
    for c in (0, 2):
        members = feats[labels == c]
        assert torch.allclose(members.mean(0), s.prototypes[c], atol=0.05)
        assert members.std(0).tolist() == pytest.approx([0.5, 0.5], abs=0.03)
    feats2, labels2 = sample_replay_features(s, 4000, torch.Generator().manual_seed(0))
    assert torch.equal(feats, feats2) and torch.equal(labels, labels2)  # seeded
