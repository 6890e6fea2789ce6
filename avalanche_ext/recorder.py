"""Records predictions during evaluation, so per-class accuracy, the confusion matrix and the
discovery metrics come from the very forward passes Avalanche's metrics saw (no second pass)."""

from __future__ import annotations

from collections import defaultdict

import torch
from avalanche.core import SupervisedPlugin

__all__ = ["PredictionRecorder"]


class PredictionRecorder(SupervisedPlugin, supports_distributed=True):
    """Keeps ``(targets, predictions)`` per (stream name, experience index) of the last evaluation.

    In a distributed run it sees the minibatches ``DistributedPlugin`` gathered over ranks."""

    def __init__(self):
        super().__init__()
        self._targets: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)
        self._preds: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)

    @staticmethod
    def _key(strategy) -> tuple[str, int]:
        exp = strategy.experience
        return exp.origin_stream.name, int(exp.current_experience)

    def before_eval_exp(self, strategy, **kwargs):
        key = self._key(strategy)
        self._targets.pop(key, None)
        self._preds.pop(key, None)

    def after_eval_iteration(self, strategy, **kwargs):
        key = self._key(strategy)
        self._targets[key].append(strategy.mb_y.detach().cpu())
        self._preds[key].append(strategy.mb_output.detach().argmax(dim=1).cpu())

    def stream(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets and predictions over all recorded experiences of stream ``name``, in order."""
        keys = sorted(k for k in self._targets if k[0] == name)
        if not keys:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty
        return (
            torch.cat([torch.cat(self._targets[k]) for k in keys]),
            torch.cat([torch.cat(self._preds[k]) for k in keys]),
        )

    def stream_names(self) -> list[str]:
        return sorted({k[0] for k in self._targets})
