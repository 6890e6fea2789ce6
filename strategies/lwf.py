"""Learning without Forgetting (Li & Hoiem 2016) as an Avalanche plugin, distilling every old logit.

Unlike Avalanche's ``LwFPlugin`` (still reachable as ``AvalancheLwFPlugin``) it ignores task labels.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from avalanche.training.plugins import LwFPlugin as _AvalancheLwFPlugin
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from avalanche_ext.losses.distillation import kd_loss
from avalanche_ext.models.classifier import align_new_rows
from avalanche_ext.registry import PLUGINS

__all__ = ["LwFPlugin", "frozen_copy", "same_weights", "trained_columns"]

# Avalanche's implementation keys old classes by task label: with a single-head model on a stream
# whose task labels are not 0 it distills nothing. Kept reachable for comparison.
PLUGINS.register_module(name="AvalancheLwFPlugin", module=_AvalancheLwFPlugin)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with ``requires_grad=False`` everywhere.

    Tensors cached on modules by the last forward (e.g. ``last_features``) are part of the
    autograd graph and cannot be deep-copied; they are copied detached.

    Args:
        model (nn.Module): the model to snapshot.

    Returns:
        nn.Module: the frozen copy, on the same device.
    """
    memo: dict[int, Any] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    teacher = copy.deepcopy(model, memo)
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


OLD_LOGIT_MASK = -1e4
"""Logit the criterion sees for the teacher's classes under ``mask_old_logits``."""


def trained_columns(model: nn.Module, width: int) -> torch.Tensor | None:
    """Indices of the output units ``model`` was trained on, when it records them.

    ``MMClassifier`` keeps an ``active`` mask: rows added only to evaluate classes not trained yet
    are inactive. Returns None when every unit counts (no mask, or all active).

    Args:
        model (nn.Module): the old model.
        width (int): its number of outputs.
    """
    active = getattr(model, "active", None)
    if not isinstance(active, torch.Tensor) or active.numel() != width or bool(active.all()):
        return None
    return active.nonzero().flatten()


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models have identical state dicts (same keys, shapes and values)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa
    )


