"""Learning without Forgetting (Li & Hoiem 2016) as an Avalanche plugin, distilling every old logit.

Unlike Avalanche's ``LwFPlugin`` (still reachable as ``AvalancheLwFPlugin``) it ignores task labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from avalanche.training.plugins import LwFPlugin as _AvalancheLwFPlugin
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from avalanche_ext.losses.distillation import kd_loss
from avalanche_ext.models.classifier import align_new_rows
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.plugin_helpers import frozen_copy
from avalanche_ext.registry import PLUGINS

__all__ = ["LwFPlugin", "trained_columns"]

# Avalanche's implementation keys old classes by task label: with a single-head model on a stream
# whose task labels are not 0 it distills nothing. Kept reachable for comparison.
PLUGINS.register_module(name="AvalancheLwFPlugin", module=_AvalancheLwFPlugin)


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


@PLUGINS.register_module()
class LwFPlugin(SupervisedPlugin, supports_distributed=True):
    """Learning without Forgetting: distills the previous model's logits into the current one.

    At the start of every experience after the first, a frozen copy of the model (as the previous
    experience left it) becomes the teacher, ``strategy.ncd.old_model``: one snapshot per
    experience, shared with the dual teacher (:meth:`DiscoveryState.teacher`). While
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
            teacher does not know (the old ones are set to ``MASKED_LOGIT`` for it; the
            distillation always sees the real logits, whichever plugin masked first), as in the original LwF,
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
        """From the second experience on: the teacher is the model as the experience starts
        (before the head grows), one snapshot shared with the other plugins (``strategy.ncd``)."""
        self.old_model = None
        # The strategy's clock counts the experiences trained so far (restored on resume), so a
        # plugin added to a resumed run still knows there is a previous model to distill.
        self.experiences_trained = int(strategy.clock.train_exp_counter)
        if self.experiences_trained == 0:
            return
        self.old_model = discovery_state(strategy).teacher(strategy, frozen_copy)
        self.num_old_classes = self._count_outputs(strategy.model)

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self.old_model is not None:
            self.old_model.to(strategy.device)

    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        discovery_state(strategy).begin_minibatch()

    def after_forward(self, strategy: Any, **kwargs: Any) -> None:
        """With ``mask_old_logits``: hides the teacher's classes from the strategy's criterion."""
        if not (self.mask_old_logits and self.old_model is not None and self.num_old_classes):
            return
        old = self._old_columns()
        discovery_state(strategy).mask_for_criterion(strategy, old.to(strategy.mb_output.device))

    def _old_columns(self) -> torch.Tensor:
        active = getattr(self.old_model, "active", None)
        if isinstance(active, torch.Tensor) and not bool(active.all()):
            return active.nonzero().flatten()
        return torch.arange(self.num_old_classes)

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        """Adds the weighted distillation loss of the current minibatch to ``strategy.loss``."""
        self.last_loss = None
        alpha = self.alpha_for(self.experiences_trained)
        if self.old_model is None or alpha == 0:
            return
        with torch.inference_mode():
            teacher_logits = self.old_model(strategy.mb_x)
        # Inference tensors cannot be saved for backward; a clone made outside the context is a
        # plain tensor (without grad: the teacher is fixed), safe for any loss to consume.
        teacher_logits = teacher_logits.clone()
        student_logits = discovery_state(strategy).student_logits(strategy)
        trained = trained_columns(self.old_model, teacher_logits.shape[1])
        if trained is not None:
            # Rows the old model only grew to evaluate future classes were never trained: their
            # (masked) logits would teach the student that the new classes do not exist.
            teacher_logits = teacher_logits[:, trained]
            student_logits = student_logits[:, trained.to(student_logits.device)]
        self.num_old_classes = self.num_old_classes or teacher_logits.shape[1]
        if student_logits.shape[1] < teacher_logits.shape[1]:
            raise RuntimeError(
                f"LwFPlugin: the model has {student_logits.shape[1]} outputs, fewer than the "
                f"{teacher_logits.shape[1]} of the previous model"
            )
        student_logits = student_logits[:, : teacher_logits.shape[1]]
        loss = alpha * kd_loss(student_logits, teacher_logits, temperature=self.temperature)
        strategy.loss += loss
        self.last_loss = float(loss.detach())

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Aligns the rows of the classes just learned (optionally); counts the experience."""
        if self.align_weights and self.old_model is not None and self.num_old_classes:
            self.last_alignment = self._align(strategy.model)

    def _align(self, model: nn.Module) -> float | None:
        classifier = getattr(model, "classifier", None)
        if not isinstance(classifier, nn.Linear):
            return None
        active = getattr(model, "active", None)
        trained = int(active.sum()) if isinstance(active, torch.Tensor) else classifier.out_features
        return align_new_rows(classifier, self.num_old_classes, trained - self.num_old_classes)

    @staticmethod
    def _count_outputs(model: nn.Module) -> int:
        """Trained outputs of the model (0 = unknown: the first distilled minibatch tells)."""
        width = getattr(model, "num_classes", None)
        if not isinstance(width, int):
            return 0
        trained = trained_columns(model, width)
        return width if trained is None else int(trained.numel())

    def state_dict(self) -> dict[str, Any]:
        """``num_old_classes`` and the experience count; no weights: the teacher is the model as
        the next experience starts, snapshotted again after a resume (nothing saved twice)."""
        return {
            "num_old_classes": self.num_old_classes,
            "experiences_trained": self.experiences_trained,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` (an ``old_model`` entry of older checkpoints is ignored:
        it equals the restored model)."""
        self.num_old_classes = int(state_dict["num_old_classes"])
        self.experiences_trained = int(state_dict["experiences_trained"])
        self.old_model = None
