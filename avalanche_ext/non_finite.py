"""A diverging run stops at the step it diverges: a non-finite loss (checked before the backward
pass) or non-finite parameters (checked after each update) end training with one message naming
the experience, epoch and iteration, instead of finishing with meaningless numbers.

``runtime = dict(on_non_finite='skip')`` skips a batch whose loss is not finite instead (no
backward pass, no optimizer step; the batch counts as loss 0 in the running loss metrics) and says
so once per batch; non-finite parameters still stop the run, as no later batch can repair them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from avalanche.core import SupervisedPlugin

from avalanche_ext.distributed import all_reduce
from avalanche_ext.errors import RunFailed

__all__ = ["NON_FINITE_CHOICES", "NonFiniteError", "NonFiniteGuard", "first_non_finite"]

NON_FINITE_CHOICES = ("stop", "skip")
_MUTED = ("backward", "optimizer_step")


class NonFiniteError(RunFailed):
    """Training produced a non-finite loss or parameter (exit code 1, ``"status": "failed"``)."""


def first_non_finite(model: torch.nn.Module) -> str | None:
    """The name of the first parameter holding NaN or an infinity, or None (one device sync)."""
    named = [(n, p) for n, p in model.named_parameters()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).cpu()
    bad = (~finite).nonzero()
    return named[int(bad[0])][0] if len(bad) else None


def _where(strategy: Any) -> str:
    """``experience E, epoch P, iteration I`` of the running training step, counted from 1."""
    clock = strategy.clock
    experience = int(strategy.experience.current_experience) + 1
    return (
        f"experience {experience}, epoch {clock.train_exp_epochs + 1}, "
        f"iteration {clock.train_epoch_iterations + 1}"
    )


class NonFiniteGuard(SupervisedPlugin, supports_distributed=True):
    """Stops (or skips the batch) when the loss is not finite; stops when a parameter is not.

    Placed after every other plugin, so the loss it checks includes what plugins added to it
    (distillation terms) and the parameters it checks are the ones the optimizer step wrote.

    Args:
        on_non_finite: ``'stop'`` (default) or ``'skip'`` (``runtime.on_non_finite``).
        log: receives a line for every skipped batch.
    """

    def __init__(self, on_non_finite: str = "stop", log: Callable[[str], None] | None = None):
        super().__init__()
        if on_non_finite not in NON_FINITE_CHOICES:
            raise ValueError(f"on_non_finite: expected one of {NON_FINITE_CHOICES}")
        self.on_non_finite = on_non_finite
        self.log = log or (lambda _msg: None)
        self.skipped = 0
        self._saved: dict[str, Any] | None = None

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        loss = strategy.loss.detach()
        finite = torch.isfinite(loss).all().to(torch.int32)
        if bool(all_reduce(finite, "min")):  # every rank decides alike (no rank left waiting)
            return
        value = f"{float(loss.float().sum()):g}"  # finite here when another rank's loss was not
        where = _where(strategy)
        if self.on_non_finite == "stop":
            raise NonFiniteError(
                f"the training loss became {value} at {where}; the run stopped there and its "
                "earlier checkpoints are kept (lower the learning rate, or set "
                "runtime.on_non_finite='skip' to skip such batches)"
            )
        self.skipped += 1
        self.log(f"warning: the training loss is {value} at {where}: batch skipped")
        self._mute(strategy)

    def after_update(self, strategy: Any, **kwargs: Any) -> None:
        self._unmute(strategy)
        name = first_non_finite(strategy.model)
        if name is not None:
            raise NonFiniteError(
                f"parameter {name} became non-finite at {_where(strategy)}; the run stopped "
                "there and its earlier checkpoints are kept (lower the learning rate)"
            )

    def _mute(self, strategy: Any) -> None:
        """No backward pass and no optimizer step for this batch (instance attributes shadow the
        strategy's methods, or the mixed-precision plugin's, until :meth:`_unmute`)."""
        self._saved = {name: strategy.__dict__.get(name) for name in _MUTED}
        strategy.loss = torch.zeros((), device=strategy.loss.device)
        for name in _MUTED:
            setattr(strategy, name, lambda: None)

    def _unmute(self, strategy: Any) -> None:
        if self._saved is None:
            return
        for name, saved in self._saved.items():
            if saved is None:
                delattr(strategy, name)
            else:
                setattr(strategy, name, saved)
        self._saved = None
