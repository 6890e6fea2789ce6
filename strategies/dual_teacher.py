"""Dual-teacher update for novel-class discovery: the old model guards old classes, the pseudo-labeler
teaches new ones; backbone/classifier learning rates and a two-stage (classifier first) schedule.
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from avalanche_ext.data.batched import eval_batches, model_memory_format
from avalanche_ext.losses.distillation import feature_distillation_loss, kd_loss
from avalanche_ext.models.classifier import align_new_rows, set_batchnorm_mode
from avalanche_ext.ncd import decision_offset, lookup_table
from avalanche_ext.registry import PLUGINS
from strategies.confidence_gate import eval_mode, is_discovery_experience, note_labeled_classes
from strategies.lwf import frozen_copy, same_weights

__all__ = [
    "DualTeacherDistillationPlugin",
    "align_new_rows",
    "merge_param_groups",
    "split_param_groups",
]

_FEATURE_KINDS = ("l2", "cosine")
_UNSCALED_LR = "_lr_before_mult"
_MASKED_LOGIT = -1e4


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


@PLUGINS.register_module()
class DualTeacherDistillationPlugin(SupervisedPlugin):
    """Two teachers for the update on a discovery experience, and a backbone/classifier schedule.

    * Teacher A: a frozen copy of the model before the update, snapshotted in
      ``before_train_dataset_adaptation`` (before the head grows); ``strategy.old_model`` is reused
      when it holds the same weights (e.g. LwF's snapshot), else this copy is published there.
      Every minibatch adds ``alpha_old * kd_loss(student[:, :C_old], A[:, :C_old], T)`` (``T^2``
      included) with ``C_old = strategy.num_known_classes`` at the snapshot, and
      ``feature_weight * feature_distillation_loss(student features, A features)`` on
      ``model.last_features``. Teacher A runs under ``torch.inference_mode``; its outputs are cloned.
    * Teacher B: the pseudo-labeler. Hard labels need nothing here (the clustering plugin relabels
      ``mb_y``, the strategy's own criterion gives the cross-entropy over all classes); with
      ``strategy.pseudo_soft_labels`` (``soft=True`` in the clustering plugin) it adds
      ``alpha_new * kd_loss(student[:, C_old:C_old+k], log q, T)`` on the new-class logits.
    * Optimiser: on a discovery experience the param groups are split into backbone and classifier
      (``backbone_lr_mult``, ``head_lr_mult``) in ``before_training_exp``, after Avalanche's
      ``make_optimizer``. The multipliers are applied around each optimizer step (so any scheduler,
      OneCycleLR with one ``max_lr`` included, shapes the base rate and the ratio stays fixed), and
      the groups are merged back after the experience (checkpoints keep one group). With
      ``classifier_epochs = n`` the first ``n`` epochs train the classifier alone (backbone
      ``requires_grad=False``, its BatchNorm layers in eval mode), then everything.
    * Old vs new: trained on the pool alone, a cross-entropy over all classes gives the new classes
      every positive example and drifts every prediction towards them. ``mask_old_logits`` lets the
      criterion see only the new-class logits of the update's minibatches (old logits are shaped
      by Teacher A alone); ``freeze_bn`` keeps BatchNorm statistics from being re-estimated on
      novel-only data; after training, ``align_weights`` rescales the new rows to the old rows' mean
      norm (weight aligning) and ``calibrate_new_bias`` adds one offset to the new rows' biases so
      the model's old-vs-new decision on the experience agrees with the gate's as often as possible
      (BiC-style bias correction, :func:`avalanche_ext.ncd.decision_offset`).
    * Labeled experiences: with ``distill_labeled`` and a previous experience, Teacher A is the model
      before the experience and its KD terms apply, as in LwF; the optimizer is left alone.

    Teacher weights are never checkpointed: Teacher A is snapshotted afresh at the start of every
    experience from the (restored) model.

    Args:
        alpha_old (float): weight of Teacher A's logit distillation on old classes.
        alpha_new (float): weight of Teacher B's soft distillation on new classes.
        temperature (float): distillation temperature ``T``.
        feature_weight (float): weight of Teacher A's feature distillation (0: off).
        feature_kind (str): ``'l2'`` or ``'cosine'`` feature distance.
        backbone_lr_mult (float): learning-rate multiplier of the backbone on discovery experiences.
        head_lr_mult (float): learning-rate multiplier of the classifier on discovery experiences.
        classifier_epochs (int): epochs at the start of a discovery experience that train only the
            classifier.
        distill_labeled (bool): distill Teacher A on labeled experiences too (after the first).
        mask_old_logits (bool): the criterion of a discovery update sees the new-class logits only.
        align_weights (bool): weight-align the new rows after the update.
        calibrate_new_bias (bool): calibrate the new rows' biases on the gate's decisions after
            the update (one extra forward pass over the experience).
        freeze_bn (bool): keep every BatchNorm layer in eval mode during the discovery update.
    """

    def __init__(
        self,
        alpha_old: float = 1.0,
        alpha_new: float = 1.0,
        temperature: float = 2.0,
        feature_weight: float = 0.0,
        feature_kind: str = "cosine",
        backbone_lr_mult: float = 1.0,
        head_lr_mult: float = 1.0,
        classifier_epochs: int = 0,
        distill_labeled: bool = True,
        mask_old_logits: bool = False,
        align_weights: bool = False,
        calibrate_new_bias: bool = False,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if feature_kind not in _FEATURE_KINDS:
            raise ValueError(f"feature_kind must be one of {_FEATURE_KINDS}, got {feature_kind!r}")
        if min(alpha_old, alpha_new, feature_weight, backbone_lr_mult, head_lr_mult) < 0:
            raise ValueError("weights and learning-rate multipliers must be >= 0")
        if classifier_epochs < 0:
            raise ValueError(f"classifier_epochs must be >= 0, got {classifier_epochs}")
        self.alpha_old = float(alpha_old)
        self.alpha_new = float(alpha_new)
        self.temperature = float(temperature)
        self.feature_weight = float(feature_weight)
        self.feature_kind = feature_kind
        self.backbone_lr_mult = float(backbone_lr_mult)
        self.head_lr_mult = float(head_lr_mult)
        self.classifier_epochs = int(classifier_epochs)
        self.distill_labeled = bool(distill_labeled)
        self.mask_old_logits = bool(mask_old_logits)
        self.align_weights = bool(align_weights)
        self.calibrate_new_bias = bool(calibrate_new_bias)
        self.freeze_bn = bool(freeze_bn)
        self.new_bias_offset: float | None = None
        self._student_logits: torch.Tensor | None = None
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

    # ---------------------------------------------------------------- teacher A
    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        """Snapshots Teacher A (or reuses ``strategy.old_model``) before anything grows."""
        self._discovery = is_discovery_experience(strategy.experience)
        self.teacher = None
        if not (self._discovery or (self.distill_labeled and self.experiences_trained > 0)):
            return
        shared = getattr(strategy, "old_model", None)
        if shared is not None and same_weights(shared, strategy.model):
            self.teacher = shared
        else:
            self.teacher = frozen_copy(strategy.model)
            strategy.old_model = self.teacher
        known = getattr(strategy, "num_known_classes", None)
        self.num_old_classes = int(known or getattr(strategy.model, "num_classes", 0) or 0)

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Moves Teacher A to the device; splits the optimizer on a discovery update."""
        self._epoch = 0
        self._soft_rows = None
        if self.teacher is not None:
            self.teacher.to(strategy.device)
        pool = getattr(strategy, "novel_pool", None)
        self._updating = self._discovery and pool is not None and bool(pool.triggered)
        if not self._updating:
            return
        if self.backbone_lr_mult != 1.0 or self.head_lr_mult != 1.0:
            self._original_groups = split_param_groups(
                strategy.optimizer, strategy.model, self.backbone_lr_mult, self.head_lr_mult
            )
        soft = getattr(strategy, "pseudo_soft_labels", None)
        if soft is not None and self.alpha_new > 0:
            pool = strategy.novel_pool
            rows = torch.arange(len(pool.indices))
            self._soft_rows = lookup_table(pool.indices, rows, len(strategy.experience.dataset))

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
    def after_forward(self, strategy: Any, **kwargs: Any) -> None:
        """With ``mask_old_logits``: the criterion of an update minibatch sees new classes only."""
        self._student_logits = None
        if not (self._updating and self.mask_old_logits and self.num_old_classes):
            return
        self._student_logits = strategy.mb_output
        masked = strategy.mb_output.clone()
        masked[:, : self.num_old_classes] = _MASKED_LOGIT
        strategy.mb_output = masked

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        """Adds Teacher A's (and soft Teacher B's) distillation terms to ``strategy.loss``."""
        self.last_losses = {}
        if self.teacher is None or strategy.mb_output.shape[0] == 0:
            return
        student = self._student_logits if self._student_logits is not None else strategy.mb_output
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
            targets = strategy.pseudo_soft_labels[rows].to(student.device)
            k = targets.shape[1]
            new = kd_loss(
                student[:, num_old : num_old + k],
                targets.clamp_min(1e-8).log(),
                self.temperature,
            )
            total = total + self.alpha_new * new
            self.last_losses["new"] = float(new.detach())
        strategy.loss = strategy.loss + total

    # ---------------------------------------------------------------- lr multipliers
    def before_update(self, strategy: Any, **kwargs: Any) -> None:
        for group in strategy.optimizer.param_groups:
            if "lr_mult" in group:
                group[_UNSCALED_LR] = group["lr"]
                group["lr"] = group["lr"] * group["lr_mult"]

    def after_update(self, strategy: Any, **kwargs: Any) -> None:
        for group in strategy.optimizer.param_groups:
            if _UNSCALED_LR in group:
                group["lr"] = group.pop(_UNSCALED_LR)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Restores the optimizer's groups and the backbone; counts the experience."""
        self._unfreeze(strategy.model)
        if self._original_groups is not None:
            merge_param_groups(strategy.optimizer, self._original_groups)
            self._original_groups = None
        if self._updating and self.align_weights:
            align_new_rows(strategy.model.classifier, self.num_old_classes)
        if self._updating and self.calibrate_new_bias:
            self.new_bias_offset = self._calibrate_bias(strategy)
        if not self._discovery:
            note_labeled_classes(strategy)
        self._soft_rows = None
        self._updating = False
        self.experiences_trained += 1

    def _calibrate_bias(self, strategy: Any) -> float:
        """Shifts the new rows' biases so the model's old-vs-new decision on this experience agrees
        with the gate's (pooled = novel) as often as possible; returns the shift."""
        model, num_old = strategy.model, self.num_old_classes
        pseudo = getattr(strategy, "pseudo_labels", None)
        num_new = (int(pseudo.max()) + 1 if pseudo is not None else model.num_classes) - num_old
        if model.classifier.bias is None or num_new <= 0:
            return 0.0
        margins, indices = [], []
        dataset = strategy.experience.dataset.eval()
        batch_size = int(getattr(strategy, "eval_mb_size", None) or 256)
        with eval_mode(model), torch.inference_mode():
            fmt = model_memory_format(model)
            for batch in eval_batches(dataset, batch_size, strategy.device, fmt):
                logits = model(batch[0].to(strategy.device)).float()
                best_new = logits[:, num_old : num_old + num_new].amax(1)
                margins.append((best_new - logits[:, :num_old].amax(1)).cpu())
                indices.append(torch.as_tensor(batch[2]).long())
        pooled = torch.zeros(len(dataset), dtype=torch.bool)
        pooled[strategy.novel_pool.indices] = True
        offset = decision_offset(torch.cat(margins), pooled[torch.cat(indices)])
        with torch.no_grad():
            model.classifier.bias[num_old : num_old + num_new] += offset
        return offset

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Only the experience count: Teacher A is re-snapshotted at every experience."""
        return {"experiences_trained": self.experiences_trained}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""
        self.experiences_trained = int(state_dict["experiences_trained"])
