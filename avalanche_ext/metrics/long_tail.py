"""Per-class and long-tail summaries of final predictions: shot groups, recall means, confusions.

Pure functions on labels, predictions and per-class training counts; plain python results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "per_class_accuracy",
    "shot_groups",
    "head_tail_groups",
    "long_tail_summary",
    "confusion_matrix",
    "top_confused_pairs",
]

ArrayLike = Sequence[int] | np.ndarray


def _labels(values: ArrayLike) -> np.ndarray:
    """Labels as a 1-D int64 array (accepts lists, numpy arrays and torch tensors)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.int64).reshape(-1)


def per_class_accuracy(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int
) -> list[float | None]:
    """Recall of each class: the fraction of its test samples predicted as that class.

    Args:
        y_true: true class ids, shape ``(N,)``.
        y_pred: predicted class ids, shape ``(N,)``.
        num_classes: number of classes (length of the result).

    Returns:
        list[float | None]: accuracy of class ``c`` at index ``c``; None for a class without test
        samples (so that it is neither a 0 nor a NaN downstream).

    Raises:
        ValueError: when the two label arrays differ in length.
    """
    true, pred = _labels(y_true), _labels(y_pred)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} labels, y_pred has {pred.size}")
    in_range = (true >= 0) & (true < num_classes)
    true, pred = true[in_range], pred[in_range]
    support = np.bincount(true, minlength=num_classes)
    correct = np.bincount(true[true == pred], minlength=num_classes)
    return [float(correct[c] / support[c]) if support[c] else None for c in range(num_classes)]


def shot_groups(
    train_counts: Sequence[int], many: int = 100, few: int = 20
) -> dict[str, list[int]]:
    """Splits classes by training-sample count into the usual many/medium/few-shot groups.

    Args:
        train_counts: training samples of each class (index = class id).
        many: a class with more than ``many`` samples is many-shot.
        few: a class with fewer than ``few`` samples is few-shot; the rest
            (``few <= count <= many``) is medium-shot.

    Returns:
        dict[str, list[int]]: ``{"many": [...], "medium": [...], "few": [...]}`` class ids.
    """
    groups: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for cls, count in enumerate(train_counts):
        if count > many:
            groups["many"].append(cls)
        elif count < few:
            groups["few"].append(cls)
        else:
            groups["medium"].append(cls)
    return groups


def head_tail_groups(train_counts: Sequence[int]) -> dict[str, list[int]]:
    """Splits classes into head and tail at the geometric midpoint of the largest and smallest counts.

    With a step profile (every count is ``n_max`` or ``n_min``) this is exactly "the ``n_max``
    classes" vs "the ``n_min`` classes"; on an exponential profile the geometric midpoint is the
    natural middle of the (log-scale) curve.

    Args:
        train_counts: training samples of each class (index = class id).

    Returns:
        dict[str, list[int]]: ``{"head": [...], "tail": [...]}`` (both empty for equal counts,
        when there is nothing to split).
    """
    counts = [int(c) for c in train_counts]
    if not counts or min(counts) == max(counts):
        return {"head": [], "tail": []}
    midpoint = math.sqrt(max(max(counts), 1) * max(min(counts), 1))
    return {
        "head": [c for c, n in enumerate(counts) if n >= midpoint],
        "tail": [c for c, n in enumerate(counts) if n < midpoint],
    }


def _group_mean(per_class_acc: Sequence[float | None], classes: Sequence[int]) -> float | None:
    """Mean accuracy of the classes of a group that have test samples (None when none has)."""
    values = [
        per_class_acc[c] for c in classes if c < len(per_class_acc) and per_class_acc[c] is not None
    ]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else None


