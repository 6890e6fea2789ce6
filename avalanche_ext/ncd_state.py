"""The typed contract between the novel-class-discovery plugins: one object attached to the strategy.

Plugins never probe ``getattr(strategy, "...", None)``: they call :func:`discovery_state` and read
or write documented fields, so a misspelled name is an ``AttributeError``, not a silently disabled
feature (in the spirit of Avalanche's ``strategy_mixin_protocol.py``). The runner reads the same
object for its discovery facts (:meth:`DiscoveryState.facts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

__all__ = [
    "MASKED_LOGIT",
    "DiscoveryState",
    "KnownClassStats",
    "NovelPool",
    "discovery_state",
]

MASKED_LOGIT = -1e4
"""The one logit value used wherever a class must never be chosen (masked criterion logits, eval
logits padded for classes the model does not have yet). ``exp(-1e4)`` is 0 in float32 and the value
stays finite in float16 (max 65504), so losses over it never overflow."""

_ATTRIBUTE = "ncd"


@dataclass
class KnownClassStats:
    """Feature statistics of the known classes, computed once after each labeled experience.

    The gate's feature-space scores, semi-supervised k-means (fixed known centres) and the dual
    teacher's feature replay all read this one object.

    Args:
        prototypes: ``[C, D]`` per-class mean feature (rows of classes without samples are 0).
        counts: ``[C]`` training samples per class the statistics were computed on.
        radius: mean per-dimension standard deviation of features around their class mean (PASS /
            FRoST prototype augmentation samples ``mu_c + radius * N(0, I)``).
        precision: ``[D, D]`` inverse of the tied (shared) class covariance, for Mahalanobis.
        bank: ``[M, D]`` L2-normalised training features (a seeded subsample), for k-NN distance.
        bank_labels: ``[M]`` their classes.
    """

    prototypes: torch.Tensor
    counts: torch.Tensor
    radius: float
    precision: torch.Tensor
    bank: torch.Tensor
    bank_labels: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(self.prototypes.shape[0])

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> KnownClassStats:
        return cls(**state)


@dataclass
class NovelPool:
    """The samples of one discovery experience the gate judged novel.

    Args:
        indices: ``[M]`` sample indices into the experience's dataset, in arrival order.
        scores: ``[M]`` their novelty scores.
        features: ``[M, D]`` their features, or None.
        experience_index: the experience the samples belong to.
        all_scores: ``[N]`` score of every sample of the experience, by sample index (AUROC).
        all_features: ``[N, D]`` every sample's features (clustering of all samples, cluster
            accuracy over all novel samples), or None.
        threshold: the threshold in force (pooled when ``score > threshold``).
        triggered: whether the offline update runs.
        num_candidates: samples above the threshold before eviction.
        topped_up: samples added by the short-pool rule (highest scores below the threshold).
        reason: one sentence saying why the update did or did not trigger.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    features: torch.Tensor | None
    experience_index: int
    all_scores: torch.Tensor
    threshold: float
    triggered: bool = False
    num_candidates: int = 0
    all_features: torch.Tensor | None = None
    topped_up: int = 0
    reason: str = ""

    def __len__(self) -> int:
        return int(self.indices.numel())

    def state_dict(self) -> dict[str, Any]:
        """The pool as plain tensors and numbers."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> NovelPool:
        """Rebuilds a pool from :meth:`state_dict` (older checkpoints may lack later fields)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})


