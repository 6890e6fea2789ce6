"""The ``results.json["discovery"]`` block: old/new/all accuracy, cluster accuracy and gate quality.

Evaluation only: true labels come from the scenario's hidden labels, logged by the runner.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from avalanche_ext.metrics.clustering import cluster_accuracy, old_new_all_accuracy
from avalanche_ext.metrics.gate import gate_metrics, score_histogram

__all__ = ["CLUSTER_ACC_CONVENTION", "discovery_summary", "experience_summary"]

CLUSTER_ACC_CONVENTION = (
    "Hungarian accuracy of the training pseudo-labels over the pooled samples that are truly novel "
    "(one matching over all discovery experiences; pooled known-class samples are left out, they "
    "count against the gate's precision instead)"
)


def _array(values: Any, dtype: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).ravel()


def _clean(value: Any) -> Any:
    """NaN / inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def _known_set(known_classes: int | Iterable[int]) -> np.ndarray:
    if isinstance(known_classes, (int, np.integer)):
        return np.arange(int(known_classes))
    return _array(list(known_classes), np.int64)


def _pieces(entry: Mapping[str, Any], known: np.ndarray) -> dict[str, np.ndarray | float | None]:
    """Per-sample arrays of one discovery experience (those its log entry allows)."""
    true = _array(entry["true_labels"], np.int64)
    out: dict[str, Any] = {"true": true, "is_novel": ~np.isin(true, known)}
    if entry.get("pool_indices") is not None:
        pooled = np.zeros(true.size, dtype=bool)
        pooled[_array(entry["pool_indices"], np.int64)] = True
        out["pooled"] = pooled
    scores = entry.get("all_scores")
    if scores is not None:
        scores = _array(scores, np.float64)
        out["scores"] = scores if scores.size == true.size and np.isfinite(scores).all() else None
    pseudo = entry.get("pseudo_labels")
    if pseudo is not None:
        pseudo = _array(pseudo, np.int64)
        out["pseudo"] = pseudo if pseudo.size == true.size else None
    threshold = entry.get("threshold")
    out["threshold"] = None if threshold is None else float(threshold)
    return out


def _gate(pieces: Sequence[dict[str, Any]], bins: int) -> dict[str, Any]:
    with_pool = [p for p in pieces if p.get("pooled") is not None]
    empty = {"precision": None, "recall": None, "auroc": None, "num_pooled": None}
    if not with_pool:
        return {**empty, "num_novel": None, "threshold": None, "histogram": None}
    pooled = np.concatenate([p["pooled"] for p in with_pool])
    novel = np.concatenate([p["is_novel"] for p in with_pool])
    have_scores = all(p.get("scores") is not None for p in with_pool)
    scores = np.concatenate([p["scores"] for p in with_pool]) if have_scores else None
    metrics = gate_metrics(pooled, novel, scores if have_scores else np.zeros(pooled.size))
    if not have_scores:
        metrics["auroc"] = None
    metrics["threshold"] = with_pool[-1]["threshold"]
    metrics["histogram"] = score_histogram(scores, novel, bins=bins) if have_scores else None
    return metrics


def _cluster_acc(pieces: Sequence[dict[str, Any]]) -> tuple[float | None, int]:
    true, pred = [], []
    for p in pieces:
        if p.get("pseudo") is None:
            continue
        chosen = (p["pseudo"] >= 0) & p["is_novel"]
        if p.get("pooled") is not None:
            chosen &= p["pooled"]
        true.append(p["true"][chosen])
        pred.append(p["pseudo"][chosen])
    if not true or sum(t.size for t in true) == 0:
        return None, 0
    y, q = np.concatenate(true), np.concatenate(pred)
    return cluster_accuracy(y, q), int(y.size)


def experience_summary(
    entry: Mapping[str, Any], known_classes: int | Iterable[int], bins: int = 20
) -> dict[str, Any]:
    """Gate and cluster metrics of one discovery experience.

    Args:
        entry (Mapping): one ``discovery_log`` item (see :func:`discovery_summary`).
        known_classes (int | Iterable[int]): the known class ids (int ``k``: ``0 .. k-1``).
        bins (int): histogram bins.

    Returns:
        dict: ``experience``, ``num_samples``, ``num_novel``, ``num_pooled``, ``cluster_acc``,
        ``num_clustered`` (truly novel pooled samples with a pseudo-label) and ``gate``.
    """
    pieces = _pieces(entry, _known_set(known_classes))
    acc, num = _cluster_acc([pieces])
    gate = _gate([pieces], bins)
    return _clean(
        {
            "experience": int(entry.get("experience", -1)),
            "num_samples": int(pieces["true"].size),
            "num_novel": int(pieces["is_novel"].sum()),
            "num_pooled": gate["num_pooled"],
            "cluster_acc": acc,
            "num_clustered": num,
            "gate": {k: v for k, v in gate.items() if k != "histogram"},
        }
    )


def discovery_summary(
    y_all: torch.Tensor | np.ndarray | Sequence[int],
    p_all: torch.Tensor | np.ndarray | Sequence[int],
    known_classes: int | Iterable[int],
    discovery_log: Sequence[Mapping[str, Any]] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Novel-class-discovery results: accuracies on the all-class test set, clusters, the gate.

    Args:
        y_all (Tensor | ndarray | list): ``[N]`` true labels of the all-class test stream.
        p_all (Tensor | ndarray | list): ``[N]`` predictions (class ids, new classes = cluster
            ids ``>= num_known``).
        known_classes (int | Iterable[int]): the known (labeled) class ids.
        discovery_log (Sequence[Mapping] | None): one dict per discovery experience with any of
            ``experience``, ``true_labels`` (required to score it), ``pool_indices``,
            ``all_scores``, ``threshold``, ``pseudo_labels`` (LongTensor per sample, -1 unpooled).
        options (Mapping | None): ``cfg.discovery``: ``hungarian`` (``'all'`` default, or
            ``'novel'``: see :func:`old_new_all_accuracy`), ``histogram_bins`` (20).

    Returns:
        dict: ``old_acc``, ``new_acc``, ``all_acc``, ``hungarian`` (the convention, a sentence),
        ``cluster_acc`` and ``cluster_acc_convention``, ``gate`` (``precision``, ``recall``,
        ``auroc``, ``threshold`` (of the last discovery experience), ``num_pooled``, ``num_novel``,
        ``histogram`` = ``{"bins", "known", "novel"}``) and ``per_experience``. Fractions are in
        ``[0, 1]``; an undefined value is None, never NaN.

    Raises:
        ValueError: unknown ``hungarian`` convention.
    """
    options = dict(options or {})
    convention = options.get("hungarian", "all")
    bins = int(options.get("histogram_bins", 20))
    known = _known_set(known_classes)
    y, p = _array(y_all, np.int64), _array(p_all, np.int64)
    accuracies = old_new_all_accuracy(y, p, known, convention=convention)
    entries = [e for e in (discovery_log or []) if e.get("true_labels") is not None]
    pieces = [_pieces(e, known) for e in entries]
    cluster_acc, num_clustered = _cluster_acc(pieces)
    return _clean(
        {
            "old_acc": accuracies["old_acc"],
            "new_acc": accuracies["new_acc"],
            "all_acc": accuracies["all_acc"],
            "hungarian": accuracies["hungarian"],
            "cluster_acc": cluster_acc,
            "cluster_acc_convention": CLUSTER_ACC_CONVENTION,
            "num_clustered": num_clustered,
            "gate": _gate(pieces, bins),
            "per_experience": [experience_summary(e, known, bins) for e in entries],
        }
    )
