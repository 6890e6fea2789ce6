"""Confidence gate + bounded novel pool: the online phase of novel-class discovery as an Avalanche plugin.

Scores every sample of a discovery experience (logit or feature-space novelty scores), pools the
likely-novel ones and restricts the experience's training data to them. Shares its results through
``strategy.ncd`` (:class:`avalanche_ext.ncd_state.DiscoveryState`); docs/plugins.md has the contract.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from avalanche.training.plugins import SupervisedPlugin

from avalanche_ext import distributed
from avalanche_ext.metrics.confidence import calibrate_threshold
from avalanche_ext.ncd import EVICTION_POLICIES
from avalanche_ext.ncd_state import NovelPool, discovery_state
from avalanche_ext.novelty import NOVELTY_SCORERS, known_class_stats, score_samples
from avalanche_ext.plugin_helpers import (
    dataset_outputs,
    is_discovery_experience,
    note_labeled_classes,
)
from avalanche_ext.registry import PLUGINS

__all__ = ["ConfidenceGatedPoolPlugin", "NovelPool", "fill_pool"]

_THRESHOLD_MODES = ("calibrated", "all")


def fill_pool(
    scores: torch.Tensor,
    threshold: float,
    capacity: int,
    eviction: str,
    trigger_size: int,
    min_fill: float,
) -> tuple[torch.Tensor, int, int, bool, str]:
    """Which samples (in stream order) the pool holds at the end, and whether the update triggers.

    Samples arrive in order; ``score > threshold`` enters the pool, which never holds more than
    ``capacity`` (``eviction`` decides who leaves). The trigger rule: the update runs when the pool
    holds ``>= trigger_size`` samples; when it is short but holds ``>= min_fill * trigger_size``,
    it is topped up to ``trigger_size`` with the highest-scoring samples left out (the threshold is
    an estimate; a slightly short pool is still mostly novel); below that nothing is updated.

    Args:
        scores: ``[N]`` novelty scores in arrival order.
        threshold: pooling threshold.
        capacity: the most samples the pool holds.
        eviction: a key of :data:`avalanche_ext.ncd.EVICTION_POLICIES`.
        trigger_size: pool size that triggers the update.
        min_fill: in ``[0, 1]``, the share of ``trigger_size`` below which a short pool is not
            topped up (1: never top up).

    Returns:
        ``(pooled positions (arrival order), num_candidates, topped_up, triggered, reason)``.
    """
    candidates = torch.nonzero(scores > threshold).flatten()
    kept = candidates
    if kept.numel() > capacity:
        keep = EVICTION_POLICIES[eviction](scores[kept], torch.arange(kept.numel()), capacity)
        kept = kept[keep]
    num = int(kept.numel())
    topped_up = 0
    if num >= trigger_size:
        return (
            kept,
            int(candidates.numel()),
            0,
            True,
            f"{num} pooled >= trigger_size {trigger_size}",
        )
    short = f"{num} pooled < trigger_size {trigger_size}"
    if num >= min_fill * trigger_size and scores.numel() >= trigger_size:
        rest = torch.ones(scores.numel(), dtype=torch.bool)
        rest[kept] = False
        others = torch.nonzero(rest).flatten()
        extra = others[torch.argsort(-scores[others].double(), stable=True)][: trigger_size - num]
        topped_up = int(extra.numel())
        kept = torch.cat([kept, extra]).sort().values
        reason = (
            f"{short}, >= min_fill {min_fill:g} x trigger_size: topped up with the "
            f"{topped_up} next most novel samples"
        )
        return kept, int(candidates.numel()), topped_up, True, reason
    return kept, int(candidates.numel()), 0, False, f"update not triggered: {short}"


@PLUGINS.register_module()
class ConfidenceGatedPoolPlugin(SupervisedPlugin, supports_distributed=True):
    """Confidence gate that pools likely-novel samples of discovery experiences.

    On a discovery experience (all targets ``UNLABELED``), in ``after_train_dataset_adaptation``:
    every sample is scored (eval transforms, eval mode) on the first ``num_known_classes`` logits,
    or in feature space against the known classes' statistics; the pool is filled by
    :func:`fill_pool` and published as ``strategy.ncd.pool`` with every sample's score and
    features. When the update triggers, the training data of the experience is restricted to the
    pooled samples (their sample indices are kept, so ``strategy.mbatch[2]`` still addresses the
    experience). Otherwise the experience trains nothing and ``strategy.ncd.reason`` says why.

    After every labeled experience: the known classes' feature statistics (prototypes, tied
    covariance, a k-NN bank; :func:`avalanche_ext.novelty.known_class_stats`) are computed on the
    samples it trained on and stored in ``strategy.ncd.known_stats`` (the feature scores,
    semi-supervised k-means and the dual teacher's feature replay read them); with
    ``threshold='calibrated'`` the threshold is calibrated on held-out samples of the labeled
    experiences (``calibration_fraction`` of each, never trained on, kept as tensors in
    ``strategy.ncd.calibration_images`` so the dual teacher can calibrate its old-vs-new decision on
    them too) so that at most ``1 - target_known_recall`` of them would be pooled.

    Args:
        score (str): a key of :data:`avalanche_ext.novelty.NOVELTY_SCORERS`: ``'msp'``,
            ``'entropy'``, ``'energy'``, ``'max_logit'``, ``'evidential'`` (logits) or
            ``'cosine_prototype'``, ``'knn'``, ``'mahalanobis'`` (features).
        threshold (float | str): a fixed threshold, ``'calibrated'``, or ``'all'`` (no gate: every
            sample is pooled; the ablation "cluster everything").
        target_known_recall (float): with ``'calibrated'``: share of held-out known samples the gate
            must keep out of the pool.
        calibration_fraction (float): share of each labeled experience's training samples held out.
        capacity (int): the most samples the pool holds.
        eviction (str): ``'most_confident_out'`` (keep the highest scores) or ``'fifo'``.
        trigger_size (int): the update runs when the pool holds at least this many samples.
        min_fill (float): a short pool of at least ``min_fill * trigger_size`` samples is topped up
            to ``trigger_size`` (see :func:`fill_pool`); 1 disables the top-up.
        temperature (float): temperature of the logit scores.
        score_kwargs (dict | None): extra arguments of the score (``k`` of ``'knn'``...).
        keep_features (bool): store the features of every sample (needed for clustering).
        known_stats (bool): compute the known classes' feature statistics after labeled
            experiences (always on for feature scores).
        bank_size (int): features kept for the k-NN score.
        tta_flip (bool): logits and features are the mean over each image and its mirror
            (test-time augmentation for every pass of the gate: statistics, calibration, scoring).
        batch_size (int | None): scoring batch size (None: the strategy's ``eval_mb_size``).
        seed (int | None): seed of the hold-out draw and the k-NN bank (None: the run's seed).
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
        min_fill: float = 0.5,
        temperature: float = 1.0,
        score_kwargs: dict[str, Any] | None = None,
        keep_features: bool = True,
        known_stats: bool = True,
        bank_size: int = 10_000,
        tta_flip: bool = False,
        batch_size: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if score not in NOVELTY_SCORERS:
            raise ValueError(f"score must be one of {sorted(NOVELTY_SCORERS)}, got {score!r}")
        if eviction not in EVICTION_POLICIES:
            raise ValueError(
                f"eviction must be one of {sorted(EVICTION_POLICIES)}, got {eviction!r}"
            )
        if isinstance(threshold, str) and threshold not in _THRESHOLD_MODES:
            raise ValueError(f"threshold must be a float, 'calibrated' or 'all', got {threshold!r}")
        if not 0.0 < calibration_fraction < 1.0:
            raise ValueError(f"calibration_fraction must be in (0, 1), got {calibration_fraction}")
        if not 0.0 < target_known_recall <= 1.0:
            raise ValueError(f"target_known_recall must be in (0, 1], got {target_known_recall}")
        if capacity < 1 or trigger_size < 1:
            raise ValueError(
                f"capacity and trigger_size must be >= 1, got {capacity}, {trigger_size}"
            )
        if not 0.0 <= min_fill <= 1.0:
            raise ValueError(f"min_fill must be in [0, 1], got {min_fill}")
        self.score = score
        self.threshold = threshold
        self.target_known_recall = float(target_known_recall)
        self.calibration_fraction = float(calibration_fraction)
        self.capacity = int(capacity)
        self.eviction = eviction
        self.trigger_size = int(trigger_size)
        self.min_fill = float(min_fill)
        self.temperature = float(temperature)
        self.score_kwargs = dict(score_kwargs or {})
        self.keep_features = bool(keep_features)
        self.needs_features = NOVELTY_SCORERS[score].needs_features
        self.known_stats = bool(known_stats) or self.needs_features
        self.bank_size = int(bank_size)
        self.tta_flip = bool(tta_flip)
        self.transductive = NOVELTY_SCORERS[score].transductive
        self.batch_size = batch_size
        self.seed = 0 if seed is None else int(seed)
        self.calibrated_threshold: float | None = None
        self._held_out: Any = None
        self._skip_training = False

    @property
    def calibrated(self) -> bool:
        return self.threshold == "calibrated"

    def current_threshold(self) -> float:
        """The threshold in force: fixed, calibrated, or ``-inf`` for ``'all'``.

        Raises:
            RuntimeError: ``'calibrated'`` before any labeled experience was trained.
        """
        if self.threshold == "all":
            return float("-inf")
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

    def score_outputs(self, state: Any, logits: torch.Tensor, features: torch.Tensor | None):
        """Novelty scores of forward outputs, on the known logits (see ``score``)."""
        known = state.num_known_classes or logits.shape[1]
        return score_samples(
            self.score,
            logits[:, :known],
            features,
            state.known_stats,
            temperature=self.temperature,
            **self._score_options(),
        )

    def _score_options(self) -> dict[str, Any]:
        """``score_kwargs``, plus the gate's seed (the run's) for a seeded score that was given
        none: a transductive score's k-means then follows the run seed like everything else."""
        options = dict(self.score_kwargs)
        fn = NOVELTY_SCORERS[self.score].fn
        if "seed" not in options and "seed" in inspect.signature(fn).parameters:
            options["seed"] = self.seed
        return options

    # ---------------------------------------------------------------- callbacks
    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        self._skip_training = False
        self._held_out = None
        discovery_state(strategy).start_experience()

    def after_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        """Builds the pool (discovery) or holds out calibration samples (labeled)."""
        if is_discovery_experience(strategy.experience):
            self._gate(strategy)
        else:
            self._hold_out(strategy)

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        state = discovery_state(strategy)
        if state.pool is not None and state.pool.triggered and state.pseudo_labels is None:
            raise RuntimeError(
                "ConfidenceGatedPoolPlugin: the pooled samples are unlabeled (-1) and no plugin "
                "set strategy.ncd.pseudo_labels; add PseudoLabelClusteringPlugin after the gate"
            )

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        if self._skip_training:
            strategy.stop_training()

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """After a labeled experience: known-class statistics, calibration set and threshold."""
        if is_discovery_experience(strategy.experience):
            return
        note_labeled_classes(strategy)
        state = discovery_state(strategy)
        device, batch = strategy.device, self._batch_size(strategy)
        if self.known_stats:
            trained = strategy.adapted_dataset.eval()
            out = dataset_outputs(strategy.model, trained, device, batch, self.tta_flip)
            state.known_stats = known_class_stats(
                out["features"],
                out["targets"],
                state.num_known_classes,
                bank_size=self.bank_size,
                seed=self.seed,
            )
        if self._held_out is not None:
            items = [self._held_out[i] for i in range(len(self._held_out))]
            images = torch.stack([item[0] for item in items])
            labels = torch.as_tensor([int(item[1]) for item in items])
            old_images = state.calibration_images
            old_labels = state.calibration_labels
            state.calibration_images = (
                images if old_images is None else torch.cat([old_images, images])
            )
            state.calibration_labels = (
                labels if old_labels is None else torch.cat([old_labels, labels])
            )
        self._calibrate(strategy, state)

    def _calibrate(self, strategy: Any, state: Any) -> None:
        """The threshold that keeps ``target_known_recall`` of the held-out known images known
        (a transductive score is calibrated while it gates instead)."""
        if self.calibrated and state.calibration_images is not None and not self.transductive:
            out = self._outputs_of_images(strategy, state.calibration_images)
            scores = self.score_outputs(state, out["logits"], out["features"])
            self.calibrated_threshold = calibrate_threshold(scores, self.target_known_recall)
        # every rank holds the same images; rank 0's threshold is everyone's
        self.calibrated_threshold = distributed.broadcast_object(self.calibrated_threshold)

    def _outputs_of_images(self, strategy: Any, images: torch.Tensor) -> dict[str, Any]:
        return dataset_outputs(
            strategy.model,
            torch.utils.data.TensorDataset(images, torch.zeros(len(images), dtype=torch.long)),
            strategy.device,
            self._batch_size(strategy),
            self.tta_flip,
        )

    # ---------------------------------------------------------------- phases
    def held_out_split(self, n: int, exp_index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The rows of a labeled experience of ``n`` samples that are held out for calibration and
        the rows trained on, both sorted (None: nothing is held out). A pure function of the seed
        and the experience, so another plugin can tell which images were never trained on."""
        n_hold = min(n - 1, max(1, round(self.calibration_fraction * n)))
        if not self.calibrated or n_hold < 1:
            return None
        generator = torch.Generator().manual_seed(self.seed * 100_003 + exp_index)
        order = torch.randperm(n, generator=generator)
        return order[:n_hold].sort().values, order[n_hold:].sort().values

    def _hold_out(self, strategy: Any) -> None:
        dataset = strategy.adapted_dataset
        exp_index = int(getattr(strategy.experience, "current_experience", 0))
        split = self.held_out_split(len(dataset), exp_index)
        if split is None:
            return
        held, kept = split
        self._held_out = dataset.eval().subset(held.tolist())
        strategy.adapted_dataset = dataset.subset(kept.tolist())

    def _gate(self, strategy: Any) -> None:
        experience = strategy.experience
        state = discovery_state(strategy)
        size = len(experience.dataset)
        if len(strategy.adapted_dataset) != size:
            raise RuntimeError(
                "ConfidenceGatedPoolPlugin must see the experience's own dataset: put it before "
                "any plugin that changes strategy.adapted_dataset"
            )
        if self.needs_features and state.known_stats is None:
            raise RuntimeError(
                f"ConfidenceGatedPoolPlugin: score {self.score!r} needs the known classes' "
                "feature statistics, computed after a labeled experience trained with this plugin"
            )
        if self.calibrated and self.calibrated_threshold is None and not self.transductive:
            # resumed from a run whose gate used another score (or none): the held-out known images
            # and the base model are both still here, so calibrate as that run would have (a
            # transductive score calibrates while it scores, below)
            self._calibrate(strategy, state)
        out = self._gathered_outputs(strategy, experience.dataset.eval())
        order = torch.argsort(out["indices"])
        features = out["features"][order] if out["features"] is not None else None
        scores = torch.full((size,), float("nan"))
        if self.transductive and self.calibrated:
            scores[out["indices"]] = self._transductive_scores(strategy, state, out)
        else:
            scores[out["indices"]] = self.score_outputs(state, out["logits"], out["features"])
        threshold = self.current_threshold()
        kept, candidates, topped_up, triggered, reason = fill_pool(
            scores, threshold, self.capacity, self.eviction, self.trigger_size, self.min_fill
        )
        keep_feats = self.keep_features and features is not None
        state.pool = NovelPool(
            indices=kept,
            scores=scores[kept],
            features=features[kept] if keep_feats else None,
            experience_index=int(getattr(experience, "current_experience", 0)),
            all_scores=scores,
            threshold=float(threshold),
            triggered=bool(triggered),
            num_candidates=candidates,
            all_features=features if keep_feats else None,
            topped_up=topped_up,
            reason=reason,
        )
        state.triggered = bool(triggered)
        state.reason = reason
        if triggered:
            strategy.adapted_dataset = strategy.adapted_dataset.subset(kept.tolist())
        else:
            # The dataloader stays non-empty (schedulers need a length); no epoch runs.
            warnings.warn(f"ConfidenceGatedPoolPlugin: {reason}", stacklevel=2)
            self._skip_training = True

    def _gathered_outputs(self, strategy: Any, dataset: Any) -> dict[str, Any]:
        """Outputs of every sample: each rank scores its share (``torch.distributed``), the shares
        are gathered, so every rank builds the same pool as one process would."""
        if not distributed.is_distributed():
            return dataset_outputs(
                strategy.model, dataset, strategy.device, self._batch_size(strategy), self.tta_flip
            )
        mine = torch.tensor(distributed.shard_indices(len(dataset), pad=False), dtype=torch.long)
        out = dataset_outputs(
            strategy.model,
            dataset.subset(mine.tolist()),
            strategy.device,
            self._batch_size(strategy),
            self.tta_flip,
        )
        if out["indices"].numel() and not is_discovery_experience(strategy.experience):
            out["indices"] = mine[out["indices"]]  # positions in the shard -> in the dataset
        gathered = {k: distributed.all_gather_tensor(v) for k, v in out.items() if v is not None}
        gathered.setdefault("features", None)
        return gathered

    def _transductive_scores(self, strategy: Any, state: Any, out: dict[str, Any]) -> torch.Tensor:
        """A score that clusters the samples it scores sees the held-out known images WITH the
        experience's samples (one call), and the threshold is calibrated on their scores."""
        if state.calibration_images is None:
            raise RuntimeError(
                f"ConfidenceGatedPoolPlugin: score {self.score!r} with threshold='calibrated' needs "
                "held-out known images (a labeled experience trained with this plugin)"
            )
        cal = self._outputs_of_images(strategy, state.calibration_images)
        n = cal["logits"].shape[0]
        scores = self.score_outputs(
            state,
            torch.cat(
                [
                    cal["logits"][:, : state.num_known_classes],
                    out["logits"][:, : state.num_known_classes],
                ]
            ),
            torch.cat([cal["features"], out["features"]]),
        )
        self.calibrated_threshold = calibrate_threshold(scores[:n], self.target_known_recall)
        return scores[n:]

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The calibrated threshold (the shared state, calibration images included, is saved by
        the runner with ``strategy.ncd``)."""
        return {"calibrated_threshold": self.calibrated_threshold}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""
        self.calibrated_threshold = state_dict.get("calibrated_threshold")
