"""Helpers several plugins need (so no plugin file imports another): experience kinds, frozen
teachers, eval-mode forward passes over a dataset that yield logits, features and sample indices.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from avalanche_ext.data.batched import eval_batches, model_memory_format
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.scenario import UNLABELED

__all__ = [
    "dataset_outputs",
    "eval_mode",
    "frozen_copy",
    "is_discovery_experience",
    "iter_outputs",
    "note_labeled_classes",
    "plugin_results",
]


def is_discovery_experience(experience: Any) -> bool:
    """Whether every target of the experience is ``UNLABELED`` (a hidden-label discovery experience).

    Args:
        experience: an Avalanche experience (or None).
    """
    dataset = getattr(experience, "dataset", None)
    targets = getattr(dataset, "targets", None)
    if targets is None or len(dataset) == 0:
        return False
    uniques = getattr(targets, "uniques", None)
    values = uniques if uniques is not None else set(torch.as_tensor(list(targets)).tolist())
    return {int(v) for v in values} == {UNLABELED}


def note_labeled_classes(strategy: Any) -> None:
    """Raises ``strategy.ncd.num_known_classes`` to cover the current labeled experience's labels.

    Idempotent (a max), so every discovery plugin may call it after a labeled experience.
    """
    experience = strategy.experience
    classes = getattr(experience, "classes_in_this_experience", None)
    if classes is None:
        classes = experience.dataset.targets.uniques
    labels = [int(c) for c in classes if int(c) >= 0]
    if labels:
        state = discovery_state(strategy)
        state.num_known_classes = max(int(state.num_known_classes), max(labels) + 1)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Puts ``model`` in eval mode and restores every submodule's own mode afterwards."""
    modes = {name: m.training for name, m in model.named_modules()}
    model.eval()
    try:
        yield model
    finally:
        for name, m in model.named_modules():
            m.train(modes.get(name, True))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with ``requires_grad=False`` everywhere.

    Tensors cached on modules by the last forward (e.g. ``last_features``) are part of the autograd
    graph and cannot be deep-copied; they are copied detached.
    """
    memo: dict[int, Any] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    teacher = copy.deepcopy(model, memo)
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def _batches(
    dataset: Any, batch_size: int, device: torch.device | str, model: nn.Module
) -> Iterator[tuple]:
    """``(x on device, y, sample indices)`` batches in dataset order: the batched in-memory path
    (no per-sample Python) when the data has one, else a per-sample DataLoader."""
    position = 0
    for batch in eval_batches(dataset, batch_size, device, model_memory_format(model)):
        x = batch[0].to(device, non_blocking=True)
        if len(batch) >= 4:
            indices = torch.as_tensor(batch[2]).long().cpu()
        else:
            indices = torch.arange(position, position + len(x))
        position += len(x)
        yield x, torch.as_tensor(batch[1]).cpu(), indices


def iter_outputs(
    model: nn.Module,
    dataset: Any,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    flip: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Eval-mode forward passes over ``dataset`` (in its current transform group), in order.

    Items ``(x, y, sample_index, t)`` give their own sample index; ``(x, y, t)`` items are numbered
    by position. With ``flip`` the logits and features are the mean over the image and its
    horizontal mirror (test-time augmentation: less noisy features for scoring and clustering).

    Yields:
        ``(sample_indices [B], targets [B], logits [B, C], features [B, D] | None)`` on the CPU.
    """
    with eval_mode(model), torch.inference_mode():
        for x, y, indices in _batches(dataset, batch_size, device, model):
            logits = model(x).float().cpu().clone()
            feats = getattr(model, "last_features", None)
            feats = None if feats is None else feats.detach().float().cpu().clone()
            if flip:
                logits = (logits + model(x.flip(-1)).float().cpu()) / 2
                mirrored = getattr(model, "last_features", None)
                if feats is not None and mirrored is not None:
                    feats = (feats + mirrored.detach().float().cpu()) / 2
            yield indices, y, logits, feats


def dataset_outputs(
    model: nn.Module,
    dataset: Any,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    flip: bool = False,
) -> dict[str, torch.Tensor | None]:
    """All of :func:`iter_outputs` concatenated: ``indices``, ``targets``, ``logits``, ``features``."""
    parts = list(iter_outputs(model, dataset, device, batch_size, flip))
    if not parts:
        empty = torch.empty(0)
        return {"indices": empty.long(), "targets": empty.long(), "logits": empty, "features": None}
    feats = [p[3] for p in parts]
    return {
        "indices": torch.cat([p[0] for p in parts]),
        "targets": torch.cat([p[1] for p in parts]),
        "logits": torch.cat([p[2] for p in parts]),
        "features": None if any(f is None for f in feats) else torch.cat(feats),
    }


def plugin_results(strategy: Any) -> dict[str, Any]:
    """``{key: facts}`` from every plugin with a ``results_section() -> (key, facts)`` method: how a
    plugin adds its own block to ``results.json`` (the report draws what it recognises)."""
    sections: dict[str, Any] = {}
    for plugin in getattr(strategy, "plugins", []):
        section = getattr(plugin, "results_section", None)
        if callable(section):
            key, facts = section()
            sections[key] = facts
    return sections
