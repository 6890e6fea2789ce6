"""Pseudo-labels for the novel pool by k-means: cluster ids become new class ids after the known ones.

Grows the classifier before Avalanche builds the optimizer and relabels discovery minibatches by one
indexing op (``strategy.pseudo_labels[strategy.mbatch[2]]``); docs/plugins.md has the contract.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from avalanche.training.plugins import SupervisedPlugin

from avalanche_ext.clustering import KMEANS_BACKENDS
from avalanche_ext.ncd import align_cluster_ids, cluster_pool, lookup_table
from avalanche_ext.registry import PLUGINS
from strategies.confidence_gate import is_discovery_experience, note_labeled_classes, score_batches

__all__ = ["PseudoLabelClusteringPlugin"]


@PLUGINS.register_module()
class PseudoLabelClusteringPlugin(SupervisedPlugin):
    """Clusters the gate's pool into ``k`` new classes and trains on them as pseudo-labels.

    On a discovery experience whose pool triggered (``strategy.novel_pool.triggered``), in
    ``after_train_dataset_adaptation``: the pooled features are clustered (:func:`cluster_pool`);
    cluster ``c`` becomes class ``num_known + c``; ``strategy.pseudo_labels`` (LongTensor, one entry
    per sample of the experience, -1 where not pooled) is set and the head grows to
    ``num_known + k`` rows (before Avalanche's ``make_optimizer``, which swaps the wider layer into
    the optimizer). In ``before_forward`` every discovery minibatch (4 elements) is relabeled,
    ``mbatch[1] = pseudo_labels[mbatch[2]]``; a sample without a pseudo-label is dropped from the
    minibatch, so ``-1`` never reaches the criterion. After the experience
    ``strategy.num_known_classes`` becomes ``num_known + k`` (the discovered classes are known to
    the next discovery experience). Needs ``ConfidenceGatedPoolPlugin`` before it (with
    ``keep_features=True``).

    Args:
        num_clusters (int | None): ``k``; None estimates it by silhouette over ``k_range``.
        k_range (tuple[int, int]): inclusive range of ``k`` for the estimate.
        backend (str): k-means backend: ``'auto'`` (faiss when installed), ``'faiss'``,
            ``'sklearn'``.
        l2_normalize (bool): L2-normalise features before (and after) PCA.
        pca_dim (int | None): PCA dimensions before k-means (None: none).
        balanced (bool): Sinkhorn-Knopp balanced assignment (no giant cluster).
        sinkhorn_epsilon (float): Sinkhorn regularisation.
        sinkhorn_iters (int): Sinkhorn rounds.
        n_init (int): k-means restarts.
        soft (bool): also expose ``strategy.pseudo_soft_labels`` (``[N_pool, k]`` soft assignments,
            rows aligned with ``strategy.novel_pool.indices``) for a soft Teacher B.
        soft_temperature (float): temperature of the unbalanced soft assignments.
        recluster_every (int): re-cluster fresh features of the pool every this many epochs
            (0: never); new clusters are matched to the old ids (Hungarian), so ids stay stable.
        seed (int): seed of PCA and k-means.
    """

    def __init__(
        self,
        num_clusters: int | None = None,
        k_range: tuple[int, int] | list[int] = (2, 30),
        backend: str = "auto",
        l2_normalize: bool = True,
        pca_dim: int | None = None,
        balanced: bool = True,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iters: int = 3,
        n_init: int = 1,
        soft: bool = False,
        soft_temperature: float = 0.1,
        recluster_every: int = 0,
        seed: int = 0,
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
        self.backend = backend
        self.l2_normalize = bool(l2_normalize)
        self.pca_dim = pca_dim
        self.balanced = bool(balanced)
        self.sinkhorn_epsilon = float(sinkhorn_epsilon)
        self.sinkhorn_iters = int(sinkhorn_iters)
        self.n_init = int(n_init)
        self.soft = bool(soft)
        self.soft_temperature = float(soft_temperature)
        self.recluster_every = int(recluster_every)
        self.seed = int(seed)
        self.pseudo_labels: torch.Tensor | None = None
        self.soft_labels: torch.Tensor | None = None
        self.cluster_ids: torch.Tensor | None = None
        self.pool_indices: torch.Tensor | None = None
        self.num_known_before = 0
        self.k = 0
        self.experience_index: int | None = None
        self._active = False
        self._epoch = 0

    def _cluster(self, features: torch.Tensor):
        return cluster_pool(
            features,
            num_clusters=self.num_clusters if not self._active else self.k,
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

    def _publish(self, strategy: Any, size: int) -> None:
        self.pseudo_labels = lookup_table(
            self.pool_indices, self.cluster_ids + self.num_known_before, size
        )
        strategy.pseudo_labels = self.pseudo_labels
        strategy.pseudo_soft_labels = self.soft_labels if self.soft else None

    # ---------------------------------------------------------------- callbacks
    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        self._active = False
        strategy.pseudo_labels = None
        strategy.pseudo_soft_labels = None

    def after_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        """Clusters the triggered pool and grows the head to ``num_known + k``."""
        if not is_discovery_experience(strategy.experience):
            return
        pool = getattr(strategy, "novel_pool", None)
        if pool is None:
            raise RuntimeError(
                "PseudoLabelClusteringPlugin needs strategy.novel_pool: put "
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
        self.num_known_before = int(getattr(strategy, "num_known_classes", 0) or 0)
        result = self._cluster(pool.features)
        self.k = result.num_clusters
        self.cluster_ids = result.labels
        self.soft_labels = result.probabilities
        self.pool_indices = pool.indices.clone()
        self.experience_index = pool.experience_index
        self._active = True
        self._epoch = 0
        self._publish(strategy, len(strategy.experience.dataset))
        strategy.model.grow(self.num_known_before + self.k)

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
        index = mbatch[2]
        labels = self.pseudo_labels[index.cpu()].to(mbatch[1].device)
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
            strategy.num_known_classes = self.num_known_before + self.k
        self._active = False

    # ---------------------------------------------------------------- re-clustering
    def recluster(self, strategy: Any) -> None:
        """Re-clusters fresh features of the pooled samples and keeps the cluster ids stable."""
        dataset = strategy.experience.dataset.eval().subset(self.pool_indices.tolist())
        batches = list(
            score_batches(
                strategy.model,
                dataset,
                None,
                device=strategy.device,
                batch_size=int(getattr(strategy, "eval_mb_size", None) or 256),
            )
        )
        features = torch.cat([f for _, _, f in batches])
        result = self._cluster(features)
        perm = align_cluster_ids(self.cluster_ids, result.labels, self.k)
        self.cluster_ids = perm[result.labels]
        soft = torch.empty_like(result.probabilities)
        soft[:, perm] = result.probabilities
        self.soft_labels = soft
        self._publish(strategy, len(strategy.experience.dataset))

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The last experience's mapping: pool indices, cluster ids, soft labels, ``k``."""
        return {
            "pseudo_labels": self.pseudo_labels,
            "soft_labels": self.soft_labels,
            "cluster_ids": self.cluster_ids,
            "pool_indices": self.pool_indices,
            "num_known_before": self.num_known_before,
            "k": self.k,
            "experience_index": self.experience_index,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""
        for key, value in state_dict.items():
            setattr(self, key, value)
