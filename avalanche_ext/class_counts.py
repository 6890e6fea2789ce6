"""Training class counts of the classes seen so far, handed to losses and plugins automatically.

The strategy builder adds :class:`ClassCountPlugin` (first in the plugin list) when the loss has
``set_class_counts`` or a plugin sets ``needs_class_counts = True``; configs never list counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from avalanche.core import SupervisedPlugin

from avalanche_ext.ncd_state import discovery_state

__all__ = ["ClassCountPlugin", "dataset_class_counts", "needs_class_counts", "sum_counts"]


def dataset_class_counts(dataset: Any, num_classes: int | None = None) -> torch.Tensor:
    """Samples per class id of a dataset with ``targets`` (Avalanche datasets have them).

    Labels below 0 (hidden labels, ``UNLABELED``) are ignored.

    Args:
        dataset: an Avalanche dataset, or anything with a ``targets`` sequence.
        num_classes: length of the result (default: largest label + 1).
    """
    targets = torch.as_tensor(list(dataset.targets), dtype=torch.long)
    targets = targets[targets >= 0]
    length = int(targets.max()) + 1 if targets.numel() else 0
    return torch.bincount(targets, minlength=max(length, num_classes or 0))


def sum_counts(parts: Iterable[torch.Tensor]) -> torch.Tensor:
    """Element-wise sum of count vectors of different lengths (zero-padded)."""
    parts = list(parts)
    length = max((p.numel() for p in parts), default=0)
    total = torch.zeros(length, dtype=torch.long)
    for p in parts:
        total[: p.numel()] += p.long()
    return total


def needs_class_counts(criterion: Any, plugins: Sequence[Any]) -> bool:
    """Whether the loss or a plugin consumes class counts."""
    return callable(getattr(criterion, "set_class_counts", None)) or any(
        getattr(p, "needs_class_counts", False) for p in plugins
    )


class ClassCountPlugin(SupervisedPlugin):
    """Counts the training labels of every experience and publishes the running total.

    At ``before_train_dataset_adaptation`` (the first hook of an experience, before any plugin
    changes the dataset) it counts the labels of ``strategy.experience.dataset``, adds those of the
    earlier experiences, and

    * sets ``strategy.ncd.class_counts`` (:class:`~avalanche_ext.ncd_state.DiscoveryState`;
      LongTensor, class id -> training images seen so far);
    * calls ``strategy._criterion.set_class_counts(counts)`` when the loss has it.

    A class the model has rows for but no image yet has count 0 here; the losses treat a count
    below one as one (see :mod:`avalanche_ext.losses.long_tail`). An experience with hidden labels
    (all ``-1``) adds nothing. The state (one count vector per experience) is checkpointed.
    """

    def __init__(self):
        super().__init__()
        self.per_experience: dict[int, torch.Tensor] = {}

    def counts(self) -> torch.Tensor:
        """Training images per class over the experiences seen so far."""
        return sum_counts(self.per_experience[k] for k in sorted(self.per_experience))

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        experience = strategy.experience
        index = int(getattr(experience, "current_experience", len(self.per_experience)))
        self.per_experience[index] = dataset_class_counts(experience.dataset)
        counts = self.counts()
        discovery_state(strategy).class_counts = counts
        setter = getattr(strategy._criterion, "set_class_counts", None)
        if callable(setter):
            setter(counts)

    def state_dict(self) -> dict:
        return {"per_experience": {int(k): v.clone() for k, v in self.per_experience.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.per_experience = {int(k): v.long() for k, v in state["per_experience"].items()}
