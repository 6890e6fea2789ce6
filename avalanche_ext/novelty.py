"""Novelty scores from logits AND from features, the known-class statistics the feature scores need,
and old-class feature replay. Pure functions; the gate and the dual teacher are glue over them.

Convention of every score: HIGHER = MORE LIKELY NOVEL. Register a new one with
:func:`register_novelty_score`; the gate's ``score`` config key names it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avalanche_ext.metrics.confidence import (
    NOVELTY_SCORERS,
    NoveltyScorer,
    register_novelty_score,
)
from avalanche_ext.ncd_state import KnownClassStats

__all__ = [
    "NOVELTY_SCORERS",
    "NoveltyScorer",
    "cosine_prototype_score",
    "known_class_stats",
    "knn_score",
    "mahalanobis_score",
    "register_novelty_score",
    "sample_replay_features",
    "score_samples",
]


@register_novelty_score(
    "max_logit", needs_features=False, reference="Hendrycks et al., ICML 2022 (negated max logit)"
)
def max_logit_score(logits, temperature=1.0):
    """``-max_j logits_j``: unlike softmax scores it keeps the logits' scale."""
    return -logits.float().amax(1)


@register_novelty_score(
    "cosine_prototype",
    needs_features=True,
    reference="1 - max cosine similarity to a class prototype (mean feature), as in GCD / PASS",
)
def cosine_prototype_score(logits, features, stats: KnownClassStats, temperature=1.0):
    """``1 - max_c cos(f, mu_c)`` over the known classes' prototypes: in ``[0, 2]``."""
    protos = F.normalize(stats.prototypes[stats.counts > 0].float(), dim=1)
    return 1.0 - (F.normalize(features.float(), dim=1) @ protos.T).amax(1)


@register_novelty_score(
    "knn",
    needs_features=True,
    reference="Sun et al., ICML 2022 (distance to the k-th nearest training feature, normalised)",
)
def knn_score(logits, features, stats: KnownClassStats, temperature=1.0, k: int = 10):
    """``1 - cos`` to the ``k``-th nearest L2-normalised training feature of ``stats.bank``."""
    bank = stats.bank.float()
    k = max(1, min(int(k), bank.shape[0]))
    sims = F.normalize(features.float(), dim=1) @ bank.T
    return 1.0 - sims.topk(k, dim=1).values[:, -1]


@register_novelty_score(
    "mahalanobis",
    needs_features=True,
    reference="Lee et al., NeurIPS 2018 (min class-conditional Mahalanobis distance, tied covariance)",
)
def mahalanobis_score(logits, features, stats: KnownClassStats, temperature=1.0):
    """``min_c (f - mu_c)^T P (f - mu_c)`` with the tied precision ``P``."""
    mu = stats.prototypes[stats.counts > 0].float()
    f = features.float()
    fp = f @ stats.precision.float()
    # (f - mu)^T P (f - mu) = fPf - 2 fPmu + muPmu, for every class at once.
    quad = (fp * f).sum(1, keepdim=True) - 2 * fp @ mu.T + ((mu @ stats.precision) * mu).sum(1)
    return quad.amin(1)


@register_novelty_score(
    "kmeans_margin",
    needs_features=True,
    reference=(
        "semi-supervised k-means (GCD, Vaze et al. CVPR 2022) over the scored samples with the known "
        "prototypes fixed: distance to the nearest known prototype minus distance to the nearest "
        "novel centre"
    ),
    transductive=True,
)
def kmeans_margin_score(
    logits, features, stats: KnownClassStats, temperature=1.0, k: int = 20, seed: int = 0
):
    """How much closer a sample is to a novel centre than to any known class (transductive).

    ``k`` free centres are fitted with the known prototypes held fixed (L2-normalised features),
    so the novel samples' own density defines the novel centres; a weak classifier's logits are
    not needed.
    """
    from avalanche_ext.clustering import semi_supervised_kmeans  # noqa: PLC0415

    x = F.normalize(features.float(), dim=1)
    protos = F.normalize(stats.prototypes[stats.counts > 0].float(), dim=1)
    k = max(1, min(int(k), x.shape[0]))
    _, novel = semi_supervised_kmeans(x.numpy(), protos.numpy(), k, seed=seed, n_init=2)
    d_known = torch.cdist(x, protos).amin(1)
    d_novel = torch.cdist(x, torch.from_numpy(novel)).amin(1)
    return d_known - d_novel


