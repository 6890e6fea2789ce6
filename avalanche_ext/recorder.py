"""Records predictions (and logits) during evaluation, so per-class accuracy, the confusion matrix
and the discovery metrics come from the very forward passes Avalanche's metrics saw (no second
pass); pads evaluation logits to the scenario's classes so a model never grows to evaluate."""

from __future__ import annotations

from collections import defaultdict

import torch
from avalanche.core import SupervisedPlugin

from avalanche_ext.ncd_state import MASKED_LOGIT

__all__ = ["EvalLogitPadding", "PredictionRecorder", "RecordStore"]


class EvalLogitPadding(SupervisedPlugin, supports_distributed=True):
    """Pads ``strategy.mb_output`` in evaluation to ``num_classes`` columns with ``MASKED_LOGIT``.

    Classes the model does not have yet (future classes of a class-incremental stream, or novel
    classes not discovered yet) are then never predicted, and Avalanche's loss on their test
    samples stays finite, without growing the model (which would leak the number of classes).

    Args:
        num_classes: the scenario's number of classes.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = int(num_classes)

    def after_eval_forward(self, strategy, **kwargs):
        out = strategy.mb_output
        missing = self.num_classes - out.shape[1]
        if missing > 0:
            pad = out.new_full((out.shape[0], missing), MASKED_LOGIT)
            strategy.mb_output = torch.cat([out, pad], dim=1)


class RecordStore:
    """The recorded ``(targets, predictions, logits)`` per (stream name, experience index).

    Owned by the runner, not by the strategy: the recorder writes into it only while the runner
    evaluates, so no training code can reach the test labels of classes still to be discovered.
    """

    def __init__(self, keep_logits: bool = True):
        self.keep_logits = bool(keep_logits)
        self._targets: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)
        self._preds: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)
        self._logits: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)

    def clear(self, key: tuple[str, int]) -> None:
        for table in (self._targets, self._preds, self._logits):
            table.pop(key, None)

    def add(self, key: tuple[str, int], targets: torch.Tensor, outputs: torch.Tensor) -> None:
        out = outputs.detach()
        self._targets[key].append(targets.detach().cpu())
        self._preds[key].append(out.argmax(dim=1).cpu())
        if self.keep_logits:
            self._logits[key].append(out.float().cpu())

    def _keys(self, name: str) -> list[tuple[str, int]]:
        return sorted(k for k in self._targets if k[0] == name)

    def stream(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets and predictions over all recorded experiences of stream ``name``, in order."""
        keys = self._keys(name)
        if not keys:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty
        return (
            torch.cat([torch.cat(self._targets[k]) for k in keys]),
            torch.cat([torch.cat(self._preds[k]) for k in keys]),
        )

    def stream_logits(self, name: str) -> torch.Tensor | None:
        """Logits over all recorded experiences of stream ``name`` (None when not kept); all
        experiences are padded to the same width by :class:`EvalLogitPadding`."""
        keys = self._keys(name)
        if not keys or not self.keep_logits or not all(self._logits[k] for k in keys):
            return None
        return torch.cat([torch.cat(self._logits[k]) for k in keys])

    def experience(self, name: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets and predictions of one experience of stream ``name``."""
        key = (name, int(index))
        if key not in self._targets:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty
        return torch.cat(self._targets[key]), torch.cat(self._preds[key])

    def stream_names(self) -> list[str]:
        return sorted({k[0] for k in self._targets})

    def state_dict(self) -> list[dict]:
        """The records as plain tensors (one entry per stream and experience), so a checkpoint
        written after the last evaluation can finish the run without evaluating again."""
        return [
            {
                "stream": name,
                "experience": index,
                "targets": torch.cat(self._targets[(name, index)]),
                "preds": torch.cat(self._preds[(name, index)]),
                "logits": torch.cat(self._logits[(name, index)])
                if self._logits.get((name, index))
                else None,
            }
            for name, index in sorted(self._targets)
        ]

    def load_state_dict(self, state: list[dict]) -> None:
        """Replaces the records with a :meth:`state_dict` snapshot."""
        for table in (self._targets, self._preds, self._logits):
            table.clear()
        for entry in state:
            key = (str(entry["stream"]), int(entry["experience"]))
            self._targets[key] = [entry["targets"]]
            self._preds[key] = [entry["preds"]]
            if entry.get("logits") is not None:
                self._logits[key] = [entry["logits"]]


class PredictionRecorder(SupervisedPlugin, supports_distributed=True):
    """Writes each evaluation minibatch into ``store`` while one is attached: the runner attaches
    its :class:`RecordStore` around evaluation only (in a distributed run the minibatches are the
    ones ``DistributedPlugin`` gathered over ranks)."""

    def __init__(self):
        super().__init__()
        self.store: RecordStore | None = None

    @staticmethod
    def _key(strategy) -> tuple[str, int]:
        exp = strategy.experience
        return exp.origin_stream.name, int(exp.current_experience)

    def before_eval_exp(self, strategy, **kwargs):
        if self.store is not None:
            self.store.clear(self._key(strategy))

    def after_eval_iteration(self, strategy, **kwargs):
        if self.store is not None:
            self.store.add(self._key(strategy), strategy.mb_y, strategy.mb_output)
