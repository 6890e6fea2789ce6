"""The run's one checkpointer: what a checkpoint holds, whether it fits this run, and restoring it.

* ``checkpoints/experience_{k}.pth``: the state after ``k`` experiences (model, optimizer, plugins,
  discovery state, evaluator, clock, RNG, the run record); ``latest.pth`` is a copy of the newest.
* ``checkpoint_config = dict(interval=1, epoch_interval=E)`` also writes
  ``experience_{k}_epoch_{e}.pth`` every ``E`` epochs inside an experience (``e`` epochs of the next
  one done): the state at the *start* of experience ``k`` plus a ``mid`` part with the state after
  epoch ``e`` (model, optimizer, schedulers, plugins, evaluator, clock, RNG). A resume replays
  Avalanche's start of the experience (dataset and model adaptation, optimizer, every plugin's
  ``before_training_exp``) from the start state, then loads the ``mid`` part and trains the
  remaining epochs: the data order, the learning-rate position and the optimizer moments are those
  of the uninterrupted run. A plugin's ``mid`` state is loaded only when it differs from its start
  state (a plugin whose ``load_state_dict`` defers work to the next experience, e.g. a distillation
  teacher, is not reset mid-experience).
* Plugin state is keyed by a name the plugin owns (:func:`plugin_keys`: its ``state_key``, default
  the class name, ``#2``, ``#3``... for repeats), as mmengine hooks own their checkpoint entries:
  resuming with a plugin list that only gains a stateless plugin works; a list that gains or loses
  a stateful one is refused. Checkpoints keyed by list position (``"0:ReplayPlugin"``) still load.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import re
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from avalanche.core import SupervisedPlugin

from avalanche_ext.capabilities import declared
from avalanche_ext.checkpoint import (
    capture_state,
    get_rng_state,
    load_checkpoint,
    restore_state,
    save_checkpoint,
    set_rng_state,
)
from avalanche_ext.errors import ConfigError
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.recorder import RecordStore
from avalanche_ext.run_record import RunRecord
from avalanche_ext.signals import StopRequest
from avalanche_ext.utils.jsonable import to_jsonable

__all__ = [
    "Checkpointer",
    "EpochCheckpointer",
    "check_fits",
    "differs",
    "load_weights",
    "model_mismatch",
    "plugin_keys",
    "resume_refusal",
]

_MID_KEYS = ("model", "optimizer", "optimizer_param_names", "plugins", "evaluator", "clock", "rng")
_POSITIONAL_KEY = re.compile(r"^(?P<index>\d+):(?P<name>.+)$")
# Rows of the classifier (and its mask of active classes) grow during a run.
_GROWS = ("head.fc.", "active")


# ------------------------------------------------------------------------------------- plugins
def _dedupe(names: Sequence[str]) -> list[str]:
    seen: collections.Counter[str] = collections.Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def plugin_keys(plugins: Sequence[Any]) -> list[str]:
    """The checkpoint key of each plugin: its ``state_key`` (default: the class name), with ``#2``,
    ``#3``... for the second and later plugins of the same key, in list order."""
    return _dedupe([str(getattr(p, "state_key", None) or type(p).__name__) for p in plugins])


def _checkpoints_state(plugin: Any) -> bool:
    return callable(getattr(plugin, "state_dict", None)) and not isinstance(plugin, torch.nn.Module)


def _stateless(plugin: Any) -> bool:
    return bool(declared(plugin, "stateless", False))


def _plugin_states(plugins: Sequence[Any]) -> dict[str, Any]:
    keys = plugin_keys(plugins)
    return {k: p.state_dict() for k, p in zip(keys, plugins) if _checkpoints_state(p)}


def _keyed_by_name(states: dict[str, Any]) -> dict[str, Any]:
    """Plugin states of a checkpoint keyed by list position (``"3:ReplayPlugin"``) keyed by name."""
    matches = [(_POSITIONAL_KEY.match(k), v) for k, v in states.items()]
    if not matches or not all(m for m, _ in matches):
        return states
    ordered = sorted(matches, key=lambda mv: int(mv[0].group("index")))
    keys = _dedupe([m.group("name") for m, _ in ordered])
    return {k: v for k, (_, v) in zip(keys, ordered)}


