"""Clustering tools for novel-class discovery: k-means (faiss or sklearn), choosing k, Sinkhorn-Knopp.

Pure functions on numpy arrays / tensors; the pseudo-label plugin composes them.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

__all__ = [
    "KMEANS_BACKENDS",
    "faiss_available",
    "kmeans",
    "estimate_num_clusters",
    "searched_k_range",
    "k_range_edge",
    "sinkhorn_knopp",
    "balanced_kmeans_assign",
    "preprocess_features",
    "semi_supervised_kmeans",
]

KMEANS_BACKENDS = ("auto", "faiss", "sklearn")


def faiss_available() -> bool:
    """Whether the ``faiss`` package (faiss-cpu or faiss-gpu) can be imported."""
    return importlib.util.find_spec("faiss") is not None


def _as_float32(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"expected [N, D] features, got shape {features.shape}")
    return features


def kmeans(
    features: np.ndarray | torch.Tensor,
    k: int,
    seed: int = 0,
    n_iter: int = 50,
    backend: str = "auto",
    n_init: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ initialisation, run by faiss or by scikit-learn.

    The same inputs and seed give the same result with either backend; the two backends agree up
    to a permutation of cluster ids on well-separated data, not bit for bit.

    Args:
        features (ndarray | Tensor): ``[N, D]`` features, ``N >= k``.
        k (int): number of clusters.
        seed (int): random seed of the initialisation.
        n_iter (int): maximum Lloyd iterations.
        backend (str): ``'faiss'`` (``faiss.Kmeans``), ``'sklearn'`` (``sklearn.cluster.KMeans``)
            or ``'auto'``: faiss when installed (much faster on large pools), else sklearn.
        n_init (int): restarts (seeds ``seed, seed + 1, ...``); the lowest inertia is kept.

    Returns:
        tuple: ``labels`` (``[N]`` int64 in ``0 .. k-1``) and ``centroids`` (``[k, D]`` float32).

    Raises:
        ValueError: unknown backend, fewer samples than clusters, or ``k < 1``.
        ImportError: ``backend='faiss'`` without faiss installed.
    """
    if backend not in KMEANS_BACKENDS:
        raise ValueError(f"backend must be one of {KMEANS_BACKENDS}, got {backend!r}")
    x = _as_float32(features)
    if k < 1 or x.shape[0] < k:
        raise ValueError(f"cannot make {k} clusters from {x.shape[0]} samples")
    if backend == "faiss" or (backend == "auto" and faiss_available()):
        import faiss  # noqa: PLC0415 -- optional dependency

        best_obj, best = np.inf, None
        for restart in range(n_init):
            # k-means++ seeding (faiss's own is a random sample, which often merges blobs).
            init, _ = kmeans_plusplus(x, k, random_state=seed + restart)
            # Use every point: faiss otherwise subsamples to 256 points per centroid.
            model = faiss.Kmeans(
                x.shape[1],
                k,
                niter=n_iter,
                seed=seed + restart,
                verbose=False,
                max_points_per_centroid=max(256, -(-x.shape[0] // k)),
                min_points_per_centroid=1,
            )
            model.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
            if model.obj[-1] < best_obj:
                best_obj, best = model.obj[-1], model
        _, labels = best.index.search(x, 1)
        return labels.ravel().astype(np.int64), np.asarray(best.centroids, dtype=np.float32)
    model = KMeans(n_clusters=k, n_init=n_init, max_iter=n_iter, random_state=seed)
    labels = model.fit_predict(x)
    return labels.astype(np.int64), model.cluster_centers_.astype(np.float32)


def estimate_num_clusters(
    features: np.ndarray | torch.Tensor,
    k_min: int,
    k_max: int,
    seed: int = 0,
    sample_size: int = 2000,
    backend: str = "auto",
) -> int:
    """Number of clusters in ``[k_min, k_max]`` with the highest mean silhouette coefficient.

    Each candidate ``k`` is clustered with :func:`kmeans` on all samples; the silhouette (O(n^2))
    is computed on a random subsample of ``sample_size`` samples. Ties go to the smaller ``k``.

    Args:
        features (ndarray | Tensor): ``[N, D]`` features.
        k_min (int): smallest candidate, ``>= 2`` (the silhouette needs two clusters).
        k_max (int): largest candidate, ``< N``.
        seed (int): seed of k-means and of the silhouette subsample.
        sample_size (int): samples used for each silhouette score.
        backend (str): k-means backend, see :func:`kmeans`.

    Returns:
        int: the chosen number of clusters.

    Raises:
        ValueError: an empty or invalid range.
    """
    x = _as_float32(features)
    if not 2 <= k_min <= k_max < x.shape[0]:
        raise ValueError(
            f"need 2 <= k_min <= k_max < N, got k_min={k_min}, k_max={k_max}, N={x.shape[0]}"
        )
    subsample = sample_size if x.shape[0] > sample_size else None
    best_k, best_score = k_min, -np.inf
    for k in range(k_min, k_max + 1):
        labels, _ = kmeans(x, k, seed=seed, backend=backend)
        if np.unique(labels).size < 2:
            continue
        score = silhouette_score(x, labels, sample_size=subsample, random_state=seed)
        if score > best_score:
            best_k, best_score = k, score
    return best_k


def searched_k_range(k_range: tuple[int, int], num_samples: int) -> tuple[int, int]:
    """The candidates :func:`estimate_num_clusters` can actually try: ``k_range`` with its upper end
    capped at ``num_samples - 1`` (the silhouette needs fewer clusters than samples)."""
    return int(k_range[0]), min(int(k_range[1]), int(num_samples) - 1)


def k_range_edge(k: int, low: int, high: int) -> str | None:
    """``'lower'`` / ``'upper'`` when an estimated ``k`` sits on an end of the searched range
    ``[low, high]`` that the range, not the silhouette, imposed; None inside it.

    An estimate on such an end is censored: the silhouette may keep rising beyond it, so the true
    optimum can lie outside the range. ``low == 2`` is no such end (the silhouette is undefined for
    one cluster, so nothing below 2 could be tried), and neither is a ``high`` equal to ``low``.

    Args:
        k (int): the estimate.
        low (int): smallest candidate tried.
        high (int): largest candidate tried (after any cap by the number of samples).
    """
    if high <= low:
        return None
    if k <= low and low > 2:
        return "lower"
    if k >= high:
        return "upper"
    return None


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, n_iter: int = 3) -> torch.Tensor:
    """Balanced soft assignment of N samples to K clusters (Sinkhorn-Knopp, as in SwAV and UNO).

    Starts from ``Q = exp(scores / epsilon)`` and alternately rescales columns to sum to ``N / K``
    (every cluster gets an equal share) and rows to sum to 1 (every sample is fully assigned),
    ``n_iter`` times, ending with the rows. Computed in the log domain in float64, so a small
    ``epsilon`` cannot overflow ``exp``.

    Args:
        scores (Tensor): ``[N, K]`` similarities (e.g. cosine similarity to prototypes).
        epsilon (float): entropic regularisation; smaller = harder assignments.
        n_iter (int): number of (column, row) normalisation rounds, ``>= 1``.

    Returns:
        Tensor: ``[N, K]`` assignment probabilities (same dtype as ``scores``); every row sums to 1
        and column sums approach ``N / K`` as ``n_iter`` grows.
    """
    if scores.dim() != 2:
        raise ValueError(f"expected [N, K] scores, got shape {tuple(scores.shape)}")
    if epsilon <= 0 or n_iter < 1:
        raise ValueError(f"need epsilon > 0 and n_iter >= 1, got {epsilon}, {n_iter}")
    num_samples, num_clusters = scores.shape
    log_q = scores.detach().double() / epsilon
    log_col_mass = np.log(num_samples / num_clusters)
    for _ in range(n_iter):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) + log_col_mass
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True)
    return log_q.exp().to(scores.dtype if scores.is_floating_point() else torch.float32)


