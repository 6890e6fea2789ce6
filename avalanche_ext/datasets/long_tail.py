"""Per-class image counts of a long-tailed training set (CIFAR-LT style), as pure functions.

``long_tail_counts`` turns (classes, n_max, profile, ratio) into counts; profiles live in a registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from avalanche_ext.errors import ConfigError

__all__ = [
    "IMBALANCE_PROFILES",
    "exp_profile",
    "long_tail_counts",
    "none_profile",
    "normalize_imbalance_ratio",
    "register_imbalance_profile",
    "step_profile",
]

Profile = Callable[[int, int, float, float], list[int]]

IMBALANCE_PROFILES: dict[str, Profile] = {}
"""``imbalance_type`` -> ``f(num_classes, n_max, imbalance_ratio, step_fraction) -> counts``
(``imbalance_ratio`` is always ``n_min / n_max`` in ``(0, 1]`` there); fill it with
:func:`register_imbalance_profile`."""


def register_imbalance_profile(name: str) -> Callable[[Profile], Profile]:
    """Decorator: registers a profile function under ``name`` (the ``imbalance_type`` value)."""

    def register(fn: Profile) -> Profile:
        IMBALANCE_PROFILES[name] = fn
        return fn

    return register


# Floor with a little slack so that 500 * 0.1 stays 50 despite float error (LDAM's int() floors).
_SLACK = 1e-6


def _at_least_one(value: float) -> int:
    return max(1, math.floor(value + _SLACK))


@register_imbalance_profile("exp")
def exp_profile(
    num_classes: int, n_max: int, imbalance_ratio: float, step_fraction: float
) -> list[int]:
    """Exponential decay: ``n_c = floor(n_max * rho ** (c / (C - 1)))``, ``c = 0..C-1``."""
    if num_classes == 1:
        return [n_max]
    return [
        _at_least_one(n_max * imbalance_ratio ** (c / (num_classes - 1)))
        for c in range(num_classes)
    ]


@register_imbalance_profile("step")
def step_profile(
    num_classes: int, n_max: int, imbalance_ratio: float, step_fraction: float
) -> list[int]:
    """Two levels: the first ``floor(mu * C)`` classes keep ``n_max``, the rest ``floor(n_max * rho)``."""
    num_head = math.floor(step_fraction * num_classes + _SLACK)
    tail = _at_least_one(n_max * imbalance_ratio)
    return [n_max] * num_head + [tail] * (num_classes - num_head)


@register_imbalance_profile("none")
def none_profile(
    num_classes: int, n_max: int, imbalance_ratio: float, step_fraction: float
) -> list[int]:
    """Balanced: every class keeps ``n_max`` (same as any profile with ``imbalance_ratio=1``)."""
    return [n_max] * num_classes


def normalize_imbalance_ratio(imbalance_ratio: float, key: str = "scenario") -> float:
    """``n_min / n_max`` in ``(0, 1]`` from either spelling of the imbalance.

    The long-tail papers write the imbalance as ``rho = n_max / n_min`` (100, 50, 10); the
    project's source documents write ``n_min / n_max`` (0.01, 0.02, 0.1). A value above 1 and a
    value below 1 cannot mean the same spelling, so both are accepted: 100 and 0.01 are the same
    long tail, 1 is balanced.

    Args:
        imbalance_ratio: ``n_max / n_min`` (>= 1) or ``n_min / n_max`` (<= 1).
        key: config key prefix named in errors.

    Raises:
        ConfigError: not a positive number.
    """
    if (
        isinstance(imbalance_ratio, bool)
        or not isinstance(imbalance_ratio, (int, float))
        or not math.isfinite(imbalance_ratio)
        or imbalance_ratio <= 0
    ):
        raise ConfigError(
            f"{key}.imbalance_ratio: expected a positive number (100 or 0.01 mean the same "
            f"long tail), got {imbalance_ratio!r}"
        )
    ratio = float(imbalance_ratio)
    return 1.0 / ratio if ratio > 1 else ratio


def long_tail_counts(
    num_classes: int,
    n_max: int,
    imbalance_type: str = "exp",
    imbalance_ratio: float = 0.01,
    step_fraction: float = 0.5,
    key: str = "scenario",
) -> list[int]:
    """Training images per class, from the most to the least frequent class.

    Counts never drop below one image. Examples: 80 classes, ``n_max=500``, ``'exp'`` with
    ``rho=0.01`` -> ``[500, ..., 5]``; ``'step'`` with ``rho=0.1, mu=0.5`` -> 40 x 500 then 40 x 50.

    Args:
        num_classes: number of classes ``C``.
        n_max: images of the most frequent class.
        imbalance_type: ``'exp'``, ``'step'`` or ``'none'`` (a key of :data:`IMBALANCE_PROFILES`).
        imbalance_ratio: ``n_min / n_max`` (0.01) or ``n_max / n_min`` (100): the same long tail
            (see :func:`normalize_imbalance_ratio`); 1 is balanced.
        step_fraction: ``mu``, the share of classes that keep ``n_max`` in the ``'step'`` profile.
        key: config key prefix named in errors.

    Raises:
        ConfigError: unknown profile or a parameter out of range.
    """
    if imbalance_type not in IMBALANCE_PROFILES:
        raise ConfigError(
            f"{key}.imbalance_type: unknown {imbalance_type!r}; choose one of "
            f"{', '.join(repr(k) for k in IMBALANCE_PROFILES)}"
        )
    imbalance_ratio = normalize_imbalance_ratio(imbalance_ratio, key)
    if not 0 <= step_fraction <= 1:
        raise ConfigError(f"{key}.step_fraction: must be in [0, 1], got {step_fraction}")
    if num_classes < 1 or n_max < 1:
        raise ConfigError(
            f"{key}: long tail needs at least one class and one image per class "
            f"(got {num_classes} classes, n_max={n_max})"
        )
    profile = IMBALANCE_PROFILES[imbalance_type]
    return profile(int(num_classes), int(n_max), float(imbalance_ratio), float(step_fraction))