def _saved_configured_keys(ckpt: dict) -> list[str]:
    """The keys of the configured plugins whose state the checkpoint holds."""
    if "configured_plugin_keys" in ckpt:
        return list(ckpt["configured_plugin_keys"])
    configured = len(ckpt.get("configured_plugins") or [])  # keyed by position: they came first
    positional = sorted(
        (int(m.group("index")), m.group("name"))
        for m in map(_POSITIONAL_KEY.match, ckpt.get("plugins", {}))
        if m
    )
    keys = _dedupe([name for _, name in positional])
    return [k for k, (i, _) in zip(keys, positional) if i < configured]


# ------------------------------------------------------------------------------ fits this run?
def model_mismatch(own: dict, state: dict, grows: tuple[str, ...] = ()) -> str | None:
    """What keeps ``state`` from loading into a model whose state dict is ``own`` (None: it fits).

    Args:
        own: the model's state dict.
        state: the state dict to load.
        grows: key prefixes whose shapes may differ (the growing classifier, on resume).
    """
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        k for k in own if k in state and not k.startswith(grows) and own[k].shape != state[k].shape
    ]
    if missing:
        return f"missing {missing[:3]}"
    if unexpected:
        return f"unexpected {unexpected[:3]}"
    return f"shape mismatch for {wrong[:3]}" if wrong else None


def load_weights(model: torch.nn.Module, path: str, key: str = "load_from") -> None:
    """Loads model weights only (our checkpoints, plain state dicts, or mmpretrain's ``state_dict``).

    Every key and shape is checked before anything is copied: a foreign file never half-loads.

    Raises:
        ConfigError: missing file, unreadable file, or keys/shapes that do not fit the model.
    """
    payload = load_checkpoint(path, key=key)
    state = payload.get("model", payload.get("state_dict", payload))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{key}: {path} holds no model state dict")
    if "num_classes" in payload and hasattr(model, "grow"):
        model.grow(int(payload["num_classes"]))
    detail = model_mismatch(model.state_dict(), state)
    if detail:
        raise ConfigError(f"{key}: {path} does not fit the model ({detail})")
    model.load_state_dict(state)


def resume_refusal(strategy, configured: list) -> str | None:
    """Why a run of this strategy could not be resumed exactly (None: it can).

    Avalanche strategies other than ``Naive`` keep state of their own (a replay buffer, importance
    weights, a teacher, the accumulated dataset) that has no checkpoint form; resuming them would
    silently start that state from scratch, so ``--resume`` refuses them. A strategy that can
    resume declares ``resumable`` (:mod:`avalanche_ext.capabilities`) or has a ``state_dict``; a
    plugin it adds itself must be ``stateless`` or have a ``state_dict``.
    """
    name = type(strategy).__name__
    if not declared(strategy, "resumable") and not callable(getattr(strategy, "state_dict", None)):
        return f"strategy {name} keeps state of its own that cannot be checkpointed"
    for plugin in strategy.plugins:
        if any(plugin is p for p in configured) or _stateless(plugin):
            continue
        if not callable(getattr(plugin, "state_dict", None)):
            kind = type(plugin).__name__
            return f"strategy {name} uses {kind}, which keeps state that cannot be checkpointed"
    return None


def _plugin_refusal(ckpt: dict, plugins: Sequence[Any]) -> str | None:
    """Why the configured ``plugins`` cannot take over the checkpoint's plugin states (None: they
    can): a stateful plugin without a saved state, or a saved state without its plugin."""
    saved = _keyed_by_name(ckpt.get("plugins", {}))
    keys = plugin_keys(plugins)
    for key, plugin in zip(keys, plugins):
        if key in saved or _stateless(plugin):
            continue
        if not _checkpoints_state(plugin):
            kind = type(plugin).__name__
            return (
                f"plugin {kind} keeps state that it cannot checkpoint (no state_dict); "
                "rerun without --resume"
            )
        return (
            f"plugin {key} keeps state and the checkpoint holds none for it; "
            "resume with the run's own config"
        )
    # an empty state (a plugin that declares ``stateless`` now) loses nothing when dropped
    removed = [k for k in _saved_configured_keys(ckpt) if saved.get(k) and k not in keys]
    if removed:
        return (
            f"the checkpoint holds the state of plugin {removed[0]}, which this config does not "
            "have; resume with the run's own config"
        )
    return None


