"""Confidence gate + bounded novel pool: the online phase of novel-class discovery as an Avalanche plugin.

Scores every sample of a discovery experience on the known-class logits, pools the likely-novel ones
and restricts the experience's training data to them (docs/plugins.md has the full contract).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from avalanche_ext.data.batched import eval_batches, model_memory_format
from avalanche_ext.metrics.confidence import NOVELTY_SCORES, calibrate_threshold, novelty_score
from avalanche_ext.ncd import EVICTION_POLICIES
from avalanche_ext.registry import PLUGINS
from avalanche_ext.scenario import UNLABELED

__all__ = [
    "ConfidenceGatedPoolPlugin",
    "NovelPool",
    "eval_mode",
    "is_discovery_experience",
    "note_labeled_classes",
    "score_batches",
]


def is_discovery_experience(experience: Any) -> bool:
    """Whether every target of the experience is ``UNLABELED`` (a hidden-label discovery experience).

    Args:
        experience: an Avalanche experience (or None).

    Returns:
        bool: True for a discovery experience.
    """
    dataset = getattr(experience, "dataset", None)
    targets = getattr(dataset, "targets", None)
    if targets is None or len(dataset) == 0:
        return False
    uniques = getattr(targets, "uniques", None)
    values = uniques if uniques is not None else set(torch.as_tensor(list(targets)).tolist())
    return {int(v) for v in values} == {UNLABELED}


def note_labeled_classes(strategy: Any) -> None:
    """Raises ``strategy.num_known_classes`` to cover the labels of the current (labeled) experience.

    Idempotent (a max), so every discovery plugin may call it after a labeled experience.

    Args:
        strategy: the strategy; reads ``strategy.experience``, writes ``strategy.num_known_classes``.
    """
    experience = strategy.experience
    classes = getattr(experience, "classes_in_this_experience", None)
    if classes is None:
        classes = experience.dataset.targets.uniques
    labels = [int(c) for c in classes if int(c) >= 0]
    if labels:
        known = getattr(strategy, "num_known_classes", None) or 0
        strategy.num_known_classes = max(int(known), max(labels) + 1)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Puts ``model`` in eval mode and restores every submodule's own mode afterwards."""
    modes = {name: m.training for name, m in model.named_modules()}
    model.eval()
    try:
        yield model
    finally:
        for name, m in model.named_modules():
            m.train(modes.get(name, True))