@dataclass(slots=True)
class DiscoveryState:
    """Everything the discovery plugins share, attached once as ``strategy.ncd``.

    Args:
        num_known_classes: classes with true labels (or discovered) so far; the head size the
            plugins treat as "old".
        pool: the gate's pool of the current discovery experience (None elsewhere).
        pseudo_labels: ``[N]`` sample index -> class id (``>= num_known_classes``), ``-1`` without
            one; set by the clustering plugin.
        pseudo_soft_labels: ``[M, k]`` soft assignments of the pooled samples (rows aligned with
            ``pool.indices``), or None.
        cluster_of_all: ``[N]`` nearest novel cluster (class id) of EVERY sample of the discovery
            experience (pooled or not), or None; evaluation reads it for cluster accuracy over all
            novel samples.
        head_of_all: ``[N]`` the joint head's own class (argmax over the new rows) of every sample
            of the discovery experience after its update, or None; evaluation scores it as the
            update's transductive clustering accuracy.
        num_discovered: ``k`` of the last discovery experience (0 before any).
        k_source: how that ``k`` was set: ``'given'`` (the config's ``num_clusters``, e.g. the true
            number of novel classes) or ``'estimated'``.
        k_range: ``(low, high)``, the candidates the estimate searched (None when k was given).
        old_model: frozen copy of the model at the start of the current experience (shared by
            LwF and the dual teacher; see :meth:`teacher`).
        known_stats: feature statistics of the known classes (see :class:`KnownClassStats`).
        calibration_images: held-out known-class inputs (eval transform, never trained on).
        calibration_labels: their labels.
        unmasked_logits: the current minibatch's logits before any plugin masked them for the
            criterion (see :meth:`mask_for_criterion`).
        new_bias_offset: the old-vs-new offset added to the new rows after the last update.
        operating_point: how that offset was chosen: the objective and the label-free validation
            estimate (held-out known images + pooled images) at the chosen offset and at 0.
        triggered: whether the last discovery experience ran its update.
        reason: why (or why not), one sentence.
        class_counts: LongTensor, class id -> training images of the experiences seen so far
            (None until :class:`~avalanche_ext.class_counts.ClassCountPlugin` counted an experience;
            read by the count-aware plugins, not only the discovery ones).
    """

    num_known_classes: int = 0
    pool: NovelPool | None = None
    pseudo_labels: torch.Tensor | None = None
    pseudo_soft_labels: torch.Tensor | None = None
    cluster_of_all: torch.Tensor | None = None
    head_of_all: torch.Tensor | None = None
    num_discovered: int = 0
    k_source: str = ""
    k_range: tuple[int, int] | None = None
    old_model: nn.Module | None = None
    known_stats: KnownClassStats | None = None
    calibration_images: torch.Tensor | None = None
    calibration_labels: torch.Tensor | None = None
    unmasked_logits: torch.Tensor | None = None
    new_bias_offset: float | None = None
    operating_point: dict[str, Any] | None = None
    triggered: bool | None = None
    reason: str = ""
    class_counts: torch.Tensor | None = None
    _teacher_key: int | None = field(default=None, repr=False)

    # ------------------------------------------------------------ shared operations
    def teacher(self, strategy: Any, snapshot: Any) -> nn.Module:
        """The frozen model of the start of the current experience, snapshotted once per experience.

        Args:
            strategy: the strategy (its clock tells the experience).
            snapshot: ``f(model) -> frozen copy`` (``avalanche_ext.plugin_helpers.frozen_copy``).
        """
        key = int(strategy.clock.train_exp_counter)
        if self.old_model is None or self._teacher_key != key:
            self.old_model = snapshot(strategy.model)
            self._teacher_key = key
        return self.old_model

    def begin_minibatch(self) -> None:
        """Forgets the previous minibatch's unmasked logits (call in ``before_forward``)."""
        self.unmasked_logits = None

    def mask_for_criterion(self, strategy: Any, columns: torch.Tensor | slice) -> None:
        """Hides ``columns`` of ``strategy.mb_output`` from the strategy's criterion.

        The first plugin to mask in a minibatch saves the true logits in ``unmasked_logits``;
        later ones mask further but never overwrite them, so every distillation term sees the
        model's real outputs (two plugins masking used to hand the second one constants).
        """
        if self.unmasked_logits is None:
            self.unmasked_logits = strategy.mb_output
        masked = strategy.mb_output.clone()
        masked[:, columns] = MASKED_LOGIT
        strategy.mb_output = masked

    def student_logits(self, strategy: Any) -> torch.Tensor:
        """The minibatch's real logits (unmasked), for distillation losses."""
        return self.unmasked_logits if self.unmasked_logits is not None else strategy.mb_output

    def start_experience(self) -> None:
        """Resets the per-experience fields (call at the start of every training experience)."""
        self.pool = None
        self.pseudo_labels = None
        self.pseudo_soft_labels = None
        self.cluster_of_all = None
        self.head_of_all = None
        self.unmasked_logits = None

    # ------------------------------------------------------------ what the runner reads
    def facts(self) -> dict[str, Any]:
        """Facts of the current discovery experience for evaluation (CPU tensors and numbers)."""
        pool = self.pool
        out: dict[str, Any] = {
            "triggered": self.triggered,
            "reason": self.reason,
            "num_discovered": self.num_discovered,
            "k_source": self.k_source,
            "k_range": self.k_range,
            "new_bias_offset": self.new_bias_offset,
            "operating_point": self.operating_point,
        }
        if pool is not None:
            out.update(
                pool_indices=pool.indices.detach().cpu(),
                all_scores=pool.all_scores,
                threshold=pool.threshold,
                topped_up=pool.topped_up,
                num_candidates=pool.num_candidates,
            )
        if self.pseudo_labels is not None:
            out["pseudo_labels"] = self.pseudo_labels.detach().cpu()
        if self.cluster_of_all is not None:
            out["cluster_of_all"] = self.cluster_of_all.detach().cpu()
        if self.head_of_all is not None:
            out["head_of_all"] = self.head_of_all.detach().cpu()
        return out

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers (no model: the teacher is re-snapshotted per experience)."""
        return {
            "num_known_classes": self.num_known_classes,
            "num_discovered": self.num_discovered,
            "known_stats": None if self.known_stats is None else self.known_stats.state_dict(),
            "calibration_images": self.calibration_images,
            "calibration_labels": self.calibration_labels,
            "new_bias_offset": self.new_bias_offset,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_known_classes = int(state.get("num_known_classes", 0))
        self.num_discovered = int(state.get("num_discovered", 0))
        stats = state.get("known_stats")
        self.known_stats = None if stats is None else KnownClassStats.from_state_dict(stats)
        self.calibration_images = state.get("calibration_images")
        self.calibration_labels = state.get("calibration_labels")
        self.new_bias_offset = state.get("new_bias_offset")


def discovery_state(strategy: Any) -> DiscoveryState:
    """The strategy's :class:`DiscoveryState`, attached on first use.

    The runner attaches it with the scenario's number of known classes; a strategy built outside
    the runner gets one sized by the model's current head.
    """
    state = getattr(strategy, _ATTRIBUTE, None)
    if state is None:
        model = getattr(strategy, "model", None)
        state = DiscoveryState(num_known_classes=int(getattr(model, "num_classes", 0) or 0))
        setattr(strategy, _ATTRIBUTE, state)
    if not isinstance(state, DiscoveryState):
        raise TypeError(f"strategy.{_ATTRIBUTE} is a {type(state).__name__}, not a DiscoveryState")
    return state
