"""The build-time probe: one small batch through model and criterion before anything is written.

A head that does not fit the backbone, a loss that does not fit the logits or images the backbone
cannot read would otherwise surface in the first training step, as a long traceback after the run
folder was created. The probe runs a train-mode forward and the loss on two training samples (no
backward, no optimizer step) and restores everything it touched: parameters, buffers (BatchNorm
running statistics), train/eval modes and the RNG states, so a probed run trains exactly as an
unprobed one.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from avalanche_ext.checkpoint import get_rng_state, set_rng_state
from avalanche_ext.errors import ConfigError

__all__ = ["probe_batch", "probe_model"]


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
