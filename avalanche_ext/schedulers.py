"""Learning-rate schedules from config, rebuilt at the start of every training experience.

Any ``torch.optim.lr_scheduler`` type works; ``'auto'`` for ``total_steps`` / ``T_max`` / ``epochs``
is replaced by this experience's length, so a one-cycle or cosine schedule spans each experience
whatever its size (Avalanche's ``LRSchedulerPlugin`` needs those numbers fixed up front).
"""

from __future__ import annotations

from typing import Any

from avalanche.core import SupervisedPlugin

from avalanche_ext.registry import SCHEDULERS, build, resolve_type

__all__ = [
    "ExperienceLRScheduler",
    "LossEpochUpdater",
    "epochs_for",
    "one_cycle_fits",
    "resolve_auto",
]

_AUTO_KEYS = ("total_steps", "T_max", "total_iters", "epochs", "steps_per_epoch")


def resolve_auto(cfg: dict, iterations_per_epoch: int, epochs: int, by_iteration: bool) -> dict:
    """Replaces ``'auto'`` values with the experience's schedule length.

    Args:
        cfg: scheduler config (without ``by_iteration``).
        iterations_per_epoch: minibatches per epoch of this experience.
        epochs: training epochs per experience.
        by_iteration: whether the scheduler steps every iteration (else every epoch).
    """
    out = dict(cfg)
    length = iterations_per_epoch * epochs if by_iteration else epochs
    for key in _AUTO_KEYS:
        if out.get(key) == "auto":
            out[key] = {"epochs": epochs, "steps_per_epoch": iterations_per_epoch}.get(key, length)
    return out


def one_cycle_fits(cfg: dict) -> dict:
    """Works around torch's ``OneCycleLR`` dividing by zero when a phase has length 0.

    torch computes the warm-up phase as ending at step ``pct_start * total_steps - 1``; when that is
    exactly 0 (e.g. ``total_steps=4`` with ``pct_start=0.25``: a short discovery update) its first
    ``step()`` raises ``ZeroDivisionError`` inside the constructor. Nudging ``pct_start`` up by one
    part in a million makes the phase a hair long, which gives the same learning rates at every
    integer step.

    Args:
        cfg: a resolved ``OneCycleLR`` config (other types are returned unchanged).
    """
    if cfg.get("type") != "OneCycleLR" or not isinstance(cfg.get("total_steps"), int):
        return cfg
    pct = float(cfg.get("pct_start", 0.3))
    total = cfg["total_steps"]
    if abs(pct * total - 1.0) < 1e-9:  # (three_phase: its second phase has the same length)
        return {**cfg, "pct_start": pct * (1 + 1e-6)}
    return cfg


class ExperienceLRScheduler(SupervisedPlugin, supports_distributed=True):
    """Builds the configured scheduler at each training experience and steps it.

    The learning rates are reset to their configured values at each experience (as Avalanche's
    ``LRSchedulerPlugin(reset_lr=True, reset_scheduler=True)`` does).

    Args:
        scheduler: the ``cl_strategy.scheduler`` dict; extra keys: ``by_iteration`` (default: True
            for ``OneCycleLR``, False otherwise) chooses per-iteration or per-epoch stepping;
            ``lr_scale`` (a float or a list, one per experience, the last repeating) multiplies the
            optimizer's learning rates and ``max_lr`` for that experience, e.g. ``[1.0, 0.1]``: the
            base experience learns at full rate, the incremental ones gently (class-incremental
            recipes do this so a few epochs on new classes do not overwrite the features).
    """

    def __init__(self, scheduler: dict[str, Any]):
        super().__init__()
        cfg = dict(scheduler)
        name = cfg.get("type")
        resolve_type(SCHEDULERS, str(name), "cl_strategy.scheduler")
        self.by_iteration = bool(cfg.pop("by_iteration", name == "OneCycleLR"))
        scale = cfg.pop("lr_scale", 1.0)
        self.lr_scale = (
            [float(v) for v in scale] if isinstance(scale, (list, tuple)) else [float(scale)]
        )
        self.experiences = 0
        self.cfg = cfg
        self.scheduler = None
        self._base_lrs: list[float] | None = None
        self._check_builds()

    def _check_builds(self) -> None:
        """Builds the scheduler once on a throw-away optimizer, so a missing or wrong key fails when
        the config is built, not at the first experience (after the run folder was written)."""
        import torch  # noqa: PLC0415

        probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        cfg = resolve_auto(self.cfg, 1, 1, self.by_iteration)
        build(SCHEDULERS, cfg, key="cl_strategy.scheduler", optimizer=probe)

    def before_training_exp(self, strategy, **kwargs):
        optimizer = strategy.optimizer
        if self._base_lrs is None or len(self._base_lrs) != len(optimizer.param_groups):
            self._base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        scale = self.lr_scale[min(self.experiences, len(self.lr_scale) - 1)]
        self.experiences += 1
        for group, lr in zip(optimizer.param_groups, self._base_lrs):
            group["lr"] = lr * scale
            group.pop("initial_lr", None)
        if not strategy.train_epochs:  # 0 epochs (after load_from): no step, nothing to schedule
            self.scheduler = None
            return
        cfg = resolve_auto(
            self.cfg, len(strategy.dataloader), strategy.train_epochs, self.by_iteration
        )
        if isinstance(cfg.get("max_lr"), (int, float)):
            cfg["max_lr"] = cfg["max_lr"] * scale
        cfg = one_cycle_fits(cfg)
        self.scheduler = build(SCHEDULERS, cfg, key="cl_strategy.scheduler", optimizer=optimizer)

    def state_dict(self) -> dict:
        """The experience count (the lr scale of the next experience depends on it)."""
        return {"experiences": self.experiences}

    def load_state_dict(self, state: dict) -> None:
        self.experiences = int(state["experiences"])

    def after_training_iteration(self, strategy, **kwargs):
        if self.by_iteration and self.scheduler is not None:
            self.scheduler.step()

    def after_training_epoch(self, strategy, **kwargs):
        if not self.by_iteration and self.scheduler is not None:
            self.scheduler.step()


class LossEpochUpdater(SupervisedPlugin, supports_distributed=True):
    """Tells an epoch-dependent loss (``set_epoch``, e.g. ``EvidentialLoss``'s KL annealing) which
    epoch of the current experience is starting; the builder adds it when the loss has ``set_epoch``.

    The count restarts at 0 with every experience: each experience is a new training problem, so
    the annealed regulariser ramps up again (Sensoy et al. anneal over one training run).
    """

    stateless = True  # the epoch comes from the strategy's clock, which the checkpointer saves

    def before_training_epoch(self, strategy, **kwargs):
        strategy._criterion.set_epoch(strategy.clock.train_exp_epochs)


def epochs_for(plan: int | list | tuple, index: int) -> int:
    """Epochs of experience ``index``: ``cl_strategy.train_epochs`` as an int, or a list (one per
    experience, the last repeated: ``[6, 3]`` = 6 epochs for the base experience, 3 after)."""
    if isinstance(plan, (list, tuple)):
        return int(plan[min(index, len(plan) - 1)])
    return int(plan)
