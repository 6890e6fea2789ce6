"""Clustering accuracy with Hungarian matching, and the old/new/all accuracies of class discovery.

Cluster ids are arbitrary, so predictions are mapped one-to-one onto labels before scoring.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["hungarian_match", "cluster_accuracy", "old_new_all_accuracy", "HUNGARIAN_CONVENTIONS"]

HUNGARIAN_CONVENTIONS: dict[str, str] = {
    "all": (
        "one Hungarian matching of predicted ids to true classes over all test samples "
        "(old and new together, task-agnostic); old/new accuracies are read off that single mapping"
    ),
}
"""The conventions :func:`old_new_all_accuracy` accepts. The former ``'novel'`` convention (joint
argmax matched on the novel subset) is gone: a model that never predicts a new id scored 0.25 with
it. ``avalanche_ext.metrics.discovery`` has the conventions to report."""


def _labels(values: torch.Tensor | np.ndarray | Iterable[int]) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.int64).ravel()


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.size != y_pred.size:
        raise ValueError(f"y_true has {y_true.size} labels, y_pred {y_pred.size}")


def hungarian_match(
    y_true: torch.Tensor | np.ndarray | Iterable[int],
    y_pred: torch.Tensor | np.ndarray | Iterable[int],
) -> dict[int, int]:
    """One-to-one mapping predicted id -> true class maximising the number of agreeing samples.

    Solved with ``scipy.optimize.linear_sum_assignment`` on the contingency matrix. With more
    predicted ids than classes, the extra ids stay unmatched (absent from the dict, so every
    sample they hold counts as wrong); with fewer, some classes are never predicted.

    Args:
        y_true (Tensor | ndarray | list): ``[N]`` true class ids.
        y_pred (Tensor | ndarray | list): ``[N]`` predicted (cluster) ids.

    Returns:
        dict[int, int]: predicted id -> true class id.
    """
    y_true, y_pred = _labels(y_true), _labels(y_pred)
    _check_pair(y_true, y_pred)
    if y_true.size == 0:
        return {}
    pred_ids, pred_index = np.unique(y_pred, return_inverse=True)
    true_ids, true_index = np.unique(y_true, return_inverse=True)
    counts = np.zeros((pred_ids.size, true_ids.size), dtype=np.int64)
    np.add.at(counts, (pred_index, true_index), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {int(pred_ids[r]): int(true_ids[c]) for r, c in zip(rows, cols)}


def _apply(mapping: dict[int, int], y_pred: np.ndarray) -> np.ndarray:
    # Unmatched predicted ids map to a value no true label can take.
    return np.array([mapping.get(int(p), np.iinfo(np.int64).min) for p in y_pred], dtype=np.int64)


def cluster_accuracy(
    y_true: torch.Tensor | np.ndarray | Iterable[int],
    y_pred: torch.Tensor | np.ndarray | Iterable[int],
) -> float:
    """Accuracy after the best one-to-one matching of ``y_pred`` ids onto ``y_true`` classes.

    The matching is computed on exactly the samples given (pass a subset to match within it).

    Args:
        y_true (Tensor | ndarray | list): ``[N]`` true class ids.
        y_pred (Tensor | ndarray | list): ``[N]`` predicted (cluster) ids.

    Returns:
        float: fraction of samples whose matched prediction equals the label.

    Raises:
        ValueError: no samples, or lengths differ.
    """
    y_true, y_pred = _labels(y_true), _labels(y_pred)
    _check_pair(y_true, y_pred)
    if y_true.size == 0:
        raise ValueError("cluster_accuracy needs at least one sample")
    return _num_matched_correct(y_true, y_pred) / y_true.size


def _num_matched_correct(y_true: np.ndarray, y_pred: np.ndarray) -> int:
    return int((_apply(hungarian_match(y_true, y_pred), y_pred) == y_true).sum())


def old_new_all_accuracy(
    y_true: torch.Tensor | np.ndarray | Iterable[int],
    y_pred: torch.Tensor | np.ndarray | Iterable[int],
    known_classes: int | Iterable[int],
    convention: str = "all",
) -> dict[str, float | str | None]:
    """Old-class, new-class and overall accuracy of a model that discovered new classes.

    A sample is "old" when its TRUE label is in ``known_classes``, "new" otherwise.

    * ``convention='all'`` (GCD's "v2" evaluation, Vaze et al. CVPR 2022; FRoST's task-agnostic
      protocol instead maps discovered ids once on the training clusters, see
      ``avalanche_ext.metrics.discovery``): ONE Hungarian matching of predicted ids to true classes is computed over all samples, old
      and new together; every prediction is mapped through it and ``old_acc`` / ``new_acc`` /
      ``all_acc`` are plain accuracies of the mapped predictions on the old subset, the new subset
      and all samples. An old class predicted under its own id is normally matched to itself, but
      nothing forces it: a model that confuses classes is penalised once, consistently.

    Args:
        y_true (Tensor | ndarray | list): ``[N]`` true class ids.
        y_pred (Tensor | ndarray | list): ``[N]`` predicted class / cluster ids.
        known_classes (int | Iterable[int]): the old classes; an int ``k`` means ``0 .. k-1``.
        convention (str): ``'all'`` (the only one; see :data:`HUNGARIAN_CONVENTIONS`).

    Returns:
        dict: ``old_acc``, ``new_acc``, ``all_acc`` (floats, None for an empty subset) and
        ``hungarian``: a sentence stating the convention used (for results.json and reports).

    Raises:
        ValueError: unknown convention or lengths differ.
    """
    if convention not in HUNGARIAN_CONVENTIONS:
        raise ValueError(
            f"convention must be one of {sorted(HUNGARIAN_CONVENTIONS)}, got {convention!r}"
        )
    y_true, y_pred = _labels(y_true), _labels(y_pred)
    _check_pair(y_true, y_pred)
    known = np.arange(known_classes) if isinstance(known_classes, int) else _labels(known_classes)
    is_old = np.isin(y_true, known)
    is_new = ~is_old

    correct = _apply(hungarian_match(y_true, y_pred), y_pred) == y_true
    old_correct = int(correct[is_old].sum())
    new_correct = int(correct[is_new].sum())
    num_old, num_new = int(is_old.sum()), int(is_new.sum())
    return {
        "old_acc": old_correct / num_old if num_old else None,
        "new_acc": new_correct / num_new if num_new else None,
        "all_acc": (old_correct + new_correct) / y_true.size if y_true.size else None,
        "hungarian": HUNGARIAN_CONVENTIONS[convention],
    }