def balanced_kmeans_assign(
    features: np.ndarray | torch.Tensor,
    centroids: np.ndarray | torch.Tensor,
    epsilon: float = 0.05,
    n_iter: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Assigns samples to centroids under an equal-size prior, so no cluster swallows the pool.

    Scores are cosine similarities between L2-normalised features and centroids; Sinkhorn-Knopp
    balances them and each sample takes the cluster of highest balanced probability.

    Args:
        features (ndarray | Tensor): ``[N, D]`` features.
        centroids (ndarray | Tensor): ``[K, D]`` centroids (e.g. from :func:`kmeans`).
        epsilon (float): Sinkhorn regularisation (see :func:`sinkhorn_knopp`).
        n_iter (int): Sinkhorn rounds.

    Returns:
        tuple: ``labels`` (``[N]`` int64) and ``probabilities`` (``[N, K]`` float32, rows sum to 1).
    """
    x = torch.from_numpy(_as_float32(features))
    c = torch.from_numpy(_as_float32(centroids))
    if x.shape[1] != c.shape[1]:
        raise ValueError(f"features have {x.shape[1]} dims, centroids {c.shape[1]}")
    similarity = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(c, dim=1).T
    probabilities = sinkhorn_knopp(similarity, epsilon=epsilon, n_iter=n_iter)
    return probabilities.argmax(1).numpy().astype(np.int64), probabilities.numpy()


def preprocess_features(
    features: np.ndarray | torch.Tensor,
    l2_normalize: bool = True,
    pca_dim: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Prepares features for clustering: L2 normalisation, optional PCA, normalised again.

    Normalising first makes Euclidean k-means behave like cosine (spherical) k-means, which suits
    features of a network trained with a softmax head; PCA then drops noisy dimensions and the
    projected vectors are re-normalised.

    Args:
        features (ndarray | Tensor): ``[N, D]`` features.
        l2_normalize (bool): normalise each row to unit length (before and after PCA).
        pca_dim (int | None): keep this many principal components, ``1 <= pca_dim <= min(N, D)``;
            None keeps all dimensions.
        seed (int): PCA's random state (used by its randomised solver on large inputs).

    Returns:
        ndarray: ``[N, pca_dim or D]`` float32 features.

    Raises:
        ValueError: ``pca_dim`` out of range.
    """
    x = _as_float32(features)

    def normalize(values: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(values, axis=1, keepdims=True)
        return values / np.maximum(norms, 1e-12)

    if l2_normalize:
        x = normalize(x)
    if pca_dim is not None:
        if not 1 <= pca_dim <= min(x.shape):
            raise ValueError(f"pca_dim must be in [1, min(N, D) = {min(x.shape)}], got {pca_dim}")
        x = PCA(n_components=pca_dim, random_state=seed).fit_transform(x).astype(np.float32)
        if l2_normalize:
            x = normalize(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def _seed_centres(
    x: torch.Tensor, fixed: torch.Tensor, k: int, gen: torch.Generator
) -> torch.Tensor:
    """k-means++ seeding of ``k`` new centres given centres already placed (``fixed``)."""
    chosen: list[torch.Tensor] = []
    if fixed.shape[0]:
        d2 = torch.cdist(x, fixed).amin(1).pow(2)
    else:
        first = x[torch.randint(0, x.shape[0], (1,), generator=gen)]
        chosen.append(first[0])
        d2 = (x - first).pow(2).sum(1)
    while len(chosen) < k:
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / d2.numel())
        pick = x[torch.multinomial(probs, 1, generator=gen)][0]
        chosen.append(pick)
        d2 = torch.minimum(d2, (x - pick).pow(2).sum(1))
    return torch.stack(chosen)


def semi_supervised_kmeans(
    features: np.ndarray | torch.Tensor,
    known_centres: np.ndarray | torch.Tensor,
    k: int,
    seed: int = 0,
    n_iter: int = 50,
    n_init: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means with the known classes' centres held fixed and ``k`` free centres (GCD, Vaze et al.
    CVPR 2022, with prototypes as the labeled anchors).

    Samples nearest to a known centre join that class instead of forming a false novel cluster;
    only the ``k`` novel centres move (Lloyd updates). An emptied novel centre is re-seeded at the
    sample farthest from every centre. The restart of lowest inertia is kept.

    Args:
        features: ``[N, D]`` features (already preprocessed, e.g. L2-normalised).
        known_centres: ``[K, D]`` fixed centres in the same space (``K`` may be 0).
        k: number of novel clusters, ``1 <= k <= N``.
        seed: seed of the k-means++ seeding.
        n_iter: maximum Lloyd iterations.
        n_init: restarts.

    Returns:
        tuple: ``labels`` (``[N]`` int64: ``0..K-1`` a known centre, ``K..K+k-1`` a novel cluster)
        and ``novel_centroids`` (``[k, D]`` float32).

    Raises:
        ValueError: ``k`` out of range or mismatched dimensions.
    """
    x = torch.from_numpy(_as_float32(features)).double()
    fixed = torch.from_numpy(_as_float32(known_centres)).double().reshape(-1, x.shape[1])
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"cannot make {k} novel clusters from {x.shape[0]} samples")
    num_fixed = fixed.shape[0]
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for restart in range(max(1, int(n_init))):
        gen = torch.Generator().manual_seed(int(seed) + restart)
        novel = _seed_centres(x, fixed, k, gen)
        for _ in range(int(n_iter)):
            dist = torch.cdist(x, torch.cat([fixed, novel]))
            labels = dist.argmin(1)
            updated = novel.clone()
            for c in range(k):
                members = labels == num_fixed + c
                if members.any():
                    updated[c] = x[members].mean(0)
                else:  # re-seed at the sample farthest from every centre
                    updated[c] = x[dist.amin(1).argmax()]
            shift = float((updated - novel).abs().max())
            novel = updated
            if shift < 1e-7:
                break
        dist = torch.cdist(x, torch.cat([fixed, novel]))
        labels = dist.argmin(1)
        inertia = float(dist.amin(1).pow(2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, novel)
    assert best is not None
    return best[1].numpy().astype(np.int64), best[2].float().numpy()
