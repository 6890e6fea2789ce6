"""Avalanche's BiC (bias correction) plugin and strategy, working on Avalanche 0.6 experiences.

Avalanche 0.6's ``BiCPlugin.before_train_dataset_adaptation`` ends with
``strategy.experience.dataset = <training data minus the validation exemplars>``, but
``DatasetExperience.dataset`` is a read-only property there, so BiC crashes with "property 'dataset'
of 'DatasetExperience' object has no setter" on every stream. This wrapper hands the plugin a
shallow copy of the experience whose ``dataset`` can be set (the stream's own experience is left
untouched). Its bias-correction stage also builds ``MultiStepLR(..., verbose=False)``, an argument
torch 2.7 removed; the stage runs with a ``MultiStepLR`` that drops it. Everything else is
Avalanche's code. ``BiC`` (the strategy) gets the same fixes.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from typing import Any

from avalanche.training.plugins import BiCPlugin as _AvalancheBiCPlugin
from avalanche.training.plugins import bic as _bic_module
from avalanche.training.supervised import BiC as _AvalancheBiC

from avalanche_ext.registry import PLUGINS, STRATEGIES

__all__ = ["BiC", "BiCPlugin", "writable_experience"]

_WRITABLE: dict[type, type] = {}


def writable_experience(experience: Any) -> Any:
    """A shallow copy of ``experience`` whose ``dataset`` property accepts assignment."""
    cls = type(experience)
    if cls not in _WRITABLE:
        getter = cls.dataset.fget

        def _set(self, value):
            self._dataset = value

        _WRITABLE[cls] = type(
            f"Writable{cls.__name__}", (cls,), {"dataset": property(getter, _set)}
        )
    out = copy.copy(experience)
    out.__class__ = _WRITABLE[cls]
    return out


@contextlib.contextmanager
def _multistep_without_verbose():
    original = _bic_module.MultiStepLR

    def multistep(*args, verbose=None, **kwargs):
        return original(*args, **kwargs)

    _bic_module.MultiStepLR = multistep
    try:
        yield
    finally:
        _bic_module.MultiStepLR = original


@PLUGINS.register_module()
class BiCPlugin(_AvalancheBiCPlugin):
    """Avalanche's ``BiCPlugin`` (same arguments: ``mem_size``, ``batch_size``,
    ``batch_size_mem``, ``task_balanced_dataloader``, ``storage_policy``, ``val_percentage``,
    ``T``, ``stage_2_epochs``, ``lamb``, ``lr``, ``num_workers``, ``verbose``), on a writable copy of
    the experience."""

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        strategy.experience = writable_experience(strategy.experience)
        return super().before_train_dataset_adaptation(strategy, **kwargs)

    def after_training_exp(self, strategy, **kwargs):
        with _multistep_without_verbose():
            return super().after_training_exp(strategy, **kwargs)


@STRATEGIES.register_module()
class BiC(_AvalancheBiC):
    """Avalanche's ``BiC`` strategy (same arguments) with the fixed plugin."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for plugin in self.plugins:
            if type(plugin) is _AvalancheBiCPlugin:
                plugin.__class__ = BiCPlugin


BiC.__init__.__signature__ = inspect.signature(_AvalancheBiC.__init__)  # strict key check