def check_fits(
    ckpt: dict,
    path: str | os.PathLike,
    *,
    seed: int,
    model: torch.nn.Module,
    plugins: Sequence[Any],
    refusal: str | None = None,
    fresh_plugins_ok: bool = False,
) -> None:
    """Whether a checkpoint can resume this run, before anything is written.

    Args:
        ckpt: the loaded checkpoint.
        path: its file (named in the errors).
        seed: this run's seed.
        model: this run's model (the head's rows may differ: it grows during a run).
        plugins: the configured plugins.
        refusal: why this strategy cannot resume at all (:func:`resume_refusal`).
        fresh_plugins_ok: plugins without a saved state start fresh, saved states without their
            plugin are dropped (API only: an ablation resumes one base experience into runs with
            other plugins).

    Raises:
        ConfigError: not our checkpoint, another seed, a strategy or plugin whose state cannot be
            restored, or model weights whose names or shapes do not fit.
    """
    if ckpt.get("format") is None:
        raise ConfigError(f"--resume: {path} is not an avalanche-ext checkpoint")
    if ckpt.get("seed") != seed:
        raise ConfigError(
            f"--resume: the checkpoint was made with seed {ckpt.get('seed')}, not {seed}"
        )
    state = ckpt.get("model")
    if not isinstance(state, dict):
        raise ConfigError(f"--resume: {path} holds no model")
    if refusal:
        raise ConfigError(f"--resume: {refusal}; rerun without --resume")
    plugin_refusal = None if fresh_plugins_ok else _plugin_refusal(ckpt, plugins)
    if plugin_refusal:
        raise ConfigError(f"--resume: {plugin_refusal}")
    detail = model_mismatch(model.state_dict(), state, grows=_GROWS)
    if detail:
        raise ConfigError(
            f"--resume: {path} was made with another model ({detail}); "
            "resume with the run's own config"
        )


# ---------------------------------------------------------------------------------- optimizer
def _optimizer_param_names(strategy, model: torch.nn.Module) -> list[str]:
    """Parameter names in the optimizer's flat order. A classifier replaced by growth after the last
    ``make_optimizer`` is still in the optimizer; Avalanche's ``optimized_param_id`` names it."""
    names = {id(p): n for n, p in (getattr(strategy, "optimized_param_id", None) or {}).items()}
    names.update({id(p): n for n, p in model.named_parameters()})
    return [names.get(id(p), "") for g in strategy.optimizer.param_groups for p in g["params"]]


def _restore_optimizer(strategy, model: torch.nn.Module, state: dict, names: list[str]) -> None:
    """Rebuilds the saved parameter groups on the current parameters, then loads their state.

    State whose shape no longer fits (a classifier that grew since) is dropped, exactly as
    Avalanche's ``update_optimizer`` resets it at the next experience of an uninterrupted run.

    Raises:
        ConfigError: the saved optimizer does not fit the model.
    """
    params = dict(model.named_parameters())
    optimizer = strategy.optimizer
    if any(n not in params for n in names):
        raise ConfigError("--resume: the saved optimizer holds parameters the model does not have")
    template = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    optimizer.param_groups = []
    optimizer.state = collections.defaultdict(dict)
    for group in state["param_groups"]:
        hyper = {k: v for k, v in group.items() if k != "params"}
        chosen = [params[names[i]] for i in group["params"]]
        optimizer.add_param_group({**template, **hyper, "params": chosen})
    fixed: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, entry in state["state"].items():
        p = params[names[index]]
        fits = all(
            not isinstance(v, torch.Tensor) or v.dim() == 0 or v.shape == p.shape
            for v in entry.values()
        )
        if fits:
            fixed["state"][index] = entry
    try:
        optimizer.load_state_dict(fixed)
    except ValueError as err:
        raise ConfigError(f"--resume: optimizer state does not fit ({err})") from None
    strategy.optimized_param_id = dict(model.named_parameters())


# ---------------------------------------------------------------------------------- schedulers
def _schedulers(strategy) -> list[tuple[int, str, Any]]:
    keys = plugin_keys(strategy.plugins)
    return [
        (i, keys[i], p.scheduler)
        for i, p in enumerate(strategy.plugins)
        if isinstance(getattr(p, "scheduler", None), torch.optim.lr_scheduler.LRScheduler)
    ]


def _scheduler_states(strategy) -> dict[str, Any]:
    """The state of every per-experience LR scheduler (``ExperienceLRScheduler.scheduler``)."""
    out = {}
    for _, key, sched in _schedulers(strategy):
        out[key] = copy.deepcopy({k: v for k, v in sched.state_dict().items() if not callable(v)})
    return out


