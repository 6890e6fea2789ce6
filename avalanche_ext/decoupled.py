"""Decoupled classifier learning (Kang et al., ICLR 2020): the maths of cRT, tau-normalisation and LWS.

The backbone is frozen after representation learning, so the classifier can be re-learned on
features extracted once; these functions work on ``(features, labels)`` and an ``nn.Linear``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from avalanche_ext.sampling import class_sampling_probabilities, sample_weights

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "balanced_feature_batches",
    "extract_dataset_features",
    "fit_classifier_rows",
    "fit_weight_scales",
    "tau_normalize",
]


def tau_normalize(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """``w_c / ||w_c|| ** tau`` for every row (class) ``c``: tau 0 keeps the weights, 1 gives unit
    norms, in between shrinks the large head-class norms towards the tail's."""
    norms = weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return weight / norms.pow(tau)


@torch.no_grad()
def extract_dataset_features(
    model: nn.Module, dataset, batch_size: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (the input of the final linear layer) and labels of a dataset, in eval mode, with
    the dataset's evaluation transform (Avalanche ``dataset.eval()``): no augmentation.

    One pass of :func:`avalanche_ext.plugin_helpers.dataset_outputs` (the batched data path when the
    data has one; every module's train/eval mode restored)."""
    from avalanche_ext.plugin_helpers import dataset_outputs  # noqa: PLC0415

    data = dataset.eval() if hasattr(dataset, "eval") else dataset
    out = dataset_outputs(model, data, device, batch_size)
    if out["features"] is None:
        raise TypeError(f"{type(model).__name__} keeps no last_features; use MMClassifier")
    return out["features"], out["targets"].long()


def balanced_feature_batches(
    labels: torch.Tensor, batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """One epoch of class-balanced minibatches: ``len(labels)`` indices drawn with replacement,
    each class equally likely (``p_c / n_c`` per sample), cut into batches."""
    counts = torch.bincount(labels[labels >= 0])
    weights = sample_weights(labels, class_sampling_probabilities(counts, 0.0))
    draw = torch.multinomial(weights, len(labels), replacement=True, generator=generator)
    return list(draw.split(batch_size))


def _present_rows(layer: nn.Linear, labels: torch.Tensor) -> torch.Tensor:
    """``[C]`` bool on the layer's device: the rows of the classes that occur in ``labels``."""
    present = torch.zeros(layer.out_features, dtype=torch.bool)
    present[torch.unique(labels[labels >= 0])] = True
    return present.to(layer.weight.device)


def _fit(
    params: list[nn.Parameter],
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    features: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    grad_mask: Callable[[], None] | None = None,
    loss_fn: LossFn = F.cross_entropy,
) -> list[float]:
    """SGD (momentum 0.9, cosine rate over all iterations) on class-balanced batches of
    ``loss_fn(logits, labels)`` (cross-entropy by default); the loss of each epoch is returned."""
    generator = torch.Generator().manual_seed(int(seed))
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps = epochs * max(1, -(-len(labels) // batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history = []
    for _ in range(epochs):
        total, seen = 0.0, 0
        for idx in balanced_feature_batches(labels.cpu(), batch_size, generator):
            idx = idx.to(features.device)
            loss = loss_fn(logits_fn(features[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            if grad_mask is not None:
                grad_mask()
            optimizer.step()
            schedule.step()
            total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
        history.append(total / max(seen, 1))
    return history


def fit_classifier_rows(
    layer: nn.Linear,
    features: torch.Tensor,
    labels: torch.Tensor,
    epochs: int = 10,
    lr: float = 0.1,
    batch_size: int = 128,
    weight_decay: float = 5e-4,
    reinit_std: float | None = 0.01,
    seed: int = 0,
    loss_fn: LossFn = F.cross_entropy,
) -> list[float]:
    """Classifier re-training (cRT): the rows of the classes present in ``labels`` are
    re-initialised (``N(0, reinit_std)``, bias 0; None keeps them) and re-learned on
    class-balanced batches with ``loss_fn`` (cross-entropy: cRT; the GML loss: GML re-training);
    the other rows (classes of earlier experiences, whose data is gone) stay fixed but still
    compete in the softmax. Changes ``layer`` in place.

    Returns:
        the training loss of each epoch.
    """
    device = layer.weight.device
    present = _present_rows(layer, labels)
    weight = layer.weight.detach().clone()
    bias = layer.bias.detach().clone() if layer.bias is not None else None
    if reinit_std is not None:
        weight[present] = (
            torch.randn(
                int(present.sum()), weight.shape[1], generator=torch.Generator().manual_seed(seed)
            ).to(weight)
            * reinit_std
        )
        if bias is not None:
            bias[present] = 0.0
    w = nn.Parameter(weight)
    b = nn.Parameter(bias) if bias is not None else None
    params = [w] + ([b] if b is not None else [])

    def mask() -> None:
        for p in params:
            p.grad[~present] = 0.0

    history = _fit(
        params,
        lambda x: F.linear(x, w, b),
        features.to(device),
        labels.to(device),
        epochs,
        lr,
        batch_size,
        weight_decay,
        seed,
        mask,
        loss_fn,
    )
    with torch.no_grad():
        layer.weight[present] = w.detach()[present]
        if b is not None:
            layer.bias[present] = b.detach()[present]
    return history


def fit_weight_scales(
    layer: nn.Linear,
    features: torch.Tensor,
    labels: torch.Tensor,
    epochs: int = 10,
    lr: float = 0.1,
    batch_size: int = 128,
    seed: int = 0,
) -> torch.Tensor:
    """Learnable weight scaling (LWS): one factor ``f_c`` per class (start 1), learned on
    class-balanced batches with the weights fixed, then folded into the layer
    (``w_c <- f_c w_c``, ``b_c <- f_c b_c``). Only classes present in ``labels`` are scaled.

    Returns:
        the factors ``f`` (``[C]``).
    """
    device = layer.weight.device
    present = _present_rows(layer, labels)
    scales = nn.Parameter(torch.ones(layer.out_features, device=device))
    weight = layer.weight.detach()
    bias = layer.bias.detach() if layer.bias is not None else None

    def mask() -> None:
        scales.grad[~present] = 0.0

    _fit(
        [scales],
        lambda x: F.linear(x, weight, bias) * scales,
        features.to(device),
        labels.to(device),
        epochs,
        lr,
        batch_size,
        0.0,
        seed,
        mask,
    )
    factors = scales.detach()
    with torch.no_grad():
        layer.weight.mul_(factors[:, None])
        if layer.bias is not None:
            layer.bias.mul_(factors)
    return factors
