"""Dual-teacher update for novel-class discovery: the old model guards old classes, the pseudo-labeler
teaches new ones; backbone/classifier learning rates and a two-stage (classifier first) schedule.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from avalanche_ext.losses.distillation import feature_distillation_loss, kd_loss
from avalanche_ext.models.classifier import align_new_rows, set_batchnorm_mode
from avalanche_ext.ncd import lookup_table
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.novelty import sample_replay_features
from avalanche_ext.operating_point import (
    CALIBRATION_OBJECTIVES,
    CalibrationData,
    calibrate_offset,
    class_balanced_weights,
    estimate_at,
    mixture_known_share,
    old_new_margins,
)
from avalanche_ext.plugin_helpers import (
    dataset_outputs,
    frozen_copy,
    is_discovery_experience,
    note_labeled_classes,
)
from avalanche_ext.registry import PLUGINS

__all__ = [
    "DualTeacherDistillationPlugin",
    "align_new_rows",
    "merge_param_groups",
    "split_param_groups",
]

_FEATURE_KINDS = ("l2", "cosine")
_UNSCALED_LR = "_lr_before_mult"


def _head_parameter_ids(model: nn.Module) -> set[int]:
    if hasattr(model, "head_parameters"):
        return {id(p) for p in model.head_parameters()}
    raise TypeError(f"{type(model).__name__} has no head_parameters(); use MMClassifier")


def split_param_groups(
    optimizer: torch.optim.Optimizer, model: nn.Module, backbone_mult: float, head_mult: float
) -> list[dict[str, Any]]:
    """Splits every param group into a backbone and a classifier group, tagged with ``lr_mult``.

    The groups keep all other hyper-parameters (and any scheduler keys); Avalanche's
    ``update_optimizer`` finds parameters in any group, so its bookkeeping is unaffected.

    Args:
        optimizer (Optimizer): the strategy's optimizer.
        model (nn.Module): the model (``head_parameters()`` names the classifier).
        backbone_mult (float): ``lr_mult`` of the backbone groups.
        head_mult (float): ``lr_mult`` of the classifier groups.

    Returns:
        list[dict]: the original groups (shallow copies with their own param lists), to pass to
        :func:`merge_param_groups`.
    """
    head = _head_parameter_ids(model)
    original = [dict(g, params=list(g["params"])) for g in optimizer.param_groups]
    groups = []
    for g in optimizer.param_groups:
        base = {k: v for k, v in g.items() if k != "params"}
        for name, mult, params in (
            ("backbone", backbone_mult, [p for p in g["params"] if id(p) not in head]),
            ("head", head_mult, [p for p in g["params"] if id(p) in head]),
        ):
            if params:
                groups.append({**base, "params": params, "lr_mult": float(mult), "name": name})
    optimizer.param_groups[:] = groups
    return original


def merge_param_groups(optimizer: torch.optim.Optimizer, original: list[dict[str, Any]]) -> None:
    """Undoes :func:`split_param_groups`, keeping the current (scheduled) hyper-parameters.

    Each original group takes the current values of the first split group made from it, so a
    checkpoint saved afterwards has the optimizer's usual one-group layout.

    Args:
        optimizer (Optimizer): the optimizer split by :func:`split_param_groups`.
        original (list[dict]): what :func:`split_param_groups` returned.
    """
    merged = []
    for group in original:
        ids = {id(p) for p in group["params"]}
        source = next(
            (g for g in optimizer.param_groups if any(id(p) in ids for p in g["params"])), group
        )
        values = {k: v for k, v in source.items() if k not in ("params", "lr_mult", "name")}
        merged.append({**values, "params": group["params"]})
    optimizer.param_groups[:] = merged


_ROUTING_ESTIMATES = ("mixture", "pool")


def _check_arguments(args: dict[str, Any]) -> None:
    """Raises ValueError naming the first argument of the plugin that cannot be right."""
    if args["temperature"] <= 0:
        raise ValueError(f"temperature must be > 0, got {args['temperature']}")
    if args["feature_kind"] not in _FEATURE_KINDS:
        raise ValueError(
            f"feature_kind must be one of {_FEATURE_KINDS}, got {args['feature_kind']!r}"
        )
    weights = ("alpha_old", "alpha_new", "feature_weight", "replay_weight")
    if min(args[k] for k in (*weights, "backbone_lr_mult", "head_lr_mult")) < 0:
        raise ValueError("weights and learning-rate multipliers must be >= 0")
    if args["classifier_epochs"] < 0:
        raise ValueError(f"classifier_epochs must be >= 0, got {args['classifier_epochs']}")
    if not 0.0 <= args["max_old_drop"] <= 1.0:
        raise ValueError(f"max_old_drop must be in [0, 1], got {args['max_old_drop']}")
    if not 0.0 <= args["known_false_novel_rate"] < 1.0:
        raise ValueError(
            f"known_false_novel_rate must be in [0, 1), got {args['known_false_novel_rate']}"
        )
    if args["calibration_objective"] not in CALIBRATION_OBJECTIVES:
        raise ValueError(
            f"calibration_objective must be one of {sorted(CALIBRATION_OBJECTIVES)}, "
            f"got {args['calibration_objective']!r}"
        )
    if args["routing_estimate"] not in _ROUTING_ESTIMATES:
        raise ValueError(
            f"routing_estimate must be one of {_ROUTING_ESTIMATES}, got {args['routing_estimate']!r}"
        )


@PLUGINS.register_module()
class DualTeacherDistillationPlugin(SupervisedPlugin, supports_distributed=True):
    """Two teachers for the update on a discovery experience, old-class replay, and a calibrated
    old-vs-new decision.

    * Teacher A: a frozen copy of the model at the start of the experience (before the head grows),
      shared through ``strategy.ncd.teacher`` with LwF (one snapshot per experience). Every
      minibatch adds ``alpha_old * kd_loss(student[:, :C_old], A[:, :C_old], T)`` (``T^2``
      included), ``C_old`` = the known classes at the snapshot, and
      ``feature_weight * feature_distillation_loss(student features, A features)``.
    * Teacher B: the pseudo-labeler. Hard labels need nothing here (the clustering plugin relabels
      ``mb_y``; the strategy's criterion gives the cross-entropy over ALL classes, so new logits
      compete with old ones); with ``strategy.ncd.pseudo_soft_labels`` it adds
      ``alpha_new * kd_loss(student[:, C_old:C_old+k], log q, T)``.
    * Old-class feature replay (PASS / FRoST): every minibatch also draws ``replay_batch`` features
      ``mu_c + r * N(0, I)`` of uniformly drawn old classes from ``strategy.ncd.known_stats`` and
      adds ``replay_weight * CE(classifier(z), c)`` over all classes: the classifier keeps seeing
      old classes as positives, so the new rows cannot take over the old classes' regions, and no
      image of an old class is stored.
    * Old vs new after the update (``calibrate_new_bias``): one offset is added to the new rows'
      biases, chosen by ``calibration_objective`` (``avalanche_ext.operating_point``) from the
      held-out known images (``strategy.ncd.calibration_images``, labeled, never trained on,
      weighted so that every class counts the same) and the unlabeled discovery images (all of
      them, the known share of the mixture estimated from the margins; the pooled ones for the
      new rows' confidence): ``'hm'`` (default) maximises the estimated harmonic mean of old and
      new accuracy;
      ``'known_false_novel_rate'`` sends that share of held-out known images to a new class.
      No test label is ever read.
    * After the update the joint head's own assignment of every discovery image (argmax over the
      new rows) is kept in ``strategy.ncd.head_of_all``: the report scores it as the update's
      transductive clustering accuracy.
    * Optimiser on a discovery experience: backbone / classifier param groups with
      ``backbone_lr_mult`` / ``head_lr_mult`` (applied around each optimizer step, so any
      scheduler shapes the base rate), merged back after the experience; the first
      ``classifier_epochs`` train the classifier alone; ``freeze_bn`` keeps BatchNorm statistics
      from being re-estimated on novel-only data; ``mask_old_logits`` hides the old logits from the
      criterion (the old logits are then shaped by Teacher A alone; off by default: with replay the
      joint cross-entropy is what teaches the old-vs-new decision).
    * Labeled experiences: with ``distill_labeled`` and a previous experience, Teacher A's KD terms
      apply, as in LwF; the optimizer is left alone.

    Teacher weights are never checkpointed: Teacher A is snapshotted afresh at the start of every
    experience from the (restored) model.

    Args:
        alpha_old (float): weight of Teacher A's logit distillation on old classes.
        alpha_new (float): weight of Teacher B's soft distillation on new classes.
        temperature (float): distillation temperature ``T``.
        feature_weight (float): weight of Teacher A's feature distillation (0: off).
        feature_kind (str): ``'l2'`` or ``'cosine'`` feature distance.
        replay_weight (float): weight of the old-class feature replay loss (0: off).
        replay_batch (int | None): replayed features per minibatch (None: the minibatch size).
        backbone_lr_mult (float): learning-rate multiplier of the backbone on discovery experiences.
        head_lr_mult (float): learning-rate multiplier of the classifier on discovery experiences.
        classifier_epochs (int): epochs at the start of a discovery experience that train only the
            classifier.
        distill_labeled (bool): distill Teacher A on labeled experiences too (after the first).
        mask_old_logits (bool): the criterion of a discovery update sees the new-class logits only.
        align_weights (bool): weight-align the new rows after the update.
        calibrate_new_bias (bool): calibrate the old-vs-new offset on held-out known images.
        calibration_objective (str): ``'hm'`` or ``'known_false_novel_rate'`` (see above).
        routing_estimate (str): where objective ``'hm'`` estimates new-class routing: ``'mixture'``
            (every discovery image, the known share removed; default) or ``'pool'`` (the pooled
            images only: the earlier estimate, which overrates routing; kept for the ablation).
        known_false_novel_rate (float): share of held-out known images the calibrated model
            predicts as a new class (objective ``'known_false_novel_rate'``).
        max_old_drop (float): objective ``'hm_within_old_budget'``: the most class-balanced
            old-class accuracy on the held-out known images the update may lose against the model
            before it (Teacher A), e.g. 0.08 = 8 points.
        freeze_bn (bool): keep every BatchNorm layer in eval mode during the discovery update.
        max_grad_norm (float | None): clip the global gradient norm of update steps (None: off);
            a small pool and separable replay features can otherwise blow the update up.
        calibration_flip (bool): calibrate on flip-averaged logits (use with
            ``TestTimeFlipPlugin``, so the calibrated rate is the one evaluation sees).
        seed (int | None): seed of the replay draws (None: the run's seed).
    """

    def __init__(
        self,
        alpha_old: float = 1.0,
        alpha_new: float = 1.0,
        temperature: float = 2.0,
        feature_weight: float = 0.0,
        feature_kind: str = "cosine",
        replay_weight: float = 1.0,
        replay_batch: int | None = None,
        backbone_lr_mult: float = 1.0,
        head_lr_mult: float = 1.0,
        classifier_epochs: int = 0,
        distill_labeled: bool = True,
        mask_old_logits: bool = False,
        align_weights: bool = False,
        calibrate_new_bias: bool = True,
        calibration_objective: str = "hm",
        known_false_novel_rate: float = 0.05,
        max_old_drop: float = 0.08,
        routing_estimate: str = "mixture",
        freeze_bn: bool = True,
        max_grad_norm: float | None = 1.0,
        calibration_flip: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        _check_arguments(locals())
        self.alpha_old = float(alpha_old)
        self.alpha_new = float(alpha_new)
        self.temperature = float(temperature)
        self.feature_weight = float(feature_weight)
        self.feature_kind = feature_kind
        self.replay_weight = float(replay_weight)
        self.replay_batch = replay_batch
        self.backbone_lr_mult = float(backbone_lr_mult)
        self.head_lr_mult = float(head_lr_mult)
        self.classifier_epochs = int(classifier_epochs)
        self.distill_labeled = bool(distill_labeled)
        self.mask_old_logits = bool(mask_old_logits)
        self.align_weights = bool(align_weights)
        self.calibrate_new_bias = bool(calibrate_new_bias)
        self.calibration_objective = calibration_objective
        self.known_false_novel_rate = float(known_false_novel_rate)
        self.max_old_drop = float(max_old_drop)
        self.routing_estimate = routing_estimate
        self.freeze_bn = bool(freeze_bn)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.calibration_flip = bool(calibration_flip)
        self.seed = 0 if seed is None else int(seed)
        self.experiences_trained = 0
        self.teacher: nn.Module | None = None
        self.num_old_classes = 0
        self.last_losses: dict[str, float] = {}
        self._discovery = False
        self._updating = False
        self._original_groups: list[dict[str, Any]] | None = None
        self._frozen: list[nn.Parameter] = []
        self._epoch = 0
        self._soft_rows: torch.Tensor | None = None
        self._generator: torch.Generator | None = None

    # ---------------------------------------------------------------- teacher A
    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        """Snapshots Teacher A (shared with LwF) before anything grows."""
        self._discovery = is_discovery_experience(strategy.experience)
        self.teacher = None
        state = discovery_state(strategy)
        if not (self._discovery or (self.distill_labeled and self.experiences_trained > 0)):
            return
        self.teacher = state.teacher(strategy, frozen_copy)
        self.num_old_classes = int(
            state.num_known_classes or getattr(strategy.model, "num_classes", 0) or 0
        )

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Moves Teacher A to the device; splits the optimizer on a discovery update."""
        self._epoch = 0
        self._soft_rows = None
        if self.teacher is not None:
            self.teacher.to(strategy.device)
        state = discovery_state(strategy)
        self._updating = self._discovery and state.pool is not None and bool(state.pool.triggered)
        if not self._updating:
            return
        self._generator = torch.Generator().manual_seed(
            self.seed * 7_919 + int(strategy.clock.train_exp_counter)
        )
        if self.replay_weight > 0 and state.known_stats is None:
            raise RuntimeError(
                "DualTeacherDistillationPlugin: replay_weight > 0 needs strategy.ncd.known_stats "
                "(ConfidenceGatedPoolPlugin with known_stats=True)"
            )
        if self.backbone_lr_mult != 1.0 or self.head_lr_mult != 1.0:
            self._original_groups = split_param_groups(
                strategy.optimizer, strategy.model, self.backbone_lr_mult, self.head_lr_mult
            )
        self._count_pseudo_labels(strategy, state)
        if state.pseudo_soft_labels is not None and self.alpha_new > 0:
            rows = torch.arange(len(state.pool.indices))
            self._soft_rows = lookup_table(
                state.pool.indices, rows, len(strategy.experience.dataset)
            )

    @staticmethod
    def _count_pseudo_labels(strategy: Any, state: Any) -> None:
        """A count-aware loss (logit adjustment, balanced softmax...) gets the pseudo-labels' counts
        for the new classes: the experience's own targets are all unlabeled, so the automatic
        class counts know only the old classes."""
        setter = getattr(getattr(strategy, "_criterion", None), "set_class_counts", None)
        old = state.class_counts
        if not callable(setter) or old is None or state.pseudo_labels is None:
            return
        labels = state.pseudo_labels[state.pseudo_labels >= 0]
        width = strategy.model.num_classes
        counts = torch.bincount(labels, minlength=width)[:width].clone()
        old = torch.as_tensor(old).long().flatten()[: state.num_known_classes]
        counts[: old.numel()] = old
        setter(counts)

    # ---------------------------------------------------------------- two-stage schedule
    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        if not self._updating:
            return
        if self._epoch < self.classifier_epochs:
            self._freeze_backbone(strategy.model)
        else:
            self._unfreeze(strategy.model)
        if self.freeze_bn:
            set_batchnorm_mode(strategy.model, training=False)

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self._epoch += 1

    def _freeze_backbone(self, model: nn.Module) -> None:
        if not self._frozen:
            head = _head_parameter_ids(model)
            self._frozen = [p for p in model.parameters() if id(p) not in head and p.requires_grad]
            for p in self._frozen:
                p.requires_grad_(False)
        # BatchNorm statistics are part of the backbone: keep them fixed too.
        set_batchnorm_mode(model, training=False)

    def _unfreeze(self, model: nn.Module) -> None:
        if not self._frozen:
            return
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []
        set_batchnorm_mode(model, training=model.training)

    # ---------------------------------------------------------------- losses
    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        discovery_state(strategy).begin_minibatch()

    def after_forward(self, strategy: Any, **kwargs: Any) -> None:
        """With ``mask_old_logits``: the criterion of an update minibatch sees new classes only."""
        if self._updating and self.mask_old_logits and self.num_old_classes:
            discovery_state(strategy).mask_for_criterion(strategy, slice(0, self.num_old_classes))

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        """Adds Teacher A's (and soft Teacher B's) distillation and the replay terms to the loss."""
        self.last_losses = {}
        if self.teacher is None or strategy.mb_output.shape[0] == 0:
            return
        state = discovery_state(strategy)
        student = state.student_logits(strategy)
        with torch.inference_mode():
            teacher_logits = self.teacher(strategy.mb_x)
            teacher_feats = getattr(self.teacher, "last_features", None)
        # Inference tensors cannot be saved for backward: clone them outside the context.
        teacher_logits = teacher_logits.clone()
        total = student.new_zeros(())
        num_old = min(self.num_old_classes or teacher_logits.shape[1], teacher_logits.shape[1])
        if self.alpha_old > 0 and num_old > 0:
            old = kd_loss(student[:, :num_old], teacher_logits[:, :num_old], self.temperature)
            total = total + self.alpha_old * old
            self.last_losses["old"] = float(old.detach())
        if self.feature_weight > 0:
            student_feats = getattr(strategy.model, "last_features", None)
            if student_feats is None or teacher_feats is None:
                raise RuntimeError(
                    "DualTeacherDistillationPlugin: feature_weight > 0 needs a model that keeps "
                    "last_features (MMClassifier)"
                )
            feat = feature_distillation_loss(
                student_feats, teacher_feats.clone(), kind=self.feature_kind
            )
            total = total + self.feature_weight * feat
            self.last_losses["feature"] = float(feat.detach())
        if self._soft_rows is not None and len(strategy.mbatch) == 4:
            rows = self._soft_rows[strategy.mbatch[2].cpu()]
            targets = state.pseudo_soft_labels[rows].to(student.device)
            k = targets.shape[1]
            new = kd_loss(
                student[:, num_old : num_old + k], targets.clamp_min(1e-8).log(), self.temperature
            )
            total = total + self.alpha_new * new
            self.last_losses["new"] = float(new.detach())
        if self._updating and self.replay_weight > 0:
            n = int(self.replay_batch or student.shape[0])
            feats, labels = sample_replay_features(state.known_stats, n, self._generator)
            classifier = strategy.model.classifier
            replay = F.cross_entropy(
                classifier(feats.to(student.device, student.dtype)), labels.to(student.device)
            )
            total = total + self.replay_weight * replay
            self.last_losses["replay"] = float(replay.detach())
        strategy.loss = strategy.loss + total

    # ---------------------------------------------------------------- lr multipliers
    def before_update(self, strategy: Any, **kwargs: Any) -> None:
        if self._updating and self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(strategy.model.parameters(), self.max_grad_norm)
        for group in strategy.optimizer.param_groups:
            if "lr_mult" in group:
                group[_UNSCALED_LR] = group["lr"]
                group["lr"] = group["lr"] * group["lr_mult"]

    def after_update(self, strategy: Any, **kwargs: Any) -> None:
        for group in strategy.optimizer.param_groups:
            if _UNSCALED_LR in group:
                group["lr"] = group.pop(_UNSCALED_LR)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Restores the optimizer's groups and the backbone; aligns / calibrates the new rows."""
        self._unfreeze(strategy.model)
        if self._original_groups is not None:
            merge_param_groups(strategy.optimizer, self._original_groups)
            self._original_groups = None
        state = discovery_state(strategy)
        if self._updating and self.align_weights:
            align_new_rows(strategy.model.classifier, self.num_old_classes)
        if self._updating:
            discovery = self._outputs(strategy, strategy.experience.dataset.eval())
            if self.calibrate_new_bias:
                state.new_bias_offset = self._calibrate_bias(strategy, discovery)
            new_rows = discovery["logits"][:, self.num_old_classes :]
            if new_rows.shape[1] > 0:
                size = int(discovery["indices"].max()) + 1 if len(new_rows) else 0
                state.head_of_all = lookup_table(
                    discovery["indices"], new_rows.argmax(1) + self.num_old_classes, size
                )
        if not self._discovery:
            note_labeled_classes(strategy)
        self._soft_rows = None
        self._updating = False
        self.experiences_trained += 1

    def _outputs(self, strategy: Any, dataset: Any, model: Any = None) -> dict[str, Any]:
        """Outputs of ``model`` (default: the strategy's) on ``dataset``, flip-averaged when the
        evaluation is."""
        batch = int(getattr(strategy, "eval_mb_size", None) or 256)
        return dataset_outputs(
            strategy.model if model is None else model,
            dataset,
            strategy.device,
            batch,
            self.calibration_flip,
        )

    def _calibrate_bias(self, strategy: Any, discovery: dict[str, Any] | None = None) -> float:
        """Shifts the new rows' biases by the offset ``calibration_objective`` chooses from the
        held-out known images and the unlabeled discovery images; returns it (0 without held-out
        images or new rows)."""
        state = discovery_state(strategy)
        model, num_old = strategy.model, self.num_old_classes
        images, labels = state.calibration_images, state.calibration_labels
        if model.classifier.bias is None or model.num_classes <= num_old or images is None:
            return 0.0
        if labels is None:
            labels = torch.zeros(len(images), dtype=torch.long)
        held_out = torch.utils.data.TensorDataset(images, labels.long().cpu())
        known = self._outputs(strategy, held_out)["logits"]
        novel = torch.empty(0, model.num_classes)
        if discovery is not None and state.pool is not None:
            novel = discovery["logits"][torch.isin(discovery["indices"], state.pool.indices.cpu())]
        data = CalibrationData(
            known_margins=old_new_margins(known, num_old),
            known_old_correct=known[:, :num_old].argmax(1) == labels.long().cpu(),
            known_labels=labels.long().cpu(),
            novel_margins=old_new_margins(novel, num_old),
            novel_confidence=float(novel[:, num_old:].softmax(1).amax(1).mean())
            if len(novel)
            else 0.0,
            discovery_margins=old_new_margins(discovery["logits"], num_old)
            if discovery is not None and self.routing_estimate == "mixture"
            else None,
            reference_old_acc=self._reference_old_acc(strategy, held_out),
        )
        offset = calibrate_offset(
            data,
            self.calibration_objective,
            rate=self.known_false_novel_rate,
            max_old_drop=self.max_old_drop,
        )
        state.operating_point = {
            "objective": self.calibration_objective,
            "validation_estimate": estimate_at(data, offset),
            "validation_estimate_at_zero": estimate_at(data, 0.0),
            "known_share_estimate": mixture_known_share(data),
            "reference_old_acc": data.reference_old_acc,
        }
        with torch.no_grad():
            model.classifier.bias[num_old:] += offset
        return offset

    def _reference_old_acc(self, strategy: Any, held_out: Any) -> float | None:
        """Teacher A's class-balanced accuracy on the held-out known images (None: no teacher)."""
        if self.teacher is None:
            return None
        out = self._outputs(strategy, held_out, self.teacher)
        labels = out["targets"].long()
        right = (out["logits"][:, : self.num_old_classes].argmax(1) == labels).double()
        return float(right @ class_balanced_weights(labels))

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Only the experience count: Teacher A is re-snapshotted at every experience."""
        return {"experiences_trained": self.experiences_trained}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""
        self.experiences_trained = int(state_dict["experiences_trained"])