def _load_scheduler_states(strategy, states: dict[str, Any]) -> None:
    for i, key, sched in _schedulers(strategy):
        state = states.get(key, states.get(str(i)))  # older checkpoints: keyed by position
        if state is not None:
            sched.load_state_dict({**sched.state_dict(), **state})


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


def _install_mid_experience_resume(strategy, mid: dict, restore: Callable[[dict], None]) -> None:
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


# ---------------------------------------------------------------------------------- the run's
class Checkpointer:
    """Saves and restores one run's checkpoints under ``<run_dir>/checkpoints``.

    Args:
        run_dir: the run folder.
        model: the trained model.
        configured: the configured plugins (their keys are recorded to refuse a resume without them).
        seed: the run seed (recorded: a resume with another seed is refused).
        strategy: the equipped strategy (optimizer, plugins, clock, discovery state).
        evaluator: the evaluation plugin (its metrics' state is saved).
        record: the run record.
        stop: the run's stop request (a checkpoint is written at the next safe point).
        interval: write ``experience_{k}.pth`` every ``interval`` experiences (0: never; the last
            and an interrupted experience are always written when not 0 or stopped).
        epoch_interval: write ``experience_{k}_epoch_{e}.pth`` every ``epoch_interval`` epochs.
        records: the run's evaluation predictions (kept in the last experience's checkpoint).
    """

    def __init__(
        self,
        run_dir: Path,
        model: torch.nn.Module,
        configured: Sequence[Any],
        seed: int,
        strategy,
        evaluator,
        record: RunRecord,
        stop: StopRequest,
        interval: int = 0,
        epoch_interval: int = 0,
        records: RecordStore | None = None,
    ):
        self.dir = Path(run_dir) / "checkpoints"
        self.records = records  # the evaluation predictions, saved with the last experience
        self.model, self.configured, self.seed = model, list(configured), seed
        self.strategy, self.evaluator, self.record, self.stop = strategy, evaluator, record, stop
        self.interval = int(interval or 0)
        self.experience = 0
        self.start: dict[str, Any] | None = None  # the payload when the experience began
        self.epochs = EpochCheckpointer(self, epoch_interval, stop)
        strategy.plugins.append(self.epochs)  # after the evaluator and clock: epoch fully done

    def payload(self, next_exp: int) -> dict[str, Any]:
        """Everything a resume at experience ``next_exp`` needs."""
        strategy = self.strategy
        return {
            "next_experience": next_exp,
            "model": self.model.state_dict(),
            "num_classes": int(getattr(self.model, "num_classes", 0) or 0),
            "optimizer": strategy.optimizer.state_dict(),
            "optimizer_param_names": _optimizer_param_names(strategy, self.model),
            "plugins": _plugin_states(strategy.plugins),
            "configured_plugins": [type(p).__name__ for p in self.configured],
            "configured_plugin_keys": plugin_keys(self.configured),
            "ncd": discovery_state(strategy).state_dict(),
            "evaluator": capture_state(self.evaluator),
            "clock": capture_state(strategy.clock),
            "rng": get_rng_state(),
            "results": json.loads(json.dumps(to_jsonable(self.record.results()))),
            "run_record": self.record.state_dict(),
            "seed": self.seed,
        }

    def begin_experience(self, index: int) -> None:
        """Remembers the state at the start of experience ``index`` (for epoch checkpoints)."""
        self.experience = index
        self.start = copy.deepcopy(self.payload(index))

    def _write(self, name: str, payload: dict[str, Any]) -> Path:
        save_checkpoint(self.dir / name, payload, latest=self.dir / "latest.pth")
        return self.dir / name

    def save_epoch(self, epoch: int) -> str:
        """Writes ``experience_{k}_epoch_{epoch}.pth`` (the start state + the state now)."""
        now = self.payload(self.experience)
        mid = {k: now[k] for k in _MID_KEYS}
        mid.update(epoch=epoch, schedulers=_scheduler_states(self.strategy))
        name = f"experience_{self.experience}_epoch_{epoch}.pth"
        return str(self._write(name, {**(self.start or {}), "mid": mid}))

    def after_experience(self, index: int, is_last: bool, writes: bool = True) -> None:
        """Writes ``experience_{index + 1}.pth`` when due or when a stop was requested (only where
        ``writes``: rank 0), then raises :class:`Interrupted` if a stop was requested.

        Raises:
            Interrupted: a signal asked for a stop and experiences remain.
        """
        due = self.interval and ((index + 1) % self.interval == 0 or is_last)
        stopping = bool(self.stop) and not is_last
        if not (due or stopping):
            return
        payload = self.payload(index + 1) if writes else None
        if payload is not None and is_last and self.records is not None:
            # the last evaluation: a resume after the last experience finishes from this alone
            payload["records"] = self.records.state_dict()
        saved = self._write(f"experience_{index + 1}.pth", payload) if writes else None
        if stopping:
            raise self.stop.interrupted(str(saved))

    def restore(self, ckpt: dict, device: torch.device) -> int:
        """Loads a checkpoint that :func:`check_fits` accepted; returns the next experience."""
        strategy = self.strategy
        if hasattr(self.model, "grow"):
            self.model.grow(int(ckpt.get("num_classes", 0)))
        self.model.load_state_dict(ckpt["model"])
        self.model.to(device)
        saved = _keyed_by_name(ckpt["plugins"])
        for key, plugin in zip(plugin_keys(strategy.plugins), strategy.plugins):
            if key in saved and not getattr(plugin, "stateless", False):
                plugin.load_state_dict(saved[key])  # (older checkpoints kept stateless ones too)
        if ckpt.get("ncd") is not None:
            discovery_state(strategy).load_state_dict(ckpt["ncd"])
        _restore_optimizer(strategy, self.model, ckpt["optimizer"], ckpt["optimizer_param_names"])
        restore_state(self.evaluator, ckpt["evaluator"])
        restore_state(strategy.clock, ckpt["clock"])
        if "run_record" in ckpt:
            self.record.load_state_dict(ckpt["run_record"])
        else:
            self.record.load_legacy(ckpt["results"])
        if self.records is not None:
            self.records.load_state_dict(ckpt.get("records") or [])
        set_rng_state(ckpt["rng"])
        if ckpt.get("mid"):
            self.epochs.start_epoch = int(ckpt["mid"]["epoch"])
            _install_mid_experience_resume(strategy, ckpt["mid"], lambda m: self._mid(m, saved))
        return int(ckpt["next_experience"])

    def _mid(self, mid: dict, start_plugins: dict) -> None:
        """Loads the state after ``mid['epoch']`` epochs, once Avalanche has started the experience."""
        strategy = self.strategy
        self.model.load_state_dict(mid["model"])
        _restore_optimizer(strategy, self.model, mid["optimizer"], mid["optimizer_param_names"])
        _load_scheduler_states(strategy, mid["schedulers"])
        states = _keyed_by_name(mid["plugins"])
        for key, plugin in zip(plugin_keys(strategy.plugins), strategy.plugins):
            if getattr(plugin, "stateless", False):
                continue
            if key in states and differs(states[key], start_plugins.get(key)):
                plugin.load_state_dict(states[key])
        restore_state(self.evaluator, mid["evaluator"])
        restore_state(strategy.clock, mid["clock"])
        set_rng_state(mid["rng"])


