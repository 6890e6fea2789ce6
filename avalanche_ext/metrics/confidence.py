"""Novelty scores computed from a classifier's logits, the registry every novelty score joins
(:func:`register_novelty_score`; the feature-space scores live in :mod:`avalanche_ext.novelty`),
and the threshold that turns scores into a gate.

Every score follows one convention: HIGHER = MORE LIKELY NOVEL (a sample of an unseen class).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from avalanche_ext.losses.evidential import dirichlet_uncertainty

__all__ = [
    "NOVELTY_SCORERS",
    "NoveltyScorer",
    "calibrate_threshold",
    "energy_score",
    "entropy_score",
    "evidential_score",
    "msp_score",
    "register_novelty_score",
]


@dataclass(frozen=True)
class NoveltyScorer:
    """A registered score.

    Args:
        fn: the score function: ``fn(logits, temperature=T, **kwargs) -> [N]`` for a logit score,
            ``fn(logits, features, stats, temperature=T, **kwargs) -> [N]`` for a feature score.
        needs_features: True for feature-space scores (they need ``KnownClassStats``).
        reference: the paper whose definition it follows.
        transductive: the score of a sample depends on the other samples scored with it (it
            clusters them); the gate then scores its held-out known samples in the same call.
    """

    fn: Callable[..., torch.Tensor]
    needs_features: bool
    reference: str
    transductive: bool = False


NOVELTY_SCORERS: dict[str, NoveltyScorer] = {}
"""Score name -> :class:`NoveltyScorer` (the gate's ``score`` config key names one)."""


def register_novelty_score(
    name: str, needs_features: bool, reference: str, transductive: bool = False
):
    """Decorator registering ``fn`` under ``name`` in :data:`NOVELTY_SCORERS`."""

    def wrap(fn):
        if name in NOVELTY_SCORERS:
            raise KeyError(f"novelty score {name!r} is already registered")
        NOVELTY_SCORERS[name] = NoveltyScorer(fn, needs_features, reference, transductive)
        return fn

    return wrap


@register_novelty_score(
    "msp", needs_features=False, reference="Hendrycks & Gimpel, ICLR 2017 (1 - max softmax)"
)
def msp_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``1 - max_j softmax(logits / T)_j`` (Hendrycks & Gimpel 2017, negated): in ``[0, 1 - 1/K]``.

    Args:
        logits (Tensor): ``[N, K]``.
        temperature (float): softmax temperature ``T > 0``.

    Returns:
        Tensor: ``[N]`` scores.
    """
    return 1.0 - torch.softmax(logits / temperature, dim=1).amax(1)


@register_novelty_score("entropy", needs_features=False, reference="softmax entropy")
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


@register_novelty_score(
    "energy", needs_features=False, reference="Liu et al., NeurIPS 2020 (free energy)"
)
def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``-T * logsumexp(logits / T)`` (Liu et al. 2020): known samples have lower energy.

    Args:
        logits (Tensor): ``[N, K]``.
        temperature (float): temperature ``T > 0``.

    Returns:
        Tensor: ``[N]`` scores (unbounded).
    """
    return -temperature * torch.logsumexp(logits / temperature, dim=1)


@register_novelty_score(
    "evidential",
    needs_features=False,
    reference="Sensoy et al., NeurIPS 2018 (Dirichlet uncertainty)",
)
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
