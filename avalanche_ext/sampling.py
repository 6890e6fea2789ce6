"""Re-sampling schemes of long-tail training (Kang et al., ICLR 2020) as pure functions.

A scheme gives each class a sampling probability ``p_c ∝ n_c ** q``; a sample of class ``c`` is
drawn with probability ``p_c / n_c``. ``q = 1`` is instance-balanced (the usual shuffled loader),
``q = 0`` class-balanced, ``q = 1/2`` square-root; progressive sampling moves from instance- to
class-balanced over the epochs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "SAMPLING_SCHEMES",
    "class_sampling_probabilities",
    "deferred_epoch",
    "progressive_probabilities",
    "register_sampling_scheme",
    "sample_weights",
    "weighted_loader",
]

Scheme = Callable[[torch.Tensor, int, int], torch.Tensor]
SAMPLING_SCHEMES: dict[str, Scheme] = {}
"""``mode`` -> ``f(counts, epoch, num_epochs) -> class probabilities`` (sum 1 over classes with
samples); fill it with :func:`register_sampling_scheme`."""


def register_sampling_scheme(name: str) -> Callable[[Scheme], Scheme]:
    """Decorator: registers a sampling scheme under ``name`` (the plugin's ``mode``)."""

    def register(fn: Scheme) -> Scheme:
        SAMPLING_SCHEMES[name] = fn
        return fn

    return register


def class_sampling_probabilities(counts: torch.Tensor, q: float) -> torch.Tensor:
    """``p_c = n_c ** q / sum_k n_k ** q`` over the classes with samples (0 for the others)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    present = counts > 0
    p = torch.zeros_like(counts)
    p[present] = counts[present].pow(q)
    return p / p.sum()


def progressive_probabilities(counts: torch.Tensor, epoch: int, num_epochs: int) -> torch.Tensor:
    """``p(t) = (1 - t/T) p_instance + (t/T) p_class_balanced`` with ``t = epoch`` (0-based),
    ``T = num_epochs - 1``: instance-balanced at the first epoch, class-balanced at the last."""
    t = epoch / max(num_epochs - 1, 1)
    return (1 - t) * class_sampling_probabilities(counts, 1.0) + t * class_sampling_probabilities(
        counts, 0.0
    )


@register_sampling_scheme("instance")
def _instance(counts: torch.Tensor, epoch: int, num_epochs: int) -> torch.Tensor:
    return class_sampling_probabilities(counts, 1.0)


@register_sampling_scheme("class_balanced")
def _class_balanced(counts: torch.Tensor, epoch: int, num_epochs: int) -> torch.Tensor:
    return class_sampling_probabilities(counts, 0.0)


@register_sampling_scheme("square_root")
def _square_root(counts: torch.Tensor, epoch: int, num_epochs: int) -> torch.Tensor:
    return class_sampling_probabilities(counts, 0.5)


register_sampling_scheme("progressive")(progressive_probabilities)


def sample_weights(targets: torch.Tensor, class_probabilities: torch.Tensor) -> torch.Tensor:
    """Per-sample draw probabilities ``p_c / n_c`` (sum 1), for ``torch.multinomial`` or
    ``WeightedRandomSampler``. Samples with a negative label get 0."""
    targets = torch.as_tensor(targets, dtype=torch.long)
    valid = targets >= 0
    counts = torch.bincount(targets[valid], minlength=class_probabilities.numel()).double()
    per_class = torch.where(counts > 0, class_probabilities.double() / counts.clamp_min(1), 0.0)
    weights = torch.zeros(targets.numel(), dtype=torch.float64)
    weights[valid] = per_class[targets[valid]]
    return weights / weights.sum()


def deferred_epoch(start_epoch: int | float, num_epochs: int, key: str = "start_epoch") -> int:
    """The 0-based epoch at which a deferred method (DRW, DRS) switches on.

    Args:
        start_epoch: an epoch number (``160`` of 200, the papers' recipe) or a fraction of the
            experience's epochs in ``(0, 1)`` (``0.8``: the same switch point at any budget).
        num_epochs: training epochs of the experience.
        key: config key named in errors.
    """
    if isinstance(start_epoch, bool) or not isinstance(start_epoch, (int, float)):
        raise ValueError(f"{key}: expected an epoch or a fraction, got {start_epoch!r}")
    if isinstance(start_epoch, float) and 0 < start_epoch < 1:
        # Never past the last epoch: at 2 epochs, 0.8 -> epoch 1 (a plain round(1.6) = 2 would
        # never switch, and the deferred method would silently be the baseline).
        return min(int(round(start_epoch * num_epochs)), max(num_epochs - 1, 0))
    if start_epoch < 0 or start_epoch != int(start_epoch):
        raise ValueError(
            f"{key}: expected an epoch >= 0 or a fraction in (0, 1), got {start_epoch}"
        )
    return int(start_epoch)


def weighted_loader(dataset, weights: torch.Tensor, batch_size: int, num_samples: int, seed: int):
    """A DataLoader drawing ``num_samples`` samples with replacement, sample ``i`` with
    probability ``weights[i]`` (Avalanche's collate function kept)."""
    from torch.utils.data import DataLoader, WeightedRandomSampler  # noqa: PLC0415

    generator = torch.Generator().manual_seed(int(seed))
    sampler = WeightedRandomSampler(
        weights, num_samples=num_samples, replacement=True, generator=generator
    )
    collate = getattr(dataset, "collate_fn", None)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate)
