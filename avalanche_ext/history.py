"""Per-epoch history of a run: training loss and accuracy after every epoch, and the metrics of
Avalanche's periodic evaluation (``cl_strategy.eval_every``) when it is configured.

The runner keeps the entries in ``results["history"]``; each entry is also appended to
``<run_dir>/history.jsonl`` as soon as the epoch ends, so a page or a script can draw curves while
the run trains (the app does).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import Accuracy, Mean

from avalanche_ext.metrics.long_tail import long_tail_summary, per_class_accuracy

__all__ = ["EpochHistory", "HISTORY_FILE", "read_history", "periodic_eval_metrics"]

HISTORY_FILE = "history.jsonl"


def periodic_eval_metrics(y: torch.Tensor, pred: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy and the long-tail recall statistics of one evaluated stream.

    Args:
        y: ``[N]`` true labels.
        pred: ``[N]`` predicted labels.
        num_classes: width of the per-class table (classes without samples are left out of the
            recall statistics).

    Returns:
        dict: ``accuracy``, ``geometric_mean``, ``harmonic_mean``, ``lowest_recall``, ``samples``.
    """
    per_class = per_class_accuracy(y, pred, num_classes)
    stats = long_tail_summary(per_class, [0] * num_classes)
    return {
        "accuracy": float((y == pred).double().mean()) if y.numel() else None,
        "geometric_mean": stats["geometric_mean"],
        "harmonic_mean": stats["harmonic_mean"],
        "lowest_recall": stats["lowest_recall"],
        "samples": int(y.numel()),
    }


class EpochHistory(SupervisedPlugin, supports_distributed=True):
    """Records one entry per training epoch; appended by the runner before its checkpointer, so a
    mid-experience checkpoint already holds the epoch it ends.

    Entry: ``experience`` (0-based), ``epoch`` (1-based within the experience), ``epochs`` (of
    the experience), ``num_experiences``, ``train_loss`` (mean of ``strategy.loss`` over the
    epoch's minibatches, regularisers included), ``train_accuracy`` (on labeled samples: unlabeled
    ones, label ``-1``, are skipped), ``time_s`` (since the run started; resumed runs go on from
    the saved value), and ``eval`` (``{stream name: periodic_eval_metrics}``) when Avalanche's
    periodic evaluation ran during the epoch (by default it evaluates the experience in training).

    Args:
        entries: the list to append to (the runner passes ``results["history"]``).
        path: the ``history.jsonl`` to append each entry to (None: keep them in memory only).
        num_experiences: the training stream's length (for progress).
    """

    def __init__(self, entries: list, path: str | os.PathLike | None, num_experiences: int):
        super().__init__()
        self.entries = entries
        self.path = None if path is None else os.fspath(path)
        self.num_experiences = int(num_experiences)
        self._loss = Mean()
        self._accuracy = Accuracy()
        self._training = False
        self._eval: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
        self._elapsed = 0.0
        self._since = time.monotonic()

    # ------------------------------------------------------------ training
    def before_training_exp(self, strategy, **kwargs):
        self._training = True

    def before_training_epoch(self, strategy, **kwargs):
        self._loss.reset()
        self._accuracy.reset()
        self._eval.clear()

    def after_training_iteration(self, strategy, **kwargs):
        y = strategy.mb_y
        labeled = y >= 0
        self._loss.update(float(strategy.loss.detach()), weight=len(y))
        if bool(labeled.any()):
            out = strategy.mb_output.detach()[labeled]
            self._accuracy.update(out, y[labeled])

    def after_training_epoch(self, strategy, **kwargs):
        experience = int(strategy.experience.current_experience)
        epoch = 1 + sum(1 for e in self.entries if e["experience"] == experience)
        entry = {
            "experience": experience,
            "epoch": epoch,
            "epochs": int(strategy.train_epochs),
            "num_experiences": self.num_experiences,
            "train_loss": float(self._loss.result()),
            "train_accuracy": float(self._accuracy.result()),
            "time_s": round(self._elapsed + time.monotonic() - self._since, 3),
        }
        self._attach_eval(entry, strategy)
        self.entries.append(entry)
        self._write(entry)

    def after_training_exp(self, strategy, **kwargs):
        self._training = False
        if self._eval and self.entries:  # Avalanche's final periodic evaluation of the experience
            self._attach_eval(self.entries[-1], strategy)
            self._write(self.entries[-1])

    # ------------------------------------------------------------ periodic evaluation
    def after_eval_iteration(self, strategy, **kwargs):
        if not self._training:  # the runner's own evaluation: not an epoch's curve
            return
        name = str(strategy.experience.origin_stream.name)
        pred = strategy.mb_output.detach().argmax(dim=1).cpu()
        self._eval[name].append((strategy.mb_y.detach().cpu(), pred))

    def _attach_eval(self, entry: dict[str, Any], strategy) -> None:
        if not self._eval:
            return
        num_classes = int(getattr(strategy.model, "num_classes", 0) or 0)
        block = {}
        for name, parts in self._eval.items():
            y = torch.cat([p[0] for p in parts])
            pred = torch.cat([p[1] for p in parts])
            width = max(num_classes, int(y.max()) + 1 if y.numel() else 0)
            block[name] = periodic_eval_metrics(y, pred, width)
        entry["eval"] = block
        self._eval.clear()

    # ------------------------------------------------------------ files and checkpoints
    def _write(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as f:  # one line per epoch, read while it grows
            f.write(json.dumps(entry) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {
            "entries": list(self.entries),
            "elapsed": self._elapsed + time.monotonic() - self._since,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.entries[:] = list(state.get("entries", []))  # same list: results["history"] follows
        self._elapsed = float(state.get("elapsed", 0.0))
        self._since = time.monotonic()


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of ``<run_dir>/history.jsonl`` (a resumed run logs an epoch again: the last
    line of each ``(experience, epoch)`` wins); a partly written last line is skipped."""
    path = os.path.join(os.fspath(run_dir), HISTORY_FILE)
    latest: dict[tuple[int, int], dict[str, Any]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                latest[(int(entry["experience"]), int(entry["epoch"]))] = entry
    except OSError:
        return []
    return [latest[k] for k in sorted(latest)]
