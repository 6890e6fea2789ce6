"""Self-supervised discovery objectives on a novel head: swapped prediction on Sinkhorn-balanced
targets (UNO, Fini et al. ICCV 2021) and pairwise rank-statistics labels (AutoNovel / FRoST).

Pure functions of logits and features; :class:`~strategies.novel_head_update.NovelHeadUpdatePlugin`
wires them into an update. Every objective is registered in ``DISCOVERY_OBJECTIVES`` by a
decorator, so a new objective is one new function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from avalanche_ext.clustering import sinkhorn_knopp

__all__ = [
    "DISCOVERY_OBJECTIVES",
    "harmonic_mean",
    "pairwise_loss",
    "rank_statistics_pairs",
    "register_objective",
    "balanced_targets",
    "swapped_prediction_loss",
]

DiscoveryObjective = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor
]
DISCOVERY_OBJECTIVES: dict[str, DiscoveryObjective] = {}


def register_objective(name: str) -> Callable[[DiscoveryObjective], DiscoveryObjective]:
    """Registers ``f(logits_1, logits_2, targets_1, targets_2, features_1, features_2) -> loss``
    under ``name``: novel-head logits of two views of the same images, their balanced soft targets
    (:func:`balanced_targets`, computed by the caller, detached) and their features."""

    def wrap(fn: DiscoveryObjective) -> DiscoveryObjective:
        if name in DISCOVERY_OBJECTIVES:
            raise KeyError(f"discovery objective {name!r} is already registered")
        DISCOVERY_OBJECTIVES[name] = fn
        return fn

    return wrap


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """``2ab / (a + b)``; 0 when either is 0 (a model that never predicts a new class), None when
    either is unknown."""
    if a is None or b is None:
        return None
    return 0.0 if a + b <= 0 else 2.0 * a * b / (a + b)


def balanced_targets(
    similarities: torch.Tensor,
    queue: torch.Tensor | None = None,
    epsilon: float = 0.05,
    n_iter: int = 3,
) -> torch.Tensor:
    """Sinkhorn-balanced soft targets of a batch (no gradient), balanced together with a queue.

    One minibatch rarely holds the classes in equal numbers; balancing it alone splits the
    classes it holds many of. As in SwAV, the rows of recent minibatches (``queue``) are balanced
    with it and only the current rows are returned.

    Args:
        similarities: ``[B, k]`` cosine similarities of the batch to the novel prototypes.
        queue: ``[Q, k]`` similarities of earlier samples, or None.
        epsilon: Sinkhorn regularisation (smaller = harder targets).
        n_iter: Sinkhorn rounds.
    """
    rows = similarities.detach().float()
    if queue is not None and queue.numel():
        rows = torch.cat([rows, queue.to(rows)])
    return sinkhorn_knopp(rows, epsilon=epsilon, n_iter=n_iter)[: similarities.shape[0]]


def swapped_prediction_loss(
    logits_1: torch.Tensor,
    logits_2: torch.Tensor,
    targets_1: torch.Tensor,
    targets_2: torch.Tensor,
) -> torch.Tensor:
    """UNO's swapped prediction: each view predicts the balanced targets of the other view,
    ``0.5 * (CE(logits_1, q_2) + CE(logits_2, q_1))`` (soft cross-entropy, targets detached).
    Balanced targets stop the trivial solution of one cluster.

    Args:
        logits_1: ``[B, k]`` novel-head logits of the first view.
        logits_2: ``[B, k]`` of the second view (same images).
        targets_1: ``[B, k]`` balanced targets of the first view (:func:`balanced_targets`).
        targets_2: ``[B, k]`` of the second view.
    """
    ce_1 = -(targets_2.detach() * F.log_softmax(logits_1, dim=1)).sum(1).mean()
    ce_2 = -(targets_1.detach() * F.log_softmax(logits_2, dim=1)).sum(1).mean()
    return 0.5 * (ce_1 + ce_2)


def rank_statistics_pairs(features: torch.Tensor, top_k: int = 5) -> torch.Tensor:
    """AutoNovel's rank statistics: two samples are a positive pair when the indices of their
    ``top_k`` largest feature dimensions are the same set.

    Args:
        features: ``[B, D]`` features (detached by the caller or not: no gradient flows here).
        top_k: dimensions compared.

    Returns:
        Tensor: ``[B, B]`` float matrix of 1 (same top-k set) and 0, ones on the diagonal.
    """
    idx = features.detach().topk(min(top_k, features.shape[1]), dim=1).indices
    onehot = torch.zeros_like(features, dtype=torch.float32).scatter_(1, idx, 1.0)
    shared = onehot @ onehot.t()
    return (shared >= idx.shape[1]).float()


def pairwise_loss(
    logits_1: torch.Tensor, logits_2: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy of pair similarity ``p_i . p_j`` (softmax of view 1 against view 2)
    against pairwise labels (AutoNovel / FRoST).

    Args:
        logits_1: ``[B, k]`` novel-head logits of view 1.
        logits_2: ``[B, k]`` of view 2.
        targets: ``[B, B]`` 0/1 pair labels (:func:`rank_statistics_pairs`).
    """
    p1, p2 = F.softmax(logits_1, dim=1), F.softmax(logits_2, dim=1)
    similarity = (p1 @ p2.t()).clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(similarity, targets.to(similarity))


@register_objective("swapped")
def _swapped(l1, l2, q1, q2, f1, f2):
    return swapped_prediction_loss(l1, l2, q1, q2)


@register_objective("pairwise")
def _pairwise(l1, l2, q1, q2, f1, f2):
    return pairwise_loss(l1, l2, rank_statistics_pairs(f1))


@register_objective("swapped+pairwise")
def _both(l1, l2, q1, q2, f1, f2):
    return _swapped(l1, l2, q1, q2, f1, f2) + _pairwise(l1, l2, q1, q2, f1, f2)