def score_batches(
    model: nn.Module,
    dataset: Any,
    num_known: int | None,
    score: str = "msp",
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    temperature: float = 1.0,
    score_kwargs: dict[str, Any] | None = None,
    keep_features: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Scores a dataset batch by batch, in order, with the model in eval mode under inference mode.

    Items ``(x, y, sample_index, t)`` give their own sample index; ``(x, y, t)`` items are numbered
    by position.

    Args:
        model (nn.Module): the classifier (``forward -> logits``; ``last_features`` if available).
        dataset: a dataset already in its eval transform group.
        num_known (int | None): score on the first ``num_known`` logits (None: all).
        score (str): a key of ``NOVELTY_SCORES``.
        device (str | torch.device): where the forward runs.
        batch_size (int): samples per forward.
        temperature (float): score temperature.
        score_kwargs (dict | None): extra arguments of the score (e.g. ``evidence``).
        keep_features (bool): also yield ``model.last_features``.

    Yields:
        tuple: ``(sample_indices [B] (CPU long), scores [B] (CPU float), features [B, D] | None)``.
    """
    position = 0
    with eval_mode(model), torch.inference_mode():
        fmt = model_memory_format(model)
        for batch in eval_batches(dataset, batch_size, device, fmt):
            x = batch[0].to(device)
            logits = model(x)
            if num_known:
                logits = logits[:, :num_known]
            scores = novelty_score(logits, score, temperature, **(score_kwargs or {})).float()
            if len(batch) >= 4:
                indices = torch.as_tensor(batch[2]).long().cpu()
            else:
                indices = torch.arange(position, position + len(x))
            position += len(x)
            features = getattr(model, "last_features", None) if keep_features else None
            yield (
                indices,
                scores.cpu().clone(),
                None if features is None else features.detach().float().cpu().clone(),
            )


@dataclass
class NovelPool:
    """The samples of one discovery experience the gate judged novel (bounded, evicted online).

    Args:
        indices: ``[M]`` LongTensor of sample indices into the experience's dataset, arrival order.
        scores: ``[M]`` novelty scores of the pooled samples.
        features: ``[M, D]`` pooled features (``model.last_features``), or None.
        experience_index: index of the experience the samples belong to.
        all_scores: ``[N]`` score of every sample of the experience, by sample index (for AUROC).
        threshold: the threshold used (pooled when ``score > threshold``).
        triggered: whether the pool was large enough (``>= trigger_size``) for the offline update.
        num_candidates: samples above the threshold before eviction.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    features: torch.Tensor | None
    experience_index: int
    all_scores: torch.Tensor
    threshold: float
    triggered: bool = False
    num_candidates: int = 0

    def __len__(self) -> int:
        return int(self.indices.numel())

    def state_dict(self) -> dict[str, Any]:
        """The pool as plain tensors and numbers."""
        return dict(vars(self))

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> NovelPool:
        """Rebuilds a pool from :meth:`state_dict`."""
        return cls(**state)


@PLUGINS.register_module()
class ConfidenceGatedPoolPlugin(SupervisedPlugin):
    """Confidence gate that pools likely-novel samples of discovery experiences.

    On a discovery experience (all targets ``UNLABELED``), in ``after_train_dataset_adaptation``:
    every sample is scored in stream order (eval transforms, eval mode, inference mode) on the first
    ``strategy.num_known_classes`` logits; a sample with ``score > threshold`` enters the pool, which
    never holds more than ``capacity`` samples (``eviction`` decides who leaves). The pool becomes
    ``strategy.novel_pool``. If it holds at least ``trigger_size`` samples the offline update runs:
    the training data of the experience is restricted to the pooled samples (their sample indices are
    kept, so ``strategy.mbatch[2]`` still addresses the experience). Otherwise the experience trains
    nothing (``stop_training`` before the first epoch): no head growth, no weight change, the pool is
    kept for the gate metrics only. Pools do not carry over between experiences (an Avalanche
    stream never hands a past experience's data back).

    On labeled experiences with ``threshold='calibrated'``, ``calibration_fraction`` of the training
    samples are removed from ``strategy.adapted_dataset`` (never trained on); after the experience
    the threshold is recalibrated on the held-out samples of every labeled experience seen so far,
    so that at most ``1 - target_known_recall`` of them would be pooled.

    Args:
        score (str): novelty score: ``'msp'``, ``'entropy'``, ``'energy'`` or ``'evidential'``
            (for models trained with ``EvidentialLoss``; pass its ``evidence`` in
            ``score_kwargs``).
        threshold (float | str): a fixed threshold, or ``'calibrated'``.
        target_known_recall (float): with ``'calibrated'``: fraction of held-out known samples the
            gate must keep out of the pool.
        calibration_fraction (float): with ``'calibrated'``: share of each labeled experience's
            training samples held out for calibration, in ``(0, 1)``.
        capacity (int): the most samples the pool holds.
        eviction (str): ``'most_confident_out'`` (keep the highest scores) or ``'fifo'`` (keep the
            latest arrivals).
        trigger_size (int): the offline update runs when the pool holds at least this many samples.
        temperature (float): score temperature.
        score_kwargs (dict | None): extra arguments of the score function (e.g.
            ``dict(evidence='softplus')``).
        keep_features (bool): store the pooled samples' features for clustering.
        batch_size (int | None): scoring batch size (None: the strategy's ``eval_mb_size``).
        seed (int): seed of the calibration hold-out draw.
    """

    def __init__(
        self,
        score: str = "msp",
        threshold: float | str = "calibrated",
        target_known_recall: float = 0.95,
        calibration_fraction: float = 0.05,
        capacity: int = 10_000,
        eviction: str = "most_confident_out",
        trigger_size: int = 1,
        temperature: float = 1.0,
        score_kwargs: dict[str, Any] | None = None,
        keep_features: bool = True,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if score not in NOVELTY_SCORES:
            raise ValueError(f"score must be one of {sorted(NOVELTY_SCORES)}, got {score!r}")
        if eviction not in EVICTION_POLICIES:
            raise ValueError(
                f"eviction must be one of {sorted(EVICTION_POLICIES)}, got {eviction!r}"
            )
        if isinstance(threshold, str):
            if threshold != "calibrated":
                raise ValueError(f"threshold must be a float or 'calibrated', got {threshold!r}")
            if not 0.0 < calibration_fraction < 1.0:
                raise ValueError(
                    f"calibration_fraction must be in (0, 1), got {calibration_fraction}"
                )
            if not 0.0 < target_known_recall <= 1.0:
                raise ValueError(
                    f"target_known_recall must be in (0, 1], got {target_known_recall}"
                )
        if capacity < 1 or trigger_size < 1:
            raise ValueError(
                f"capacity and trigger_size must be >= 1, got {capacity}, {trigger_size}"
            )
        self.score = score
        self.threshold = threshold
        self.target_known_recall = float(target_known_recall)
        self.calibration_fraction = float(calibration_fraction)
        self.capacity = int(capacity)
        self.eviction = eviction
        self.trigger_size = int(trigger_size)
        self.temperature = float(temperature)
        self.score_kwargs = dict(score_kwargs or {})
        self.keep_features = bool(keep_features)
        self.batch_size = batch_size
        self.seed = int(seed)
        self.calibrated_threshold: float | None = None
        self.calibration_sets: list[Any] = []
        self.pool: NovelPool | None = None
        self._skip_training = False

    @property
    def calibrated(self) -> bool:
        return self.threshold == "calibrated"

    def current_threshold(self) -> float:
        """The threshold in force: the fixed one, or the last calibrated one.

        Raises:
            RuntimeError: ``'calibrated'`` before any labeled experience was trained.
        """
        if not self.calibrated:
            return float(self.threshold)
        if self.calibrated_threshold is None:
            raise RuntimeError(
                "ConfidenceGatedPoolPlugin: threshold='calibrated' but no labeled experience was "
                "trained with this plugin to calibrate it; use a fixed threshold"
            )
        return self.calibrated_threshold

    def _batch_size(self, strategy: Any) -> int:
        return int(self.batch_size or getattr(strategy, "eval_mb_size", None) or 256)

    def _scores(self, strategy: Any, dataset: Any, keep_features: bool):
        return score_batches(
            strategy.model,
            dataset,
            getattr(strategy, "num_known_classes", None),
            score=self.score,
            device=strategy.device,
            batch_size=self._batch_size(strategy),
            temperature=self.temperature,
            score_kwargs=self.score_kwargs,
            keep_features=keep_features,
        )

    # ---------------------------------------------------------------- callbacks
    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        self._skip_training = False
        strategy.novel_pool = None

    def after_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        """Builds the pool (discovery) or holds out calibration samples (labeled)."""
        if is_discovery_experience(strategy.experience):
            self._gate(strategy)
        elif self.calibrated:
            self._hold_out(strategy)

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        pool = getattr(strategy, "novel_pool", None)
        if pool is not None and pool.triggered and getattr(strategy, "pseudo_labels", None) is None:
            raise RuntimeError(
                "ConfidenceGatedPoolPlugin: the pooled samples are unlabeled (-1) and no plugin "
                "set strategy.pseudo_labels; add PseudoLabelClusteringPlugin after the gate"
            )

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        if self._skip_training:
            strategy.stop_training()

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Recalibrates the threshold after a labeled experience."""
        if is_discovery_experience(strategy.experience):
            return
        note_labeled_classes(strategy)
        if self.calibrated and self.calibration_sets:
            scores = [
                s
                for dataset in self.calibration_sets
                for _, s, _ in self._scores(strategy, dataset, keep_features=False)
            ]
            self.calibrated_threshold = calibrate_threshold(
                torch.cat(scores), self.target_known_recall
            )

    # ---------------------------------------------------------------- phases
    def _hold_out(self, strategy: Any) -> None:
        dataset = strategy.adapted_dataset
        n = len(dataset)
        n_hold = min(n - 1, max(1, round(self.calibration_fraction * n)))
        if n_hold < 1:
            return
        exp_index = int(getattr(strategy.experience, "current_experience", 0))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + exp_index)
        order = torch.randperm(n, generator=generator)
        held, kept = order[:n_hold].sort().values, order[n_hold:].sort().values
        self.calibration_sets.append(dataset.eval().subset(held.tolist()))
        strategy.adapted_dataset = dataset.subset(kept.tolist())

    def _gate(self, strategy: Any) -> None:
        experience = strategy.experience
        size = len(experience.dataset)
        if len(strategy.adapted_dataset) != size:
            raise RuntimeError(
                "ConfidenceGatedPoolPlugin must see the experience's own dataset: put it before "
                "any plugin that changes strategy.adapted_dataset"
            )
        threshold = self.current_threshold()
        policy = EVICTION_POLICIES[self.eviction]
        all_scores = torch.full((size,), float("nan"))
        pooled_idx = torch.empty(0, dtype=torch.long)
        pooled_scores = torch.empty(0)
        pooled_feats: torch.Tensor | None = None
        arrival = torch.empty(0, dtype=torch.long)
        candidates = 0
        for indices, scores, feats in self._scores(
            strategy, experience.dataset.eval(), self.keep_features
        ):
            all_scores[indices] = scores
            take = scores > threshold
            if not take.any():
                continue
            candidates += int(take.sum())
            pooled_idx = torch.cat([pooled_idx, indices[take]])
            pooled_scores = torch.cat([pooled_scores, scores[take]])
            arrival = torch.cat([arrival, torch.arange(candidates - int(take.sum()), candidates)])
            if feats is not None:
                new = feats[take]
                pooled_feats = new if pooled_feats is None else torch.cat([pooled_feats, new])
            if pooled_idx.numel() > self.capacity:  # evict online: memory stays bounded
                keep = policy(pooled_scores, arrival, self.capacity)
                pooled_idx, pooled_scores, arrival = (
                    pooled_idx[keep],
                    pooled_scores[keep],
                    arrival[keep],
                )
                pooled_feats = None if pooled_feats is None else pooled_feats[keep]
        triggered = pooled_idx.numel() >= self.trigger_size
        self.pool = NovelPool(
            indices=pooled_idx,
            scores=pooled_scores,
            features=pooled_feats,
            experience_index=int(getattr(experience, "current_experience", 0)),
            all_scores=all_scores,
            threshold=float(threshold),
            triggered=bool(triggered),
            num_candidates=candidates,
        )
        strategy.novel_pool = self.pool
        if triggered:
            strategy.adapted_dataset = strategy.adapted_dataset.subset(pooled_idx.tolist())
        else:
            # The dataloader stays non-empty (schedulers need a length); no epoch runs.
            self._skip_training = True

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The calibrated threshold and the last pool (held-out datasets cannot be saved: after a
        resume the threshold is recalibrated on the held-out samples of later experiences only)."""
        return {
            "calibrated_threshold": self.calibrated_threshold,
            "pool": None if self.pool is None else self.pool.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""
        self.calibrated_threshold = state_dict.get("calibrated_threshold")
        pool = state_dict.get("pool")
        self.pool = None if pool is None else NovelPool.from_state_dict(pool)