def score_samples(
    method: str,
    logits: torch.Tensor,
    features: torch.Tensor | None = None,
    stats: KnownClassStats | None = None,
    temperature: float = 1.0,
    **kwargs,
) -> torch.Tensor:
    """Scores samples with a registered method.

    Args:
        method: a key of :data:`NOVELTY_SCORERS`.
        logits: ``[N, C]`` logits over the known classes.
        features: ``[N, D]`` features (feature-space scores).
        stats: the known classes' statistics (feature-space scores).
        temperature: temperature of the logit scores.
        **kwargs: extra arguments of the method (``k`` of ``knn``, ``evidence`` of ``evidential``).

    Raises:
        ValueError: unknown method, or a feature score without features/stats.
    """
    if method not in NOVELTY_SCORERS:
        raise ValueError(
            f"unknown novelty score {method!r}; choose one of {sorted(NOVELTY_SCORERS)}"
        )
    scorer = NOVELTY_SCORERS[method]
    if scorer.needs_features and (features is None or stats is None):
        raise ValueError(f"novelty score {method!r} needs features and known-class statistics")
    with torch.no_grad():
        if not scorer.needs_features:
            return scorer.fn(logits.float(), temperature=temperature, **kwargs).float()
        return scorer.fn(logits, features, stats, temperature=temperature, **kwargs).float()


def known_class_stats(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    bank_size: int = 10_000,
    shrinkage: float = 1e-3,
    seed: int = 0,
) -> KnownClassStats:
    """Prototypes, replay radius, tied precision and a k-NN bank from labeled training features.

    Args:
        features: ``[N, D]`` features of labeled samples (eval mode, no augmentation).
        labels: ``[N]`` their classes in ``0 .. num_classes - 1``.
        num_classes: number of known classes ``C``.
        bank_size: at most this many features kept for k-NN (seeded subsample).
        shrinkage: ridge added to the covariance's diagonal, relative to its mean variance.
        seed: seed of the subsample.
    """
    f = features.float()
    y = labels.long()
    d = f.shape[1]
    counts = torch.bincount(y, minlength=num_classes)[:num_classes]
    sums = torch.zeros(num_classes, d).index_add_(0, y, f)
    protos = sums / counts.clamp_min(1).unsqueeze(1).float()
    centred = f - protos[y]
    cov = centred.T @ centred / max(1, f.shape[0] - 1)
    mean_var = float(cov.diagonal().mean())
    cov = cov + shrinkage * max(mean_var, 1e-12) * torch.eye(d)
    gen = torch.Generator().manual_seed(int(seed))
    keep = torch.randperm(f.shape[0], generator=gen)[: int(bank_size)]
    return KnownClassStats(
        prototypes=protos,
        counts=counts,
        radius=float(max(mean_var, 0.0) ** 0.5),
        precision=torch.linalg.inv(cov),
        bank=F.normalize(f[keep], dim=1),
        bank_labels=y[keep],
    )


def sample_replay_features(
    stats: KnownClassStats, num: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Old-class feature replay (PASS, Zhu et al. CVPR 2021; FRoST, Roy et al. ECCV 2022).

    Draws ``num`` features ``mu_c + radius * e``, ``e ~ N(0, I)``, with classes drawn uniformly among
    the classes that have a prototype (class-balanced, whatever the training long tail).

    Returns:
        ``(features [num, D], labels [num])``.
    """
    classes = torch.nonzero(stats.counts > 0).flatten()
    pick = classes[torch.randint(0, classes.numel(), (int(num),), generator=generator)]
    noise = torch.randn(int(num), stats.prototypes.shape[1], generator=generator)
    return stats.prototypes[pick].float() + stats.radius * noise, pick
