"""Pure helpers of the novel-class-discovery plugins: pool eviction, pseudo-labels, stable cluster ids.

Tensors in, tensors out; the plugins in ``strategies/`` (gate, clustering, dual teacher) are glue.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from avalanche_ext.clustering import (
    balanced_kmeans_assign,
    estimate_num_clusters,
    kmeans,
    preprocess_features,
    searched_k_range,
)
from avalanche_ext.metrics.clustering import hungarian_match

__all__ = [
    "EVICTION_POLICIES",
    "ClusterResult",
    "align_cluster_ids",
    "cluster_pool",
    "novel_rate_offset",
    "evict_fifo",
    "evict_most_confident",
    "lookup_table",
    "register_eviction_policy",
    "soft_assignments",
]


EvictionPolicy = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
EVICTION_POLICIES: dict[str, EvictionPolicy] = {}
"""Pool eviction policy name -> ``f(scores, arrival, capacity) -> kept positions`` (the gate's
``eviction`` config key names one)."""


def register_eviction_policy(name: str) -> Callable[[EvictionPolicy], EvictionPolicy]:
    """Decorator registering a pool eviction policy under ``name`` in :data:`EVICTION_POLICIES`."""

    def wrap(fn: EvictionPolicy) -> EvictionPolicy:
        if name in EVICTION_POLICIES:
            raise KeyError(f"eviction policy {name!r} is already registered")
        EVICTION_POLICIES[name] = fn
        return fn

    return wrap


@register_eviction_policy("fifo")
def evict_fifo(scores: torch.Tensor, arrival: torch.Tensor, capacity: int) -> torch.Tensor:
    """Keeps the ``capacity`` most recent entries (first in, first out).

    Args:
        scores (Tensor): ``[N]`` novelty scores (unused; every policy has the same signature).
        arrival (Tensor): ``[N]`` arrival order (larger = later), unique.
        capacity (int): entries to keep, ``>= 0``.

    Returns:
        LongTensor: positions of the kept entries, in arrival order.
    """
    del scores
    order = torch.argsort(arrival, stable=True)
    return order[max(0, order.numel() - capacity) :]


@register_eviction_policy("most_confident_out")
def evict_most_confident(
    scores: torch.Tensor, arrival: torch.Tensor, capacity: int
) -> torch.Tensor:
    """Keeps the ``capacity`` highest novelty scores: the most confidently known go out first.

    Ties are broken in favour of the earlier arrival (a stable sort), so the result is deterministic.

    Args:
        scores (Tensor): ``[N]`` novelty scores (higher = more novel).
        arrival (Tensor): ``[N]`` arrival order (larger = later), unique.
        capacity (int): entries to keep, ``>= 0``.

    Returns:
        LongTensor: positions of the kept entries, in arrival order.
    """
    by_arrival = torch.argsort(arrival, stable=True)
    by_score = by_arrival[torch.argsort(-scores[by_arrival].double(), stable=True)]
    kept = by_score[:capacity]
    return kept[torch.argsort(arrival[kept], stable=True)]


def soft_assignments(
    features: np.ndarray | torch.Tensor,
    centroids: np.ndarray | torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Soft cluster memberships ``softmax(cos(x_i, c_j) / T)`` over the centroids.

    Args:
        features (ndarray | Tensor): ``[N, D]`` features.
        centroids (ndarray | Tensor): ``[K, D]`` centroids.
        temperature (float): ``T > 0``; smaller = harder assignments.

    Returns:
        Tensor: ``[N, K]`` float32 probabilities, rows sum to 1.

    Raises:
        ValueError: non-positive temperature or mismatched dimensions.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    c = torch.as_tensor(np.asarray(centroids, dtype=np.float32))
    if x.dim() != 2 or c.dim() != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"features {tuple(x.shape)} and centroids {tuple(c.shape)} do not fit")
    similarity = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(c, dim=1).T
    return torch.softmax(similarity / temperature, dim=1)


@dataclass
class ClusterResult:
    """Pseudo-labels of a pool of features.

    Args:
        labels: ``[N]`` int64 cluster ids in ``0 .. k-1``.
        probabilities: ``[N, k]`` float32 soft assignments (rows sum to 1).
        centroids: ``[k, D']`` float32 centroids in the preprocessed feature space.
        num_clusters: ``k``.
    """

    labels: torch.Tensor
    probabilities: torch.Tensor
    centroids: torch.Tensor
    num_clusters: int


def cluster_pool(
    features: np.ndarray | torch.Tensor,
    num_clusters: int | None = None,
    k_range: tuple[int, int] = (2, 30),
    l2_normalize: bool = True,
    pca_dim: int | None = None,
    backend: str = "auto",
    balanced: bool = True,
    seed: int = 0,
    n_init: int = 1,
    sinkhorn_epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
    soft_temperature: float = 0.1,
) -> ClusterResult:
    """Preprocesses pooled features, chooses ``k`` if needed, runs k-means and assigns clusters.

    ``k`` larger than the pool is lowered to the pool size, ``pca_dim`` to ``min(N, D)`` (a small
    pool cannot support more). With ``balanced`` the assignment is Sinkhorn-Knopp's (equal-size
    prior, so no cluster swallows the pool) and ``probabilities`` are its balanced memberships;
    otherwise labels are k-means's and ``probabilities`` are :func:`soft_assignments`.

    Args:
        features (ndarray | Tensor): ``[N, D]`` pooled features.
        num_clusters (int | None): ``k``; None estimates it by silhouette over ``k_range``.
        k_range (tuple[int, int]): inclusive candidate range for the estimate.
        l2_normalize (bool): see :func:`avalanche_ext.clustering.preprocess_features`.
        pca_dim (int | None): see :func:`avalanche_ext.clustering.preprocess_features`.
        backend (str): k-means backend, ``'auto'``, ``'faiss'`` or ``'sklearn'``.
        balanced (bool): Sinkhorn-Knopp balanced assignment.
        seed (int): seed of PCA, k-means and the estimate.
        n_init (int): k-means restarts.
        sinkhorn_epsilon (float): Sinkhorn regularisation.
        sinkhorn_iters (int): Sinkhorn rounds.
        soft_temperature (float): temperature of the unbalanced soft assignments.

    Returns:
        ClusterResult: labels, probabilities, centroids and ``k``.

    Raises:
        ValueError: an empty pool, or ``k < 1``.
    """
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    n = x.shape[0]
    if n == 0:
        raise ValueError("cannot cluster an empty pool")
    if pca_dim is not None:
        pca_dim = min(int(pca_dim), n, x.shape[1])
    prepared = preprocess_features(x, l2_normalize=l2_normalize, pca_dim=pca_dim, seed=seed)
    if num_clusters is None:
        low, high = searched_k_range(k_range, n)
        k = (
            estimate_num_clusters(prepared, low, high, seed=seed, backend=backend)
            if low <= high
            else 1
        )
    else:
        k = int(num_clusters)
    if k < 1:
        raise ValueError(f"num_clusters must be >= 1, got {k}")
    k = min(k, n)
    labels, centroids = kmeans(prepared, k, seed=seed, backend=backend, n_init=n_init)
    if balanced and k > 1:
        labels, probabilities = balanced_kmeans_assign(
            prepared, centroids, epsilon=sinkhorn_epsilon, n_iter=sinkhorn_iters
        )
        probabilities = torch.from_numpy(probabilities)
    else:
        probabilities = soft_assignments(prepared, centroids, temperature=soft_temperature)
    return ClusterResult(
        labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        probabilities=probabilities.float(),
        centroids=torch.from_numpy(np.asarray(centroids, dtype=np.float32)),
        num_clusters=k,
    )


def align_cluster_ids(
    reference: torch.Tensor, labels: torch.Tensor, num_clusters: int
) -> torch.Tensor:
    """Permutation of new cluster ids onto old ones, so ids stay stable across re-clustering.

    The Hungarian matching maximises the number of samples whose new cluster maps to their old id;
    new ids left unmatched (a cluster empty in one of the two labelings) take the free old ids in
    increasing order.

    Args:
        reference (Tensor): ``[N]`` previous cluster ids in ``0 .. k-1``.
        labels (Tensor): ``[N]`` new cluster ids in ``0 .. k-1`` of the same samples.
        num_clusters (int): ``k``.

    Returns:
        LongTensor: ``[k]`` ``perm`` with ``perm[new_id] = old_id``; apply as ``perm[labels]``.
    """
    mapping = hungarian_match(reference, labels)
    perm = torch.full((num_clusters,), -1, dtype=torch.long)
    for new_id, old_id in mapping.items():
        perm[new_id] = old_id
    free = [c for c in range(num_clusters) if c not in set(mapping.values())]
    for new_id in range(num_clusters):
        if perm[new_id] < 0:
            perm[new_id] = free.pop(0)
    return perm


def lookup_table(
    indices: torch.Tensor, values: torch.Tensor, size: int, fill: int = -1
) -> torch.Tensor:
    """A dense LongTensor ``t`` of length ``size`` with ``t[indices] = values`` and ``fill`` elsewhere.

    Relabeling a minibatch by sample index is then one indexing op: ``t[batch_indices]``.

    Args:
        indices (Tensor): ``[M]`` distinct positions in ``0 .. size-1``.
        values (Tensor): ``[M]`` integer values.
        size (int): table length.
        fill (int): value of positions not in ``indices``.

    Returns:
        LongTensor: ``[size]``.
    """
    table = torch.full((size,), fill, dtype=torch.long)
    table[indices.long()] = values.long()
    return table


def novel_rate_offset(margins: torch.Tensor, rate: float) -> float:
    """Offset ``b`` such that ``margins + b > 0`` holds for a share ``rate`` of known samples.

    Calibrates a grown classifier's old-vs-new decision on held-out KNOWN samples (true labels,
    never trained on): ``margins`` = best new-class logit minus best old-class logit of each; after
    adding ``b`` to every new row's bias, ``floor(rate * n)`` of them are predicted as a new class
    (the cut sits halfway between two consecutive margins, so it does not hug a sample). This is a
    bias correction in the spirit of BiC (Wu et al. 2019), fitted on known data instead of on the
    gate's own decisions.

    Args:
        margins (Tensor): ``[n]`` float margins of held-out known samples.
        rate (float): target share in ``[0, 1)`` of them predicted as new.

    Returns:
        float: ``b`` (0.0 for an empty input).
    """
    m = torch.sort(margins.detach().double().cpu().flatten(), descending=True).values
    n = m.numel()
    if n == 0:
        return 0.0
    j = int(math.floor(rate * n + 1e-9))  # samples allowed above the cut
    above = m[j - 1] if j > 0 else m[0] + 1.0
    below = m[j] if j < n else m[-1] - 1.0
    return float(-(above + below) / 2)
