"""Nothing lost: mid-experience checkpoints, resuming inside an experience, safe interruption.

* ``checkpoint_config = dict(interval=1, epoch_interval=E)`` also writes
  ``checkpoints/experience_{k}_epoch_{e}.pth`` every ``E`` epochs inside an experience (``k``
  experiences done, ``e`` epochs of the next). Such a file holds the state at the *start* of
  experience ``k`` (what ``experience_{k}.pth`` would hold: model, optimizer, plugins, evaluator,
  clock, RNG, results) plus a ``mid`` part with the state after epoch ``e`` (model, optimizer,
  scheduler, plugins, evaluator, clock, RNG). A resume replays Avalanche's start of the experience
  (dataset and model adaptation, optimizer, every plugin's ``before_training_exp``) from the start
  state, then loads the ``mid`` part and trains the remaining epochs: the data order of those
  epochs, the learning-rate position and the optimizer moments are those of the uninterrupted run.
  A plugin's ``mid`` state is loaded only when it differs from its start state (a plugin whose
  ``load_state_dict`` defers work to the next experience, e.g. a distillation teacher, is not
  reset mid-experience).
* SIGINT / SIGTERM: the first signal asks for a stop at the next safe point (the end of the current
  epoch, or of the experience when it was the last epoch); a checkpoint is written there, the run's
  ``results.json`` gets ``"status": "interrupted"`` with the numbers so far, the CLI prints how to
  resume and exits ``128 + signal`` (130 for SIGINT, 143 for SIGTERM). A second signal stops at once
  (``KeyboardInterrupt``, exit 130, nothing new written).
"""

from __future__ import annotations

import copy
import signal
import threading
from collections.abc import Callable
from typing import Any

import torch
from avalanche.core import SupervisedPlugin

__all__ = [
    "EpochCheckpointer",
    "Interrupted",
    "StopRequest",
    "differs",
    "install_mid_experience_resume",
    "scheduler_states",
    "load_scheduler_states",
]


class Interrupted(Exception):
    """Training stopped at a safe point after SIGINT / SIGTERM; a checkpoint was written.

    Args:
        signum: the signal received.
        run_dir: the run folder (resume with ``--resume RUN_DIR``).
        checkpoint: the checkpoint written at the safe point.
    """

    def __init__(self, signum: int, run_dir: str = "", checkpoint: str = ""):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = int(signum)
        self.run_dir = run_dir
        self.checkpoint = checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """SIGINT / SIGTERM handlers (main thread only) that ask for a stop at the next safe point.

    A second signal raises ``KeyboardInterrupt`` at once. Use as a context manager; the previous
    handlers come back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def differs(a: Any, b: Any) -> bool:
    """Whether two plain-typed states (dicts, lists, tensors, scalars) differ."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return True
        return a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() != b.keys() or any(differs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(differs(x, y) for x, y in zip(a, b))
    return a != b


def _schedulers(strategy) -> list[tuple[int, Any]]:
    return [
        (i, p.scheduler)
        for i, p in enumerate(strategy.plugins)
        if isinstance(getattr(p, "scheduler", None), torch.optim.lr_scheduler.LRScheduler)
    ]


def scheduler_states(strategy) -> dict[str, Any]:
    """The state of every per-experience LR scheduler (``ExperienceLRScheduler.scheduler``)."""
    out = {}
    for i, sched in _schedulers(strategy):
        state = {k: v for k, v in sched.state_dict().items() if not callable(v)}
        out[str(i)] = copy.deepcopy(state)
    return out


def load_scheduler_states(strategy, states: dict[str, Any]) -> None:
    for i, sched in _schedulers(strategy):
        if str(i) in states:
            sched.load_state_dict({**sched.state_dict(), **states[str(i)]})


class EpochCheckpointer(SupervisedPlugin):
    """Counts the epochs of each experience; every ``epoch_interval`` epochs (and when a stop was
    requested) calls ``save(epoch)`` at the end of an epoch that is not the experience's last.

    Appended after Avalanche's own plugins, so at ``after_training_epoch`` the scheduler, the
    evaluator and the clock have all finished the epoch.

    Args:
        save: writes the mid-experience checkpoint, returns its path.
        epoch_interval: 0: only when a stop was requested.
        stop: the run's stop request.
    """

    def __init__(self, save: Callable[[int], str], epoch_interval: int, stop: StopRequest):
        super().__init__()
        self.save = save
        self.epoch_interval = int(epoch_interval or 0)
        self.stop = stop
        self.epoch = 0
        self.start_epoch = 0
        self.total_epochs = 0

    def before_training_exp(self, strategy, **kwargs):
        self.epoch = self.start_epoch
        self.start_epoch = 0
        self.total_epochs = int(strategy.train_epochs)  # the full count, even when resuming

    def after_training_epoch(self, strategy, **kwargs):
        self.epoch += 1
        if self.epoch >= self.total_epochs:
            return
        due = self.epoch_interval and self.epoch % self.epoch_interval == 0
        if due or self.stop:
            path = self.save(self.epoch)
            if self.stop:
                raise Interrupted(int(self.stop.signum or signal.SIGINT), checkpoint=path)


def install_mid_experience_resume(strategy, mid: dict, restore: Callable[[dict], None]) -> None:
    """Makes the next ``strategy.train`` skip the ``mid['epoch']`` epochs already trained.

    Avalanche's start of the experience runs as usual; then ``restore(mid)`` loads the state after
    those epochs and only the remaining epochs are trained. The instance attribute shadowing
    ``_train_exp`` removes itself on first use.
    """
    original = strategy._train_exp
    done = int(mid["epoch"])

    def _train_exp(experience, eval_streams=None, **kwargs):
        del strategy._train_exp
        restore(mid)
        full = strategy.train_epochs
        strategy.train_epochs = full - done
        try:
            return original(experience, eval_streams, **kwargs)
        finally:
            strategy.train_epochs = full

    strategy._train_exp = _train_exp
