"""Model Doctor's maths (Feng et al., AAAI 2022): per-image channel scores, per-class kernel sifting
and the channel loss that suppresses a class's irrelevant channels, as pure tensor functions.

The torch machinery (hooks, passes over a dataset, the fine-tuning loop) is in
:mod:`avalanche_ext.model_doctor`; the plugin in ``strategies/model_doctor.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = [
    "CHANNEL_CONSTRAINTS",
    "CHANNEL_SCORES",
    "channel_constraint_loss",
    "channel_scores",
    "class_channel_masks",
    "combine_masks",
    "high_confidence_correct",
    "register_channel_constraint",
    "register_channel_score",
]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CHANNEL_SCORES: dict[str, ScoreFn] = {}


def register_channel_score(name: str) -> Callable[[ScoreFn], ScoreFn]:
    """Registers ``fn(activation, gradient) -> [N, K, ...]`` under ``name``: the per-position value
    whose spatial mean is a channel's score (the sifting variants of the source document)."""

    def wrap(fn: ScoreFn) -> ScoreFn:
        CHANNEL_SCORES[name] = fn
        return fn

    return wrap


@register_channel_score("gradient")
def _gradient(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    return gradient.abs()


@register_channel_score("positive_gradient")
def _positive_gradient(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    return gradient.clamp_min(0.0)


@register_channel_score("positive_activation_gradient")
def _positive_activation_gradient(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    return gradient.abs() * (activation > 0)


@register_channel_score("positive_activation")
def _positive_activation(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    return activation.clamp_min(0.0)


def _spatial_mean(values: torch.Tensor) -> torch.Tensor:
    """``[N, K, ...]`` -> ``[N, K]``: the mean over every dimension after the channel one (a fully
    connected layer's ``[N, K]`` output is its own score)."""
    return values.flatten(2).mean(2) if values.dim() > 2 else values


def channel_scores(activation: torch.Tensor, gradient: torch.Tensor, score: str) -> torch.Tensor:
    """Per-image, per-channel score ``[N, K]`` of one layer.

    ``gradient`` is the gradient of each image's own class score ``z_{y}`` with respect to the layer
    output ``activation`` (both ``[N, K, H, W]`` or ``[N, K]``). Scores (spatial means):
    ``'gradient'`` ``|g|`` (the paper's), ``'positive_gradient'`` ``max(g, 0)``,
    ``'positive_activation_gradient'`` ``|g|`` where ``a > 0``, ``'positive_activation'``
    ``max(a, 0)`` (activations instead of gradients).

    Args:
        activation: the layer's output.
        gradient: ``d z_y / d activation``.
        score: a name in :data:`CHANNEL_SCORES`.
    """
    if score not in CHANNEL_SCORES:
        raise KeyError(f"unknown channel score {score!r}; known: {sorted(CHANNEL_SCORES)}")
    return _spatial_mean(CHANNEL_SCORES[score](activation, gradient))


def class_channel_masks(
    scores: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel sifting: for each class, the channels whose mean score over the class's images is
    above the mean over all channels of that class (Model Doctor's "above the average gradient").

    Args:
        scores: ``[N, K]`` per-image channel scores (:func:`channel_scores`).
        labels: ``[N]`` class of each image.
        num_classes: ``C``.

    Returns:
        ``(masks [C, K] bool, has_images [C] bool)``; a class without images gets an all-True row
        (nothing is constrained for it).
    """
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(scores.dtype)  # [N, C]
    counts = onehot.sum(0)
    per_class = onehot.T @ scores / counts.clamp_min(1.0)[:, None]  # [C, K]
    masks = per_class > per_class.mean(1, keepdim=True)
    has_images = counts > 0
    masks[~has_images] = True
    return masks, has_images


def combine_masks(masks: Sequence[torch.Tensor], mode: str = "intersection") -> torch.Tensor:
    """Combines the masks of several scores: ``'intersection'`` (a channel relevant to every score)
    or ``'union'`` (to any)."""
    stacked = torch.stack(list(masks))
    if mode == "intersection":
        return stacked.all(0)
    if mode == "union":
        return stacked.any(0)
    raise ValueError(f"combine must be 'intersection' or 'union', got {mode!r}")


def high_confidence_correct(
    logits: torch.Tensor, labels: torch.Tensor, threshold: float, max_per_class: int | None = None
) -> torch.Tensor:
    """Indices of the images predicted correctly with softmax probability ``>= threshold`` for their
    class, the most confident first within each class and at most ``max_per_class`` of each.

    Args:
        logits: ``[N, C]``.
        labels: ``[N]``.
        threshold: minimum probability of the true (= predicted) class.
        max_per_class: cap per class (None: all).
    """
    prob = logits.float().softmax(1)
    conf = prob.gather(1, labels.long().view(-1, 1)).squeeze(1)
    keep = (prob.argmax(1) == labels) & (conf >= threshold)
    chosen = []
    for c in torch.unique(labels[keep]).tolist():
        idx = torch.nonzero(keep & (labels == c)).squeeze(1)
        idx = idx[conf[idx].argsort(descending=True, stable=True)]
        chosen.append(idx if max_per_class is None else idx[:max_per_class])
    if not chosen:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(chosen).sort().values


ConstraintFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CHANNEL_CONSTRAINTS: dict[str, ConstraintFn] = {}


def register_channel_constraint(name: str) -> Callable[[ConstraintFn], ConstraintFn]:
    """Registers ``fn(g [N, K], irrelevant [N, K] 0/1) -> [N, K]``, the per-channel penalty of the
    spatially averaged class-score gradient ``g`` (the fine-tuning variants of the source document)."""

    def wrap(fn: ConstraintFn) -> ConstraintFn:
        CHANNEL_CONSTRAINTS[name] = fn
        return fn

    return wrap


@register_channel_constraint("abs")
def _abs(g: torch.Tensor, irrelevant: torch.Tensor) -> torch.Tensor:
    return g.abs() * irrelevant


@register_channel_constraint("positive")
def _positive(g: torch.Tensor, irrelevant: torch.Tensor) -> torch.Tensor:
    return g.clamp_min(0.0) * irrelevant


@register_channel_constraint("positive_all_negative")
def _positive_all_negative(g: torch.Tensor, irrelevant: torch.Tensor) -> torch.Tensor:
    # the document's variant 6: positive gradients on the irrelevant channels, negative ones on all
    return g.clamp_min(0.0) * irrelevant + (-g).clamp_min(0.0)


def channel_constraint_loss(
    gradient: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, mode: str = "abs"
) -> torch.Tensor:
    """Model Doctor's channel loss: the gradient mass of each image's class score on the channels
    sifted as irrelevant to that class, ``mean_i sum_k (1 - m_{y_i,k}) phi(mean_s g_{i,k,s})`` with
    ``phi = |.|`` (``'abs'``, the paper's) or ``max(., 0)`` (``'positive'``: only gradients that
    raise the class score through irrelevant channels are suppressed).
    ``'positive_all_negative'`` is the source document's sixth variant: positive gradients
    suppressed on the irrelevant channels and negative gradients on EVERY channel,
    ``mean_i sum_k [(1 - m_{y_i,k}) max(g, 0) + max(-g, 0)]``.

    Args:
        gradient: ``[N, K, ...]`` ``d z_{y_i} / d activation`` (with ``create_graph`` for training).
        labels: ``[N]``.
        masks: ``[C, K]`` bool, True = relevant (:func:`class_channel_masks`).
        mode: a name in :data:`CHANNEL_CONSTRAINTS` (``'abs'``, ``'positive'``,
            ``'positive_all_negative'``).
    """
    if mode not in CHANNEL_CONSTRAINTS:
        raise ValueError(f"constraint must be one of {sorted(CHANNEL_CONSTRAINTS)}, got {mode!r}")
    values = _spatial_mean(gradient)
    irrelevant = (~masks.to(gradient.device)[labels.long()]).to(values.dtype)  # [N, K]
    return CHANNEL_CONSTRAINTS[mode](values, irrelevant).sum(1).mean()
