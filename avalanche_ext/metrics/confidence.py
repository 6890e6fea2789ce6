"""Novelty scores computed from a classifier's logits, and the threshold that turns them into a gate.

Every score follows one convention: HIGHER = MORE LIKELY NOVEL (a sample of an unseen class).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from avalanche_ext.losses.evidential import dirichlet_uncertainty

__all__ = [
    "NOVELTY_SCORES",
    "msp_score",
    "entropy_score",
    "energy_score",
    "evidential_score",
    "novelty_score",
    "calibrate_threshold",
]


def msp_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``1 - max_j softmax(logits / T)_j`` (Hendrycks & Gimpel 2017, negated): in ``[0, 1 - 1/K]``.

    Args:
        logits (Tensor): ``[N, K]``.
        temperature (float): softmax temperature ``T > 0``.

    Returns:
        Tensor: ``[N]`` scores.
    """
    return 1.0 - torch.softmax(logits / temperature, dim=1).amax(1)


def entropy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(logits / T)``: in ``[0, log K]``.

    Args:
        logits (Tensor): ``[N, K]``.
        temperature (float): softmax temperature ``T > 0``.

    Returns:
        Tensor: ``[N]`` scores.
    """
    log_p = torch.log_softmax(logits / temperature, dim=1)
    return -(log_p.exp() * log_p).sum(1)


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``-T * logsumexp(logits / T)`` (Liu et al. 2020): known samples have lower energy.

    Args:
        logits (Tensor): ``[N, K]``.
        temperature (float): temperature ``T > 0``.

    Returns:
        Tensor: ``[N]`` scores (unbounded).
    """
    return -temperature * torch.logsumexp(logits / temperature, dim=1)


def evidential_score(
    logits: torch.Tensor, temperature: float = 1.0, evidence: str = "softplus"
) -> torch.Tensor:
    """Dirichlet uncertainty ``K / S`` of an evidential head (Sensoy et al. 2018): in ``(0, 1]``.

    Args:
        logits (Tensor): ``[N, K]`` outputs of a model trained with ``EvidentialLoss``.
        temperature (float): unused; accepted so that every score has the same signature.
        evidence (str): the logits -> evidence map the model was trained with.

    Returns:
        Tensor: ``[N]`` scores.
    """
    del temperature
    return dirichlet_uncertainty(logits, evidence=evidence)


NOVELTY_SCORES: dict[str, Callable[..., torch.Tensor]] = {
    "msp": msp_score,
    "entropy": entropy_score,
    "energy": energy_score,
    "evidential": evidential_score,
}


def novelty_score(
    logits: torch.Tensor, method: str = "msp", temperature: float = 1.0, **kwargs
) -> torch.Tensor:
    """Scores each row of ``logits`` with the named method; higher = more likely novel.

    Args:
        logits (Tensor): ``[N, K]`` classifier outputs (gradients are not tracked).
        method (str): a key of :data:`NOVELTY_SCORES` (``'msp'``, ``'entropy'``, ``'energy'``,
            ``'evidential'``).
        temperature (float): temperature ``T > 0`` (ignored by ``'evidential'``).
        **kwargs: extra arguments of the method (``evidence=`` for ``'evidential'``).

    Returns:
        Tensor: ``[N]`` float scores.

    Raises:
        ValueError: unknown method, non-positive temperature or logits not ``[N, K]``.
    """
    if method not in NOVELTY_SCORES:
        raise ValueError(
            f"unknown novelty score {method!r}; choose one of {sorted(NOVELTY_SCORES)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if logits.dim() != 2:
        raise ValueError(f"expected [N, K] logits, got shape {tuple(logits.shape)}")
    with torch.no_grad():
        return NOVELTY_SCORES[method](logits.float(), temperature=temperature, **kwargs)


def calibrate_threshold(
    known_scores: torch.Tensor | np.ndarray, target_known_recall: float = 0.95
) -> float:
    """Threshold on novelty scores that keeps at least ``target_known_recall`` of known samples out.

    The gate pools a sample when ``score > threshold`` (strictly). The threshold is the
    ``k``-th smallest known score with ``k = ceil(target * n)`` (numpy's ``'inverted_cdf'``
    quantile), so at least ``k`` known samples have ``score <= threshold`` and at most
    ``n - k <= (1 - target) * n`` are pooled. Tie convention: a sample whose score EQUALS the
    threshold is NOT pooled; with ties at the threshold the known recall can therefore exceed the
    target (never fall below it). ``target = 1`` returns the maximum known score (no known sample
    pooled).

    Args:
        known_scores (Tensor | ndarray): ``[n]`` novelty scores of samples known to be of seen
            classes (e.g. a held-out split of the labelled data).
        target_known_recall (float): fraction in ``(0, 1]`` of known samples to keep out of the pool.

    Returns:
        float: the threshold.

    Raises:
        ValueError: no scores, NaN scores, or a target outside ``(0, 1]``.
    """
    if not 0.0 < target_known_recall <= 1.0:
        raise ValueError(f"target_known_recall must be in (0, 1], got {target_known_recall}")
    if isinstance(known_scores, torch.Tensor):
        known_scores = known_scores.detach().cpu().numpy()
    scores = np.sort(np.asarray(known_scores, dtype=np.float64).ravel())
    if scores.size == 0:
        raise ValueError("calibrate_threshold needs at least one known score")
    if np.isnan(scores).any():
        raise ValueError("known_scores contain NaN")
    # The tolerance keeps e.g. 0.7 * 10 = 7.000000000000001 from rounding up to 8.
    k = max(1, math.ceil(target_known_recall * scores.size - 1e-9))
    return float(scores[k - 1])
