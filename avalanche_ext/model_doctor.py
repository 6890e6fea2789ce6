"""Model Doctor's torch machinery: layer outputs captured by hooks, kernel sifting over a training
set and the constrained fine-tuning loop. The maths is in :mod:`avalanche_ext.losses.model_doctor`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from avalanche_ext.data.batched import eval_batches, model_memory_format
from avalanche_ext.errors import ConfigError
from avalanche_ext.losses.model_doctor import (
    channel_constraint_loss,
    channel_scores,
    class_channel_masks,
    combine_masks,
    high_confidence_correct,
)
from avalanche_ext.plugin_helpers import eval_mode

__all__ = [
    "SiftResult",
    "capture_outputs",
    "constrained_finetune",
    "irrelevant_gradient_mass",
    "resolve_layers",
    "sift_kernels",
    "training_batches",
]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def resolve_layers(
    model: nn.Module, names: Sequence[str], key: str = "cl_strategy.plugins.layers"
) -> dict[str, nn.Module]:
    """``{name: module}`` from ``model.named_modules()``; an unknown name is a :class:`ConfigError`
    naming ``key`` and listing a few names the model has."""
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or name == "":
            known = [n for n in modules if n and n.count(".") <= 1][:12]
            raise ConfigError(f"{key}: the model has no layer {name!r} (some it has: {known})")
    return {name: modules[name] for name in names}


@contextlib.contextmanager
def capture_outputs(
    layers: dict[str, nn.Module], noise_std: float = 0.0
) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that keep each layer's output (the tensor later layers use, so gradients with
    respect to it are the Model Doctor gradients). ``noise_std > 0`` adds Gaussian noise of that
    many standard deviations of the batch's output while the layer is in training mode (the
    source document's noise option)."""
    outputs: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable:
        def keep(module: nn.Module, args, out: torch.Tensor):
            if noise_std > 0 and module.training:
                out = out + noise_std * out.detach().std() * torch.randn_like(out)
            outputs[name] = out
            return out

        return keep

    handles = [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def training_batches(
    dataset, batch_size: int, device: torch.device | str, model: nn.Module
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` of a TRAINING dataset in order with its evaluation transform: the only
    data kernel sifting reads (the source document warns against sifting on test images)."""
    data = dataset.eval() if hasattr(dataset, "eval") else dataset
    for batch in eval_batches(data, batch_size, device, model_memory_format(model)):
        yield batch[0], torch.as_tensor(batch[1]).long().to(batch[0].device)


@dataclass
class SiftResult:
    """What kernel sifting found.

    Attributes:
        masks: layer name -> ``[C, K]`` bool, True = relevant to the class.
        images_per_class: ``[C]`` high-confidence correct images used per class.
    """

    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    images_per_class: torch.Tensor = field(default_factory=lambda: torch.zeros(0))


def _batch_scores(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, layers: dict, scores: Sequence[str]
) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """Logits and ``{layer: [per-score [B, K]]}`` of one batch (eval mode: images independent)."""
    with torch.enable_grad(), capture_outputs(layers) as outs:
        logits = model(x)
        acts = [outs[name] for name in layers]
        grads = torch.autograd.grad(logits.gather(1, y.view(-1, 1)).sum(), acts)
    per_layer = {
        name: [channel_scores(a.detach(), g, s).float().cpu() for s in scores]
        for name, a, g in zip(layers, acts, grads)
    }
    return logits.detach().float().cpu(), per_layer


def sift_kernels(
    model: nn.Module,
    batches: Batches,
    layers: dict[str, nn.Module],
    num_classes: int,
    scores: Sequence[str] = ("gradient",),
    combine: str = "intersection",
    confidence: float = 0.9,
    max_per_class: int | None = None,
) -> SiftResult:
    """Model Doctor's kernel sifting: the class score's gradient at each layer, per image, for the
    images the model classifies correctly with probability ``>= confidence``; per class, the
    channels above the class's mean score (one mask per score, then ``combine``).

    Args:
        model: the trained model (put in eval mode here, modes restored).
        batches: ``(images, labels)`` of the training set (:func:`training_batches`).
        layers: from :func:`resolve_layers`.
        num_classes: rows of the masks.
        scores: channel scores of :data:`avalanche_ext.losses.model_doctor.CHANNEL_SCORES`.
        combine: ``'intersection'`` or ``'union'`` of the scores' masks.
        confidence: minimum softmax probability of the true class.
        max_per_class: at most this many images per class, the most confident (None: all).
    """
    logits, labels, per_layer = [], [], {name: [[] for _ in scores] for name in layers}
    with eval_mode(model):
        for x, y in batches:
            out, batch_scores = _batch_scores(model, x, y, layers, scores)
            logits.append(out)
            labels.append(y.cpu())
            for name, values in batch_scores.items():
                for store, value in zip(per_layer[name], values):
                    store.append(value)
    if not logits:
        return SiftResult({n: torch.ones(num_classes, 0, dtype=torch.bool) for n in layers})
    labels_all = torch.cat(labels)
    keep = high_confidence_correct(torch.cat(logits), labels_all, confidence, max_per_class)
    kept = labels_all[keep]
    result = SiftResult(images_per_class=torch.bincount(kept, minlength=num_classes))
    for name in layers:
        masks = [
            class_channel_masks(torch.cat(s)[keep], kept, num_classes)[0] for s in per_layer[name]
        ]
        result.masks[name] = masks[0] if len(masks) == 1 else combine_masks(masks, combine)
    return result


def _constraint(
    logits: torch.Tensor,
    y: torch.Tensor,
    outs: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    mode: str,
    create_graph: bool,
) -> torch.Tensor:
    """The channel loss summed over the constrained layers for one batch."""
    names = list(masks)
    grads = torch.autograd.grad(
        logits.gather(1, y.view(-1, 1)).sum(),
        [outs[n] for n in names],
        create_graph=create_graph,
    )
    return sum(channel_constraint_loss(g, y, masks[n], mode) for n, g in zip(names, grads))


def _step(optimizer: torch.optim.Optimizer, schedule, loss: torch.Tensor) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()


def constrained_finetune(
    model: nn.Module,
    epoch_batches: Callable[[int], Batches],
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    layers: dict[str, nn.Module],
    masks: dict[str, torch.Tensor],
    *,
    epochs: int,
    lr: float,
    loss_scale: float = 1.0,
    constraint: str = "abs",
    noise_std: float = 0.0,
    weight_decay: float = 2e-4,
) -> list[float]:
    """Fine-tunes every parameter on ``criterion + loss_scale * channel loss`` (SGD, momentum 0.9,
    cosine rate from ``lr``). ``loss_scale = 0`` is the same fine-tuning without the constraint (no
    second-order pass): the fair baseline the source document's ablation asks for.

    Args:
        model: trained in place (train mode during, modes restored).
        epoch_batches: ``epoch -> (images, labels)`` batches of the training set.
        criterion: the strategy's loss.
        layers: the constrained layers.
        masks: layer name -> ``[C, K]`` relevant channels.
        epochs: fine-tuning epochs.
        lr: initial learning rate (small: the paper's 1e-3 to 1e-5).
        loss_scale: the channel loss's weight (>= 0).
        constraint: a name in ``CHANNEL_CONSTRAINTS`` (``'abs'``, ``'positive'``,
            ``'positive_all_negative'``).
        noise_std: see :func:`capture_outputs`.
        weight_decay: SGD weight decay.

    Returns:
        the mean total loss of each epoch.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    first = list(epoch_batches(0)) if epochs else []
    steps = max(1, epochs * len(first))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))
    )
    history: list[float] = []
    modes = {name: m.training for name, m in model.named_modules()}
    model.train()
    try:
        for epoch in range(epochs):
            total, seen = 0.0, 0
            for x, y in first if epoch == 0 else epoch_batches(epoch):
                with capture_outputs(layers, noise_std) as outs:
                    logits = model(x)
                loss = criterion(logits, y)
                if loss_scale > 0:
                    loss = loss + loss_scale * _constraint(logits, y, outs, masks, constraint, True)
                _step(optimizer, schedule, loss)
                total, seen = total + float(loss.detach()) * len(y), seen + len(y)
            history.append(total / max(seen, 1))
    finally:
        for name, m in model.named_modules():
            m.train(modes.get(name, True))
    return history


def irrelevant_gradient_mass(
    model: nn.Module,
    batches: Batches,
    layers: dict[str, nn.Module],
    masks: dict[str, torch.Tensor],
    mode: str = "abs",
) -> float:
    """The channel loss of :func:`constrained_finetune` averaged over images, in eval mode: how much
    of each image's class score flows through channels sifted as irrelevant to its class."""
    total, seen = 0.0, 0
    with eval_mode(model), torch.enable_grad():
        for x, y in batches:
            with capture_outputs(layers) as outs:
                logits = model(x)
            value = _constraint(logits, y, outs, masks, mode, False)
            total, seen = total + float(value) * len(y), seen + len(y)
    return total / max(seen, 1)
