"""The build-time probe: one small batch through model, criterion and plugins before anything is
written.

A head that does not fit the backbone, a loss that does not fit the logits or images the backbone
cannot read would otherwise surface in the first training step, as a long traceback after the run
folder was created. The probe runs a train-mode forward and the loss on two training samples (no
backward, no optimizer step) and restores everything it touched: parameters, buffers (BatchNorm
running statistics), train/eval modes and the RNG states, so a probed run trains exactly as an
unprobed one. :func:`probe_plugins` then runs the plugins' loss-shaping minibatch hooks on the
same kind of batch, on copies of the model and plugins (which hooks, and why: its docstring).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import default_collate

from avalanche_ext.capabilities import declared
from avalanche_ext.checkpoint import get_rng_state, set_rng_state
from avalanche_ext.errors import ConfigError

__all__ = [
    "PROBED_HOOKS",
    "probe_batch",
    "probe_mbatch",
    "probe_model",
    "probe_plugins",
]


def probe_batch(experience, n: int = 2) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first ``n`` samples of a training experience as ``(x, y)`` (None: empty or unreadable
    as tensors)."""
    dataset = experience.dataset.train() if hasattr(experience.dataset, "train") else None
    dataset = dataset if dataset is not None else experience.dataset
    n = min(n, len(dataset))
    if n == 0:
        return None
    items = [dataset[i] for i in range(n)]
    if not all(isinstance(it[0], torch.Tensor) for it in items):
        return None
    x = torch.stack([it[0] for it in items])
    y = torch.as_tensor([int(it[1]) for it in items])
    return x, y


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _feature_dim(features: Any) -> int | None:
    if isinstance(features, (tuple, list)):
        features = features[-1] if features else None
    if isinstance(features, torch.Tensor) and features.dim() >= 2:
        return int(features.flatten(1).shape[1])
    return None


