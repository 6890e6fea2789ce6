"""Pseudo-labels for the novel pool by k-means: cluster ids become new class ids after the known ones.

Grows the classifier before Avalanche builds the optimizer (new rows start at the clusters' mean
features) and relabels discovery minibatches by one indexing op
(``strategy.ncd.pseudo_labels[strategy.mbatch[2]]``); docs/plugins.md has the contract.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin

from avalanche_ext import distributed
from avalanche_ext.clustering import (
    KMEANS_BACKENDS,
    estimate_num_clusters,
    k_range_edge,
    preprocess_features,
    searched_k_range,
    semi_supervised_kmeans,
)
from avalanche_ext.ncd import align_cluster_ids, cluster_pool, lookup_table
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.plugin_helpers import (
    dataset_outputs,
    is_discovery_experience,
    note_labeled_classes,
)
from avalanche_ext.registry import PLUGINS

__all__ = ["PseudoLabelClusteringPlugin", "init_rows_from_features"]


@torch.no_grad()
def init_rows_from_features(
    classifier: torch.nn.Linear, rows: slice, means: torch.Tensor, num_old: int
) -> None:
    """Sets new classifier rows to the directions of their clusters' mean features.

    Each row gets the mean norm of the old rows (so new and old logits start on one scale) and
    the old rows' mean bias: a grown head then predicts a new class for samples near its cluster
    from the first step, instead of starting near zero.

    Args:
        classifier: the grown linear layer.
        rows: the new rows.
        means: ``[k, D]`` mean feature of each cluster.
        num_old: rows before growth (their norms and biases set the scale).
    """
    old_w = classifier.weight[:num_old]
    norm = old_w.norm(dim=1).mean() if num_old else means.norm(dim=1).mean()
    classifier.weight[rows] = F.normalize(means.to(old_w), dim=1) * norm
    if classifier.bias is not None:
        classifier.bias[rows] = classifier.bias[:num_old].mean() if num_old else 0.0


@PLUGINS.register_module()
class PseudoLabelClusteringPlugin(SupervisedPlugin, supports_distributed=True):
    """Clusters the gate's pool into ``k`` new classes and trains on them as pseudo-labels.

    On a discovery experience whose pool triggered (``strategy.ncd.pool.triggered``), in
    ``after_train_dataset_adaptation``: the pooled features are clustered; cluster ``c`` becomes
    class ``num_known + c``. With ``known_centres`` the k-means is semi-supervised (GCD): the known
    classes' prototypes are fixed centres, so a known sample that leaked through the gate joins its
    class (it gets no pseudo-label and is left out of the update) instead of forming a false novel
    cluster. ``strategy.ncd.pseudo_labels`` (one entry per sample of the experience, -1 where none)
    is set, ``strategy.ncd.cluster_of_all`` assigns EVERY sample of the experience to its nearest
    novel cluster (evaluation scores cluster accuracy over all novel samples with it), and the head
    grows to ``num_known + k`` rows (before Avalanche's ``make_optimizer``), the new rows set from
    the clusters' mean features when ``init_new_rows``. In ``before_forward`` every discovery
    minibatch is relabeled, ``mbatch[1] = pseudo_labels[mbatch[2]]``; samples without a
    pseudo-label are dropped from the minibatch, so ``-1`` never reaches the criterion. After the
    experience ``num_known_classes`` becomes ``num_known + k``.

    Args:
        num_clusters (int | None): ``k``; None estimates it (silhouette over ``k_range``).
        k_range (tuple[int, int]): inclusive range of ``k`` for the estimate.
        known_centres (bool): semi-supervised k-means with the known prototypes fixed (needs the
            gate's ``known_stats``).
        cluster_on (str): ``'pool'`` clusters the pooled samples (the others are assigned to the
            nearest cluster); ``'all'`` clusters every sample of the discovery experience (the
            gate still decides who is trained on: only pooled samples get pseudo-labels). On
            weak features the whole experience gives better clusters than a biased pool.
        backend (str): k-means backend of the unsupervised mode: ``'auto'``, ``'faiss'``,
            ``'sklearn'``.
        l2_normalize (bool): L2-normalise features (and prototypes) before clustering.
        pca_dim (int | None): PCA dimensions before k-means (unsupervised mode only).
        balanced (bool): Sinkhorn-Knopp balanced assignment (unsupervised mode only).
        sinkhorn_epsilon (float): Sinkhorn regularisation.
        sinkhorn_iters (int): Sinkhorn rounds.
        n_init (int): k-means restarts.
        init_new_rows (bool): start the new classifier rows at the clusters' mean features.
        soft (bool): also expose ``strategy.ncd.pseudo_soft_labels`` (soft assignments of the
            pooled samples) for a soft Teacher B.
        soft_temperature (float): temperature of the soft assignments.
        recluster_every (int): re-cluster fresh features of the pool every this many epochs
            (0: never); new clusters are matched to the old ids (Hungarian), so ids stay stable.
        seed (int | None): seed of PCA and k-means (None: the run's seed).
    """

    def __init__(
        self,
        num_clusters: int | None = None,
        k_range: tuple[int, int] | list[int] = (2, 30),
        known_centres: bool = False,
        cluster_on: str = "pool",
        backend: str = "auto",
        l2_normalize: bool = True,
        pca_dim: int | None = None,
        balanced: bool = True,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iters: int = 3,
        n_init: int = 1,
        init_new_rows: bool = True,
        soft: bool = False,
        soft_temperature: float = 0.1,
        recluster_every: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if backend not in KMEANS_BACKENDS:
            raise ValueError(f"backend must be one of {KMEANS_BACKENDS}, got {backend!r}")
        if num_clusters is not None and num_clusters < 1:
            raise ValueError(f"num_clusters must be >= 1 or None, got {num_clusters}")
        low, high = (int(v) for v in k_range)
        if not 2 <= low <= high:
            raise ValueError(f"k_range must be (low, high) with 2 <= low <= high, got {k_range}")
        if recluster_every < 0:
            raise ValueError(f"recluster_every must be >= 0, got {recluster_every}")
        self.num_clusters = num_clusters
        self.k_range = (low, high)
        if cluster_on not in ("pool", "all"):
            raise ValueError(f"cluster_on must be 'pool' or 'all', got {cluster_on!r}")
        self.known_centres = bool(known_centres)
        self.cluster_on = cluster_on
        self.backend = backend
        self.l2_normalize = bool(l2_normalize)
        self.pca_dim = pca_dim
        self.balanced = bool(balanced)
        self.sinkhorn_epsilon = float(sinkhorn_epsilon)
        self.sinkhorn_iters = int(sinkhorn_iters)
        self.n_init = int(n_init)
        self.init_new_rows = bool(init_new_rows)
        self.soft = bool(soft)
        self.soft_temperature = float(soft_temperature)
        self.recluster_every = int(recluster_every)
        self.seed = 0 if seed is None else int(seed)
        self.cluster_ids: torch.Tensor | None = None
        self.pool_indices: torch.Tensor | None = None
        self.soft_labels: torch.Tensor | None = None
        self.num_known_before = 0
        self.k = 0
        self._active = False
        self._epoch = 0

    # ---------------------------------------------------------------- clustering
    def _prepare(self, features: torch.Tensor) -> np.ndarray:
        return preprocess_features(features, l2_normalize=self.l2_normalize)

    def _semi_supervised(self, state: Any, pool_feats: torch.Tensor):
        stats = state.known_stats
        if stats is None:
            raise RuntimeError(
                "PseudoLabelClusteringPlugin(known_centres=True) needs strategy.ncd.known_stats: "
                "use ConfidenceGatedPoolPlugin with known_stats=True"
            )
        centres = self._prepare(stats.prototypes[stats.counts > 0])
        x = self._prepare(pool_feats)
        k = self.num_clusters or self._estimate_k(x)
        k = min(k, x.shape[0])
        labels, novel = semi_supervised_kmeans(x, centres, k, seed=self.seed, n_init=self.n_init)
        num_fixed = centres.shape[0]
        cluster = torch.from_numpy(labels) - num_fixed  # < 0: joined a known class
        return cluster, torch.from_numpy(novel), k

    def _estimate_k(self, prepared: np.ndarray) -> int:
        low, high = searched_k_range(self.k_range, prepared.shape[0])
        if low > high:
            return 1
        return estimate_num_clusters(prepared, low, high, seed=self.seed, backend=self.backend)

    def _record_k(self, state: Any, k: int, num_samples: int) -> None:
        """``k`` in the shared state, with how it was set and, if estimated, the range searched."""
        state.num_discovered = k
        given = self.num_clusters is not None
        state.k_source = "given" if given else "estimated"
        state.k_range = None if given else self._searched_range(k, num_samples)

    def _searched_range(self, k: int, num_samples: int) -> tuple[int, int]:
        """The range of k the silhouette searched; warns when the estimate sits on an end that the
        range imposed (the estimate is then censored: the silhouette may peak outside it)."""
        low, high = searched_k_range(self.k_range, num_samples)
        edge = k_range_edge(k, low, high)
        if edge is not None:
            warnings.warn(
                f"PseudoLabelClusteringPlugin: the estimated k = {k} is the {edge} end of the "
                f"range searched ({low}..{high}); the silhouette may peak outside it: "
                "widen k_range",
                stacklevel=2,
            )
        return low, high

    def _unsupervised(self, pool_feats: torch.Tensor, k: int | None):
        result = cluster_pool(
            pool_feats,
            num_clusters=k,
            k_range=self.k_range,
            l2_normalize=self.l2_normalize,
            pca_dim=self.pca_dim,
            backend=self.backend,
            balanced=self.balanced,
            seed=self.seed,
            n_init=self.n_init,
            sinkhorn_epsilon=self.sinkhorn_epsilon,
            sinkhorn_iters=self.sinkhorn_iters,
            soft_temperature=self.soft_temperature,
        )
        self.soft_labels = result.probabilities
        return result.labels, result.centroids, result.num_clusters

    def _cluster(self, state: Any, feats: torch.Tensor):
        if self.known_centres:
            labels, centroids, k = self._semi_supervised(state, feats)
            return labels, centroids, k, None
        labels, centroids, k = self._unsupervised(feats, self.num_clusters)
        return labels, centroids, k, self.soft_labels

    def _assign_all(self, all_feats: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor | None:
        """Nearest novel centroid of every sample (same space as the clustering)."""
        if self.pca_dim is not None and not self.known_centres:
            return None  # the PCA projection is not kept: no consistent space for other samples
        x = torch.from_numpy(self._prepare(all_feats))
        return torch.cdist(x, centroids.float()).argmin(1)

    def _publish(self, strategy: Any, size: int) -> None:
        state = discovery_state(strategy)
        keep = self.cluster_ids >= 0
        state.pseudo_labels = lookup_table(
            self.pool_indices[keep], self.cluster_ids[keep] + self.num_known_before, size
        )
        state.pseudo_soft_labels = self.soft_labels if self.soft else None

    # ---------------------------------------------------------------- callbacks
    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        self._active = False

    def after_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        """Clusters the triggered pool and grows the head to ``num_known + k``."""
        if not is_discovery_experience(strategy.experience):
            return
        state = discovery_state(strategy)
        pool = state.pool
        if pool is None:
            raise RuntimeError(
                "PseudoLabelClusteringPlugin needs strategy.ncd.pool: put "
                "ConfidenceGatedPoolPlugin before it in cl_strategy.plugins"
            )
        if not pool.triggered:
            return
        if pool.features is None:
            raise RuntimeError(
                "PseudoLabelClusteringPlugin: the pool holds no features (keep_features=False)"
            )
        if self.num_clusters is not None and len(pool) < self.num_clusters:
            warnings.warn(
                f"PseudoLabelClusteringPlugin: {len(pool)} pooled samples for "
                f"{self.num_clusters} clusters; k lowered to {len(pool)} (raise the gate's "
                "trigger_size)",
                stacklevel=2,
            )
        self.num_known_before = int(state.num_known_classes)
        every = self.cluster_on == "all"
        if every and pool.all_features is None:
            raise RuntimeError(
                "PseudoLabelClusteringPlugin(cluster_on='all') needs every sample's features "
                "(the gate's keep_features=True)"
            )
        feats = pool.all_features if every else pool.features
        # rank 0 clusters and every rank receives its result: identical pseudo-labels everywhere
        labels, centroids, k, self.soft_labels = distributed.run_on_main(
            self._cluster, state, feats
        )
        if every:
            all_labels = labels
            labels = all_labels[pool.indices]
            if self.soft_labels is not None:
                self.soft_labels = self.soft_labels[pool.indices]
        self.k, self.cluster_ids, self.pool_indices = k, labels, pool.indices.clone()
        self._active, self._epoch = True, 0
        size = len(strategy.experience.dataset)
        self._publish(strategy, size)
        if every:
            state.cluster_of_all = torch.where(
                all_labels >= 0, all_labels + self.num_known_before, torch.full_like(all_labels, -1)
            )
        elif pool.all_features is not None:
            nearest = self._assign_all(pool.all_features, centroids)
            if nearest is not None:
                state.cluster_of_all = nearest + self.num_known_before
        self._record_k(state, k, len(feats))
        model = strategy.model
        model.grow(self.num_known_before + k)
        if self.init_new_rows:
            means = torch.stack(
                [
                    pool.features[labels == c].mean(0)
                    if bool((labels == c).any())
                    else pool.features.mean(0)
                    for c in range(k)
                ]
            )
            rows = slice(self.num_known_before, self.num_known_before + k)
            init_rows_from_features(model.classifier, rows, means, self.num_known_before)

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        if (
            self._active
            and self.recluster_every
            and self._epoch > 0
            and self._epoch % self.recluster_every == 0
        ):
            self.recluster(strategy)

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self._epoch += 1

    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        """Relabels a discovery minibatch ``(x, -1, index, t)`` with the pseudo-labels."""
        mbatch = strategy.mbatch
        if not self._active or mbatch is None or len(mbatch) != 4:
            return
        labels = discovery_state(strategy).pseudo_labels[mbatch[2].cpu()].to(mbatch[1].device)
        keep = labels >= 0
        if not bool(keep.all()):
            for i in range(len(mbatch)):
                mbatch[i] = mbatch[i][keep.to(mbatch[i].device)]
            labels = labels[keep]
        mbatch[1] = labels

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if not is_discovery_experience(strategy.experience):
            note_labeled_classes(strategy)
            return
        if self._active:
            discovery_state(strategy).num_known_classes = self.num_known_before + self.k
        self._active = False

    # ---------------------------------------------------------------- re-clustering
    def recluster(self, strategy: Any) -> None:
        """Re-clusters fresh features of the pooled samples and keeps the cluster ids stable."""
        dataset = strategy.experience.dataset.eval().subset(self.pool_indices.tolist())
        out = dataset_outputs(
            strategy.model,
            dataset,
            strategy.device,
            int(getattr(strategy, "eval_mb_size", None) or 256),
        )
        state = discovery_state(strategy)
        if self.known_centres:
            labels, _, _ = self._semi_supervised(state, out["features"])
        else:
            labels, _, _ = self._unsupervised(out["features"], self.k)
        novel = (labels >= 0) & (self.cluster_ids >= 0)
        perm = align_cluster_ids(self.cluster_ids[novel], labels[novel], self.k)
        self.cluster_ids = torch.where(labels >= 0, perm[labels.clamp_min(0)], labels)
        if self.soft_labels is not None:
            soft = torch.empty_like(self.soft_labels)
            soft[:, perm] = self.soft_labels
            self.soft_labels = soft
        self._publish(strategy, len(strategy.experience.dataset))

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The last experience's mapping: pool indices, cluster ids, soft labels, ``k``."""
        return {
            "soft_labels": self.soft_labels,
            "cluster_ids": self.cluster_ids,
            "pool_indices": self.pool_indices,
            "num_known_before": self.num_known_before,
            "k": self.k,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""
        for key in ("soft_labels", "cluster_ids", "pool_indices", "num_known_before", "k"):
            if key in state_dict:
                setattr(self, key, state_dict[key])