def long_tail_summary(
    per_class_acc: Sequence[float | None],
    train_counts: Sequence[int],
    many_threshold: int = 100,
    few_threshold: int = 20,
    split_by_tail: bool | None = None,
) -> dict:
    """Long-tail view of per-class accuracy: shot-group means, recall means, the worst class.

    The many/medium/few thresholds (100/20) come from ImageNet-LT-scale datasets. On CIFAR-scale step
    tails (every class has ``n_max`` or ``n_min`` samples, e.g. 500 and 5) they can put all classes
    in one group, or split them in a way that hides the tail. So a head/tail split
    (:func:`head_tail_groups`) is added as ``head_acc`` / ``tail_acc``: with ``split_by_tail=None``
    (default) automatically when the shot groups leave a single non-empty group and the counts take
    exactly two values; ``True`` always adds it (when counts differ), ``False`` never.

    Recall statistics use the classes that have test samples: the geometric mean is 0.0 as soon as
    one of them has zero recall (the limit of the product), likewise the harmonic mean.

    Args:
        per_class_acc: accuracy of each class (None for a class without test samples).
        train_counts: training samples of each class. Classes beyond its length (e.g. novel classes
            without a count) enter the recall statistics but no group.
        many_threshold: a class with more training samples is many-shot.
        few_threshold: a class with fewer training samples is few-shot.
        split_by_tail: add the head/tail split: None = automatic (see above), True / False = force.

    Returns:
        dict: ``many_acc``, ``medium_acc``, ``few_acc`` (None for an empty group),
        ``geometric_mean``, ``harmonic_mean``, ``lowest_recall`` (with its class in
        ``lowest_recall_class``), ``groups`` (class ids per group, head/tail included when split),
        ``thresholds`` and, when split, ``head_acc`` / ``tail_acc``.
    """
    counts = [int(c) for c in train_counts]
    groups: dict[str, list[int]] = shot_groups(counts, many=many_threshold, few=few_threshold)
    summary: dict = {f"{name}_acc": _group_mean(per_class_acc, ids) for name, ids in groups.items()}

    if split_by_tail is None:
        non_empty = sum(1 for ids in groups.values() if ids)
        split_by_tail = non_empty == 1 and len(set(counts)) == 2
    if split_by_tail:
        head_tail = head_tail_groups(counts)
        if head_tail["head"]:
            groups.update(head_tail)
            summary["head_acc"] = _group_mean(per_class_acc, head_tail["head"])
            summary["tail_acc"] = _group_mean(per_class_acc, head_tail["tail"])

    recalls = {
        c: float(v) for c, v in enumerate(per_class_acc) if v is not None and not math.isnan(v)
    }
    values = np.array(list(recalls.values()), dtype=np.float64)
    if values.size == 0:
        summary.update(geometric_mean=None, harmonic_mean=None, lowest_recall=None)
        summary["lowest_recall_class"] = None
    elif (values <= 0).any():
        summary.update(geometric_mean=0.0, harmonic_mean=0.0, lowest_recall=float(values.min()))
        summary["lowest_recall_class"] = min(recalls, key=recalls.__getitem__)
    else:
        summary["geometric_mean"] = float(np.exp(np.log(values).mean()))
        summary["harmonic_mean"] = float(values.size / (1.0 / values).sum())
        summary["lowest_recall"] = float(values.min())
        summary["lowest_recall_class"] = min(recalls, key=recalls.__getitem__)
    summary["groups"] = groups
    summary["thresholds"] = {"many": many_threshold, "few": few_threshold}
    return summary


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> list[list[int]]:
    """Confusion counts over all ``num_classes`` classes (rows = true class, columns = predicted).

    Args:
        y_true: true class ids, shape ``(N,)``.
        y_pred: predicted class ids, shape ``(N,)``.
        num_classes: size of the square matrix; classes absent from both arrays get zero rows.

    Returns:
        list[list[int]]: ``num_classes x num_classes`` counts.
    """
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix  # noqa: PLC0415 - slow import

    matrix = sk_confusion_matrix(_labels(y_true), _labels(y_pred), labels=list(range(num_classes)))
    return matrix.astype(int).tolist()


def top_confused_pairs(
    cm: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str] | None = None, k: int = 10
) -> list[dict]:
    """The ``k`` largest off-diagonal cells of a confusion matrix.

    Args:
        cm: confusion counts, rows = true class, columns = predicted class.
        class_names: names by class id; ids are used (as strings) when None or too short.
        k: number of pairs to return.

    Returns:
        list[dict]: ``{"true", "predicted", "true_id", "predicted_id", "count", "fraction"}`` sorted
        by count (then by true id), where ``fraction`` is the share of the true class's test samples
        that went to ``predicted``. Pairs with zero count are left out.
    """
    matrix = np.asarray(cm, dtype=np.int64)
    if matrix.ndim != 2 or matrix.size == 0:
        return []
    names = list(class_names or [])

    def name(cls: int) -> str:
        return str(names[cls]) if cls < len(names) else str(cls)

    off_diagonal = matrix.copy()
    size = min(matrix.shape)
    off_diagonal[np.arange(size), np.arange(size)] = 0
    rows, cols = np.nonzero(off_diagonal)
    counts = off_diagonal[rows, cols]
    order = np.lexsort((cols, rows, -counts))[:k]
    row_totals = matrix.sum(axis=1)
    return [
        {
            "true": name(int(rows[o])),
            "predicted": name(int(cols[o])),
            "true_id": int(rows[o]),
            "predicted_id": int(cols[o]),
            "count": int(counts[o]),
            "fraction": float(counts[o] / row_totals[rows[o]]),
        }
        for o in order
    ]