def _forward_checked(model, x: torch.Tensor, model_cfg: dict) -> torch.Tensor:
    """Forward stage by stage for an ``MMClassifier`` so a mismatch names the model keys."""
    if not all(hasattr(model, a) for a in ("backbone", "neck", "head")):
        try:
            return model(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            raise ConfigError(
                f"model: one batch of the scenario's images {tuple(x.shape)} does not go through "
                f"the model ({_first_line(err)})"
            ) from None
    if model.backbone is not None:
        try:
            feats = model.backbone(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            kind = (model_cfg.get("backbone") or {}).get("type")
            raise ConfigError(
                f"model.backbone: {kind} cannot read the scenario's images "
                f"{tuple(x.shape)} ({_first_line(err)})"
            ) from None
    else:
        feats = (x.flatten(1),)
    if model.neck is not None:
        try:
            feats = model.neck(feats)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            raise ConfigError(
                f"model.neck: does not fit the backbone output ({_first_line(err)})"
            ) from None
    dim = _feature_dim(feats)
    expected = model.head.fc.in_features
    if dim is not None and dim != expected:
        source = (
            "backbone output" if model.neck is None or model.backbone is None else "neck output"
        )
        if model.backbone is None:
            source = "input features"
        raise ConfigError(
            f"model.head.in_channels={expected} does not fit the {source} {dim}"
            + (" (backbone=None: the inputs are the features)" if model.backbone is None else "")
        )
    return model(x)


def probe_model(
    model: torch.nn.Module,
    criterion: Any,
    experience,
    device: torch.device,
    model_cfg: dict | None = None,
) -> None:
    """Pushes two training samples through ``model`` and ``criterion`` and restores every state.

    Args:
        model: the built model.
        criterion: the built loss (called as ``criterion(logits, targets)``).
        experience: the first training experience.
        device: where the run trains.
        model_cfg: the ``model`` config dict (to name the keys at fault).

    Raises:
        ConfigError: the batch does not go through (naming ``model.*`` or ``cl_strategy.loss``).
    """
    rng = get_rng_state()  # before the batch: its random transforms draw numbers too
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        batch = probe_batch(experience)
    finally:
        set_rng_state(rng)
    if batch is None:
        return
    x, y = batch
    state = copy.deepcopy(model.state_dict())
    modes = {name: m.training for name, m in model.named_modules()}
    last = getattr(model, "last_features", None)
    probed_counts = False
    try:
        model.to(device).train()
        with torch.no_grad():
            logits = _forward_checked(model, x.to(device), dict(model_cfg or {}))
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise ConfigError(
                    "model: the forward must return a (batch, classes) logit tensor, got "
                    f"{getattr(logits, 'shape', type(logits).__name__)}"
                )
            target = y.to(device)
            if int(target.max()) >= logits.shape[1] and not getattr(model, "auto_grow", False):
                raise ConfigError(
                    f"model.head.num_classes={logits.shape[1]} is too small for label "
                    f"{int(target.max())} of the first experience"
                )
            target = target.clamp_max(logits.shape[1] - 1)
            if callable(getattr(criterion, "set_class_counts", None)) and (
                getattr(criterion, "class_counts", None) is None
            ):
                # a count-aware loss gets its counts only when training starts: probe with one
                # image per class, then forget them again
                criterion.set_class_counts([1] * logits.shape[1])
                probed_counts = True
            try:
                loss = criterion(logits, target)
            except (RuntimeError, ValueError, TypeError, IndexError) as err:
                raise ConfigError(
                    f"cl_strategy.loss: does not fit logits {tuple(logits.shape)} and targets "
                    f"{tuple(target.shape)} ({_first_line(err)})"
                ) from None
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ConfigError("cl_strategy.loss: must return a scalar tensor")
            if not torch.is_floating_point(loss):
                raise ConfigError(f"cl_strategy.loss: returned a {loss.dtype} tensor, not a float")
    finally:
        if probed_counts:
            criterion.class_counts = None
        model.load_state_dict(state)
        for name, m in model.named_modules():
            m.training = modes.get(name, m.training)
        if hasattr(model, "last_features"):
            model.last_features = last
        set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


# The minibatch hooks that shape the loss, in the order Avalanche's training_epoch calls them.
PROBED_HOOKS = ("before_forward", "after_forward", "before_backward")


def probe_mbatch(experience, device: torch.device, n: int = 2) -> list[torch.Tensor] | None:
    """The first ``n`` training samples collated as the strategy's dataloader would (None: empty,
    or not collatable into tensors)."""
    dataset = experience.dataset.train() if hasattr(experience.dataset, "train") else None
    dataset = dataset if dataset is not None else experience.dataset
    n = min(n, len(dataset))
    if n == 0:
        return None
    collate = getattr(dataset, "collate_fn", None) or default_collate
    try:
        mbatch = list(collate([dataset[i] for i in range(n)]))
    except (TypeError, RuntimeError):
        return None
    if not all(isinstance(t, torch.Tensor) for t in mbatch):
        return None
    return [t.to(device) for t in mbatch]


def _plugin_key(plugin: Any, configured: dict[int, int], criterion: Any, strategy: str) -> str:
    index = configured.get(id(plugin))
    if index is not None:
        return f"cl_strategy.plugins[{index}] ({type(plugin).__name__})"
    if plugin is criterion:
        return f"cl_strategy.loss ({type(plugin).__name__})"
    return f"cl_strategy ({strategy}'s {type(plugin).__name__})"


def _check_loss(loss: Any, where: str) -> None:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ConfigError(f"{where}: leaves a loss of shape {shape}, not a scalar")
    if not torch.is_floating_point(loss):
        raise ConfigError(f"{where}: leaves a {loss.dtype} loss, not a float")


def probe_plugins(
    model: torch.nn.Module,
    plugins: list,
    experience,
    make_strategy: Callable[[torch.nn.Module, list], Any],
) -> None:
    """Runs the loss-shaping minibatch hooks of every plugin on one batch, on copies.

    ``model`` and ``plugins`` are deep-copied together (a plugin holding the model keeps holding the
    copy), ``make_strategy(model_copy, plugins_copy)`` builds a throwaway strategy around them as
    the runner equips the real one, and one step of Avalanche's ``training_epoch`` runs up to the
    backward: ``before_forward``, the strategy's forward, ``after_forward``, the criterion,
    ``before_backward`` (no backward of the loss, no optimizer step; autograd on, as in training,
    since a hook may need the graph). The originals are never touched and the RNG states are
    restored, so a probed run trains exactly as an unprobed one.

    Which hooks run, and why (decided): only ``PROBED_HOOKS``, the minibatch hooks where plugins
    add loss terms (LwF, EWC, MAS, the dual teacher) or change logits and targets (logit masking,
    pseudo-label relabelling). Not run:

    * experience-level hooks (``before_training``, ``before_train_dataset_adaptation``,
      ``before_training_exp``, ``after_training_exp``...): they build replay buffers and loaders,
      snapshot teachers, fill novelty pools, run k-means or a feature pass over the whole
      experience. Even on copies that costs as much as a part of the first experience and can
      touch shared objects a deep copy does not isolate (the datasets, a process group). On the
      first experience the shipped plugins' minibatch hooks are then inactive (no teacher, no
      pool), which is exactly the state they train in at the first experience;
    * epoch-level hooks (freezing schedules, re-clustering, the epoch checkpointer, which writes);
    * ``before_training_iteration`` (Avalanche's AGEM / GEM compute reference gradients there, with
      a backward pass) and everything after the backward (``after_backward``, ``before_update``,
      ``after_update``, ``after_training_iteration``: gradient projection, importance
      accumulation), since the probe takes no backward;
    * the evaluator, ``PeriodicEval`` and ``Clock``: bookkeeping, not the loss.

    The one exception: a plugin declaring ``probe_experience_hooks`` (:mod:`avalanche_ext.capabilities`)
    gets those experience hooks first, because its loss hooks read the state they create and they
    were read to touch only the plugin and the model (Avalanche's SI: ``create_syn_data`` /
    ``init_batch`` fill its own parameter dicts from the model's weights, and its
    ``before_backward`` raises a KeyError without them).

    The copy's model is adapted to the first experience first (``model_adaptation``: a dynamic head
    grows to its labels), as ``train`` does before its first minibatch; it only touches the copy.

    A model or plugin that cannot be deep-copied skips this pass with a warning (the model and
    criterion were probed already by :func:`probe_model`).

    Args:
        model: the built model (after :func:`probe_model`: on the run's device).
        plugins: the built ``cl_strategy.plugins``, in config order.
        experience: the first training experience.
        make_strategy: builds the strategy around a model and plugin list.

    Raises:
        ConfigError: a hook fails or leaves a non-scalar or non-float loss (naming
            ``cl_strategy.plugins[i]`` and its type), or the forward / criterion fails on what
            the plugins left.
    """
    rng = get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        try:
            model_copy, plugins_copy = copy.deepcopy((model, list(plugins)))
        except Exception as err:  # noqa: BLE001  (any failure to copy: skip, loudly)
            warnings.warn(
                f"probe: the plugins' minibatch hooks were not probed (cannot copy the model "
                f"and plugins: {_first_line(err)})",
                stacklevel=2,
            )
            return
        strategy = make_strategy(model_copy, plugins_copy)
        device = getattr(strategy, "device", None) or next(model_copy.parameters()).device
        mbatch = probe_mbatch(experience, torch.device(device))
        if mbatch is None:
            return
        _run_hooks(strategy, plugins_copy, experience, mbatch)
    finally:
        set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _experience_hooks(plugin: Any) -> tuple[str, ...]:
    hooks = declared(plugin, "probe_experience_hooks", ())
    return tuple(h for h in hooks if callable(getattr(plugin, h, None)))


def _run_hooks(strategy: Any, plugins: list, experience, mbatch: list[torch.Tensor]) -> None:
    from avalanche.training.plugins import EvaluationPlugin  # noqa: PLC0415
    from avalanche.training.plugins.clock import Clock  # noqa: PLC0415
    from avalanche.training.templates.base_sgd import PeriodicEval  # noqa: PLC0415

    configured = {id(p): i for i, p in enumerate(plugins)}
    criterion = getattr(strategy, "_criterion", None)
    kind = type(strategy).__name__
    called = [
        p
        for p in strategy.plugins
        if not isinstance(p, (EvaluationPlugin, Clock, PeriodicEval))
        and any(callable(getattr(p, hook, None)) for hook in PROBED_HOOKS)
    ]
    if not called:
        return
    if callable(getattr(criterion, "set_class_counts", None)) and (
        getattr(criterion, "class_counts", None) is None
    ):
        criterion.set_class_counts([1] * int(getattr(strategy.model, "num_classes", 0) or 1))
    strategy.experience = experience
    strategy.is_training = True
    strategy.model.train()
    # What train() does before the first minibatch: grow a dynamic head (the copy's) to the labels
    try:
        strategy.model = strategy.model_adaptation()
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"model: cannot adapt to the first experience ({type(err).__name__}: "
            f"{_first_line(err)})"
        ) from None
    strategy.model.train()
    strategy.mbatch = mbatch

    changed: dict[str, str] = {}  # hook -> the last plugin that changed the batch / the logits

    def shapes() -> tuple:
        out = strategy.mb_output
        return (
            [(id(t), tuple(t.shape)) for t in strategy.mbatch],
            (id(out), tuple(out.shape)) if isinstance(out, torch.Tensor) else None,
        )

    def hook(name: str) -> None:
        for plugin in called:
            method = getattr(plugin, name, None)
            if not callable(method):
                continue
            where = _plugin_key(plugin, configured, criterion, kind)
            before = shapes()
            try:
                method(strategy)
            except Exception as err:  # noqa: BLE001  (whatever a plugin raises is its mistake)
                raise ConfigError(
                    f"{where}: {name} fails on one training batch of the first experience "
                    f"({type(err).__name__}: {_first_line(err)})"
                ) from None
            if shapes() != before:
                changed[name] = where
            if name == "before_backward":
                _check_loss(strategy.loss, f"{where}: {name}")

    with torch.enable_grad():  # as in training: a hook may need the graph (GSS backpropagates)
        for plugin in called:
            for name in _experience_hooks(plugin):
                where = _plugin_key(plugin, configured, criterion, kind)
                try:
                    getattr(plugin, name)(strategy)
                except Exception as err:  # noqa: BLE001
                    raise ConfigError(
                        f"{where}: {name} fails on the first experience "
                        f"({type(err).__name__}: {_first_line(err)})"
                    ) from None
        strategy.mb_output = None
        strategy.loss = strategy._make_empty_loss()
        hook("before_forward")
        try:
            strategy.mb_output = strategy.forward()
        except Exception as err:  # noqa: BLE001
            batch = [tuple(t.shape) for t in strategy.mbatch]
            where = changed.get("before_forward", "model")
            raise ConfigError(
                f"{where}: the model's forward fails on the batch {batch} left by before_forward "
                f"({_first_line(err)})"
            ) from None
        hook("after_forward")
        try:
            strategy.loss += strategy.criterion()
        except Exception as err:  # noqa: BLE001
            where = changed.get("after_forward") or changed.get("before_forward")
            where = f"{where}: cl_strategy.loss" if where else "cl_strategy.loss"
            raise ConfigError(
                f"{where} fails on the logits {tuple(strategy.mb_output.shape)} and targets "
                f"{tuple(strategy.mb_y.shape)} the plugins left ({_first_line(err)})"
            ) from None
        _check_loss(strategy.loss, "cl_strategy.loss")
        hook("before_backward")
