"""Per-epoch history of a run: training loss and accuracy after every epoch, the metrics of
Avalanche's periodic evaluation (``cl_strategy.eval_every``) when it is configured, and the test
stream's every ``history.test_every`` epochs when that is configured.

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

from avalanche_ext.checkpoint import get_rng_state, set_rng_state
from avalanche_ext.errors import ConfigError
from avalanche_ext.metrics.long_tail import long_tail_summary, per_class_accuracy

__all__ = [
    "EpochHistory",
    "HISTORY_FILE",
    "TestEvaluation",
    "periodic_eval_metrics",
    "read_history",
    "test_evaluation",
]

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


class TestEvaluation:
    """The test stream scored by forward passes alone, every ``every`` epochs (config:
    ``history = dict(test_every=N)``).

    No strategy callback, metric or plugin sees these passes, and the random state is restored
    after them, so training goes on exactly as without them; only numbers reach the history.
    Predictions are the model's own (a discovery run's discovered ids are not mapped).

    Args:
        datasets: the test stream's experiences' datasets (evaluation transforms).
        num_classes: the scenario's classes.
        every: epochs between evaluations (the last epoch of each experience is always scored).
        device: where the model is.
        batch_size: images per forward pass.
    """

    def __init__(self, datasets: list, num_classes: int, every: int, device: Any, batch_size: int):
        self.datasets = datasets
        self.num_classes = int(num_classes)
        self.every = int(every)
        self.device = device
        self.batch_size = int(batch_size)

    def __call__(self, model: torch.nn.Module) -> dict[str, Any]:
        from avalanche_ext.plugin_helpers import iter_outputs  # noqa: PLC0415

        rng = get_rng_state()
        try:
            ys, preds = [], []
            for dataset in self.datasets:
                for _, y, logits, _ in iter_outputs(model, dataset, self.device, self.batch_size):
                    ys.append(y)
                    preds.append(logits.argmax(dim=1))
        finally:
            set_rng_state(rng)
        return periodic_eval_metrics(torch.cat(ys), torch.cat(preds), self.num_classes)


def test_evaluation(cfg: Any, scenario: Any, device: Any) -> TestEvaluation | None:
    """The run's :class:`TestEvaluation` from ``cfg.history`` (None when not configured).

    Raises:
        ConfigError: ``history`` is not a dict, or ``test_every`` is not a positive int.
    """
    options = cfg.get("history")
    if options is None:
        return None
    if not isinstance(options, dict) or set(options) - {"test_every"}:
        raise ConfigError(f"history: expected dict(test_every=N), got {options!r}")
    every = options.get("test_every", 0)
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ConfigError(f"history.test_every: expected a non-negative int, got {every!r}")
    if every == 0:
        return None
    datasets = [e.dataset for e in scenario.benchmark.test_stream]
    batch = int(cfg.cl_strategy.get("eval_mb_size", 256) or 256)
    return TestEvaluation(datasets, scenario.num_classes, every, device, batch)


class EpochHistory(SupervisedPlugin, supports_distributed=True):
    """Records one entry per training epoch; appended by the runner before its checkpointer, so a
    mid-experience checkpoint already holds the epoch it ends.

    Entry: ``experience`` (0-based), ``epoch`` (1-based within the experience), ``epochs`` (of
    the experience), ``num_experiences``, ``train_loss`` (mean of ``strategy.loss`` over the
    epoch's minibatches, regularisers included), ``train_accuracy`` (on labeled samples: unlabeled
    ones, label ``-1``, are skipped), ``time_s`` (since the run started; resumed runs go on from
    the saved value), and ``eval`` (``{stream name: periodic_eval_metrics}``) when Avalanche's
    periodic evaluation ran during the epoch (by default it evaluates the experience in training)
    and, with ``test``, under ``eval["test"]`` the test stream's.

    Args:
        entries: the list to append to (the runner passes ``results["history"]``).
        path: the ``history.jsonl`` to append each entry to (None: keep them in memory only).
        num_experiences: the training stream's length (for progress).
        test: scores the test stream (see :func:`test_evaluation`), or None.
    """

    def __init__(
        self,
        entries: list,
        path: str | os.PathLike | None,
        num_experiences: int,
        test: TestEvaluation | None = None,
    ):
        super().__init__()
        self.entries = entries
        self.path = None if path is None else os.fspath(path)
        self.num_experiences = int(num_experiences)
        self.test = test
        self._loss = Mean()
        self._accuracy = Accuracy()
        self._training = False
        self._epochs = 0
        self._eval: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
        self._elapsed = 0.0
        self._since = time.monotonic()

    # ------------------------------------------------------------ training
    def before_training_exp(self, strategy, **kwargs):
        self._training = True
        # A resumed experience trains only its remaining epochs (strategy.train_epochs is reduced
        # for it): its full count is the epochs already recorded plus those.
        experience = int(strategy.experience.current_experience)
        done = sum(1 for e in self.entries if e["experience"] == experience)
        self._epochs = done + int(strategy.train_epochs)

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
            "epochs": max(self._epochs, epoch),
            "num_experiences": self.num_experiences,
            "train_loss": float(self._loss.result()),
            "train_accuracy": float(self._accuracy.result()),
            "time_s": round(self._elapsed + time.monotonic() - self._since, 3),
        }
        self._attach_eval(entry, strategy)
        last = epoch >= entry["epochs"]
        if self.test is not None and (last or epoch % self.test.every == 0):
            entry.setdefault("eval", {})["test"] = self.test(strategy.model)
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
        entry.setdefault("eval", {}).update(block)
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