# Savers by token. The epoch plugin lives among the strategy's plugins, where training code can
# reach it; the saver holds the run record (evaluation-only facts: a discovery experience's hidden
# labels, the novel classes). A plugin attribute or a closure would make those reachable from the
# strategy; the token is an int. Entries are weak: a finished run's saver goes with it.
_SAVERS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


class EpochCheckpointer(SupervisedPlugin):
    """Counts the epochs of each experience; every ``epoch_interval`` epochs (and when a stop was
    requested) calls ``saver.save_epoch(epoch)`` at the end of an epoch that is not the
    experience's last.

    Appended after Avalanche's own plugins, so at ``after_training_epoch`` the scheduler, the
    evaluator and the clock have all finished the epoch. It keeps an int token, not the saver
    (see ``_SAVERS``).

    Args:
        saver: an object with ``save_epoch(epoch) -> path`` (the run's :class:`Checkpointer`).
        epoch_interval: 0: only when a stop was requested.
        stop: the run's stop request.
    """

    stateless = True  # its epoch count restarts from the checkpoint's ``mid`` part

    def __init__(self, saver: Any, epoch_interval: int, stop: StopRequest):
        super().__init__()
        self._token = id(saver)
        _SAVERS[self._token] = saver
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
            path = _SAVERS[self._token].save_epoch(self.epoch)
            if self.stop:
                raise self.stop.interrupted(path)