@PLUGINS.register_module()
class LwFPlugin(SupervisedPlugin):
    """Learning without Forgetting: distills the previous model's logits into the current one.

    After each training experience a frozen copy of the model becomes the teacher
    (``strategy.old_model``, shared with the other plugins: when another plugin has already put a
    snapshot of the just-trained weights there, it is reused instead of copied again). While
    training experience ``i > 0`` every minibatch adds
    ``alpha_i * kd_loss(student[:, :C_old], teacher, T)`` to ``strategy.loss``, where ``C_old`` is
    the number of outputs the teacher has: ALL of them are distilled, whatever the task labels
    (class ids are stable across a growing head). ``kd_loss`` includes the ``T^2`` factor.
    Nothing is added in the first experience.

    Args:
        alpha (float | Sequence[float]): weight of the distillation loss; a list gives one value
            per experience (``alpha[i]`` while training experience ``i``; experiences past the end
            of the list use its last value).
        temperature (float): distillation temperature ``T > 0``.
        mask_old_logits (bool): the strategy's criterion sees only the logits of classes the
            teacher does not know (the old ones are set to -1e4 for it), as in the original LwF,
            where the new task's loss never touches the old heads (PyCIL's single-head LwF does
            the same); the old logits are shaped by distillation alone. Without it, cross-entropy
            on new-class data pushes every old logit down and old classes are never predicted.
        align_weights (bool): after each experience with a teacher, rescale the classifier rows of
            the classes just learned to the old rows' mean norm (weight aligning, Zhao et al. 2020):
            in class-incremental streams LwF alone leaves a strong bias towards the last classes
            (the demo's old-class accuracy fell to 0 after one experience without it).
    """

    def __init__(
        self,
        alpha: float | Sequence[float] = 1.0,
        temperature: float = 2.0,
        mask_old_logits: bool = False,
        align_weights: bool = False,
    ) -> None:
        super().__init__()
        self.mask_old_logits = bool(mask_old_logits)
        self.align_weights = bool(align_weights)
        self._student_logits: torch.Tensor | None = None
        self.last_alignment: float | None = None
        if isinstance(alpha, Sequence) and not isinstance(alpha, str):
            if len(alpha) == 0:
                raise ValueError("alpha: an empty list gives no weight for any experience")
            self.alpha: float | list[float] = [float(a) for a in alpha]
        else:
            self.alpha = float(alpha)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.old_model: nn.Module | None = None
        self.num_old_classes = 0
        self.experiences_trained = 0
        self.last_loss: float | None = None
        self._pending_state: dict[str, Any] | None = None

    def alpha_for(self, experience_index: int) -> float:
        """The distillation weight used while training experience ``experience_index``.

        Args:
            experience_index (int): index of the experience, counted from 0.

        Returns:
            float: the weight.
        """
        if isinstance(self.alpha, list):
            return self.alpha[min(experience_index, len(self.alpha) - 1)]
        return self.alpha

    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        # First callback of an experience, before the head grows: a restored checkpoint's old model
        # can still be rebuilt from the current architecture here.
        if self._pending_state is not None:
            self._materialize(strategy)

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self.old_model is not None:
            self.old_model.to(strategy.device)

    def after_forward(self, strategy: Any, **kwargs: Any) -> None:
        """With ``mask_old_logits``: hides the teacher's classes from the strategy's criterion."""
        self._student_logits = None
        if self._pending_state is not None:
            self._materialize(strategy)
        if not (self.mask_old_logits and self.old_model is not None and self.num_old_classes):
            return
        self._student_logits = strategy.mb_output
        active = getattr(self.old_model, "active", None)
        old = (
            active.nonzero().flatten()
            if isinstance(active, torch.Tensor)
            else torch.arange(self.num_old_classes)
        )
        masked = strategy.mb_output.clone()
        masked[:, old.to(masked.device)] = OLD_LOGIT_MASK
        strategy.mb_output = masked

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        """Adds the weighted distillation loss of the current minibatch to ``strategy.loss``."""
        self.last_loss = None
        if self._pending_state is not None:
            self._materialize(strategy)
        alpha = self.alpha_for(self.experiences_trained)
        if self.old_model is None or alpha == 0:
            return
        with torch.inference_mode():
            teacher_logits = self.old_model(strategy.mb_x)
        # Inference tensors cannot be saved for backward; a clone made outside the context is a
        # plain tensor (without grad: the teacher is fixed), safe for any loss to consume.
        teacher_logits = teacher_logits.clone()
        student_logits = (
            self._student_logits if self._student_logits is not None else strategy.mb_output
        )
        trained = trained_columns(self.old_model, teacher_logits.shape[1])
        if trained is not None:
            # Rows the old model only grew to evaluate future classes were never trained: their
            # (masked) logits would teach the student that the new classes do not exist.
            teacher_logits = teacher_logits[:, trained]
            student_logits = student_logits[:, trained.to(student_logits.device)]
        self.num_old_classes = self.num_old_classes or teacher_logits.shape[1]
        if student_logits.shape[1] < self.num_old_classes:
            raise RuntimeError(
                f"LwFPlugin: the model has {student_logits.shape[1]} outputs, fewer than the "
                f"{self.num_old_classes} of the previous model"
            )
        loss = alpha * kd_loss(student_logits, teacher_logits, temperature=self.temperature)
        strategy.loss += loss
        self.last_loss = float(loss.detach())

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Aligns the new rows (optionally), then snapshots (or reuses) the trained model as the
        teacher of the next experience."""
        if self.align_weights and self.old_model is not None and self.num_old_classes:
            self.last_alignment = self._align(strategy.model)
        shared = getattr(strategy, "old_model", None)
        if (
            shared is not None
            and shared is not self.old_model
            and same_weights(shared, strategy.model)
        ):
            self.old_model = shared
        else:
            self.old_model = frozen_copy(strategy.model)
            strategy.old_model = self.old_model
        self.num_old_classes = self._count_outputs(strategy)
        self.experiences_trained += 1

    def _align(self, model: nn.Module) -> float | None:
        classifier = getattr(model, "classifier", None)
        if not isinstance(classifier, nn.Linear):
            return None
        active = getattr(model, "active", None)
        trained = int(active.sum()) if isinstance(active, torch.Tensor) else classifier.out_features
        return align_new_rows(classifier, self.num_old_classes, trained - self.num_old_classes)

    def _count_outputs(self, strategy: Any) -> int:
        # The teacher's output width on a real input never guesses which layer is the head;
        # 0 (unknown) is filled in by the first distilled minibatch.
        x = getattr(strategy, "mb_x", None)
        if not isinstance(x, torch.Tensor) or x.shape[0] == 0:
            return 0
        with torch.inference_mode():
            width = int(self.old_model(x[:1].to(strategy.device)).shape[1])
        trained = trained_columns(self.old_model, width)
        return width if trained is None else int(trained.numel())

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the teacher's weights, ``C_old`` and the experience count.

        Returns:
            dict: ``old_model`` (a state dict, or None before the first snapshot),
            ``num_old_classes``, ``experiences_trained``.
        """
        if self._pending_state is not None:
            return dict(self._pending_state)
        return {
            "old_model": None if self.old_model is None else self.old_model.state_dict(),
            "num_old_classes": self.num_old_classes,
            "experiences_trained": self.experiences_trained,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`.

        The teacher is rebuilt on the next experience (a copy of ``strategy.model`` with the saved
        weights, before the head grows), since the plugin holds no architecture of its own.

        Args:
            state_dict (dict): what :meth:`state_dict` returned.
        """
        self.num_old_classes = int(state_dict["num_old_classes"])
        self.experiences_trained = int(state_dict["experiences_trained"])
        self.old_model = None
        self._pending_state = dict(state_dict) if state_dict["old_model"] is not None else None

    def _materialize(self, strategy: Any) -> None:
        state = self._pending_state["old_model"]
        self._pending_state = None
        teacher = frozen_copy(strategy.model)
        try:
            teacher.load_state_dict(state)
        except RuntimeError as err:
            raise RuntimeError(
                "LwFPlugin: the saved teacher does not fit the current model (was the head grown "
                f"before resuming?): {err}"
            ) from err
        shared = getattr(strategy, "old_model", None)
        if shared is not None and same_weights(shared, teacher):
            self.old_model = shared
        else:
            self.old_model = teacher.to(strategy.device)
            strategy.old_model = self.old_model
