"""A number of training epochs per experience (Avalanche's ``train_epochs`` is one number for all)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from avalanche.training.plugins import SupervisedPlugin

from avalanche_ext.registry import PLUGINS

__all__ = ["EpochsPerExperiencePlugin", "epochs_for"]


def epochs_for(epochs: Sequence[int], experience_index: int) -> int:
    """``epochs[i]`` for experience ``i``; experiences past the end of the list use its last value."""
    return int(epochs[min(experience_index, len(epochs) - 1)])


@PLUGINS.register_module()
class EpochsPerExperiencePlugin(SupervisedPlugin):
    """Sets ``strategy.train_epochs`` at the start of each training experience.

    Avalanche reads ``train_epochs`` when its epoch loop starts, after ``before_training_exp``, so the
    experience trains that many epochs; the runner's ``'auto'`` schedules (``OneCycleLR``
    ``total_steps``) and its images/s figures read the same value. Put it before any plugin that
    reads ``train_epochs`` (the configured scheduler always comes after the plugins).

    Args:
        epochs (list[int]): epochs of experience ``i`` (the last value repeats), e.g. ``[3, 1]``:
            the base experience learns the features, the incremental one adapts briefly.
    """

    def __init__(self, epochs: Sequence[int]):
        super().__init__()
        if isinstance(epochs, int):
            epochs = [epochs]
        epochs = list(epochs)
        if not epochs or any(
            isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in epochs
        ):
            raise ValueError(f"epochs: expected a non-empty list of positive ints, got {epochs!r}")
        self.epochs = epochs

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        index = int(getattr(strategy.experience, "current_experience", 0))
        strategy.train_epochs = epochs_for(self.epochs, index)

    def state_dict(self) -> dict[str, Any]:
        """Stateless: the epochs come from the config."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore."""
