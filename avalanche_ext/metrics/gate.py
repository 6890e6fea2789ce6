"""Quality of the confidence gate that pools likely-novel samples: precision, recall, AUROC, histograms.

Evaluation only: the true novel/known flags come from the scenario's hidden labels, never the plugin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

__all__ = ["gate_metrics", "score_histogram"]

ArrayLike = torch.Tensor | np.ndarray | list


def _numpy(values: ArrayLike, dtype: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).ravel()


def gate_metrics(pooled_mask: ArrayLike, is_novel: ArrayLike, scores: ArrayLike) -> dict[str, Any]:
    """How well the pooled set matches the truly novel samples.

    Args:
        pooled_mask (Tensor | ndarray | list): ``[N]`` bool, True for samples the gate pooled.
        is_novel (Tensor | ndarray | list): ``[N]`` bool, True for samples of novel classes.
        scores (Tensor | ndarray | list): ``[N]`` novelty scores (higher = more novel).

    Returns:
        dict: ``precision`` (novel pooled / pooled; None when nothing is pooled), ``recall``
        (novel pooled / novel; None when there is no novel sample), ``auroc`` (ROC AUC of
        ``scores`` for separating novel from known, threshold-free; None unless both kinds are
        present), ``num_pooled`` and ``num_novel`` (ints). Floats are plain Python floats.

    Raises:
        ValueError: the three inputs have different lengths.
    """
    pooled = _numpy(pooled_mask, bool)
    novel = _numpy(is_novel, bool)
    score = _numpy(scores, np.float64)
    if not pooled.size == novel.size == score.size:
        raise ValueError(
            f"lengths differ: pooled_mask {pooled.size}, is_novel {novel.size}, scores {score.size}"
        )
    num_pooled = int(pooled.sum())
    num_novel = int(novel.sum())
    hits = int((pooled & novel).sum())
    both_kinds = 0 < num_novel < novel.size
    return {
        "precision": hits / num_pooled if num_pooled else None,
        "recall": hits / num_novel if num_novel else None,
        "auroc": float(roc_auc_score(novel, score)) if both_kinds else None,
        "num_pooled": num_pooled,
        "num_novel": num_novel,
    }


def score_histogram(scores: ArrayLike, is_novel: ArrayLike, bins: int = 20) -> dict[str, list]:
    """Histograms of known and novel scores over shared bin edges (for plotting the gate).

    Args:
        scores (Tensor | ndarray | list): ``[N]`` novelty scores.
        is_novel (Tensor | ndarray | list): ``[N]`` bool, True for novel samples.
        bins (int): number of equal-width bins spanning the range of all scores.

    Returns:
        dict: ``bins`` (``bins + 1`` edges), ``known`` and ``novel`` (``bins`` counts each);
        plain lists, JSON-ready.

    Raises:
        ValueError: lengths differ or ``bins < 1``.
    """
    score = _numpy(scores, np.float64)
    novel = _numpy(is_novel, bool)
    if score.size != novel.size:
        raise ValueError(f"lengths differ: scores {score.size}, is_novel {novel.size}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = np.histogram_bin_edges(score, bins=bins)
    known_counts, _ = np.histogram(score[~novel], bins=edges)
    novel_counts, _ = np.histogram(score[novel], bins=edges)
    return {
        "bins": [float(e) for e in edges],
        "known": [int(c) for c in known_counts],
        "novel": [int(c) for c in novel_counts],
    }
