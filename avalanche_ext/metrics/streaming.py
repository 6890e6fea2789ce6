"""Summaries of a continual-learning accuracy matrix (CLEAR's four transfer numbers, Avalanche's forgetting).

Pure functions on ``R[i][j]`` = accuracy on test experience ``j`` after training experience ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "accuracy_matrix",
    "in_domain_accuracy",
    "next_domain_accuracy",
    "backward_transfer",
    "forward_transfer",
    "average_accuracy",
    "experience_forgetting",
    "average_forgetting",
    "seen_accuracy_curve",
    "streaming_summary",
]

MatrixLike = Sequence[Sequence[float | None]] | np.ndarray


def accuracy_matrix(R: MatrixLike) -> np.ndarray:
    """Converts ``R`` into a 2-D float array; missing entries (None, NaN, short rows) become NaN.

    Rows may have different lengths (a runner that only evaluated the experiences seen so far); they
    are padded with NaN to the longest row, and NaN means "not measured" in every function here.

    Args:
        R: accuracy matrix, ``T`` rows (training experiences) by ``M`` columns (test experiences).
            ``M`` may differ from ``T`` (e.g. a test stream with an extra novel-class experience).

    Returns:
        np.ndarray: float64 array of shape ``(T, M)``; ``(0, 0)`` for an empty matrix.

    Raises:
        ValueError: when ``R`` is not a matrix (a scalar or a 3-D array).
    """
    if isinstance(R, np.ndarray):
        if R.ndim != 2:
            raise ValueError(f"accuracy matrix must be 2-D, got shape {R.shape}")
        return R.astype(np.float64)
    rows = [list(row) for row in R]
    width = max((len(row) for row in rows), default=0)
    matrix = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if value is not None:
                matrix[i, j] = float(value)
    return matrix


def _mean(values: np.ndarray) -> float | None:
    """Mean of the measured (non-NaN) values, or None when there is none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def in_domain_accuracy(R: MatrixLike) -> float | None:
    """Mean of the diagonal: accuracy on each experience right after training on it.

    Args:
        R: accuracy matrix (see :func:`accuracy_matrix`).

    Returns:
        float | None: mean of ``R[i][i]`` for ``i < min(T, M)``; None when no entry is measured.
    """
    return _mean(np.diagonal(accuracy_matrix(R)))


def next_domain_accuracy(R: MatrixLike) -> float | None:
    """Mean of the first super-diagonal: accuracy on the next experience before training on it.

    Args:
        R: accuracy matrix (see :func:`accuracy_matrix`).

    Returns:
        float | None: mean of ``R[i][i+1]``; None with a single test experience.
    """
    return _mean(np.diagonal(accuracy_matrix(R), offset=1))


def backward_transfer(R: MatrixLike) -> float | None:
    """Mean accuracy on past experiences: entries strictly below the diagonal (``i > j``).

    This is CLEAR's (Lin et al., 2021) BwT, an accuracy, not GEM's BWT (a difference to the diagonal;
    see :func:`average_forgetting` for that view).

    Args:
        R: accuracy matrix (see :func:`accuracy_matrix`).

    Returns:
        float | None: mean of ``R[i][j]`` over ``i > j``; None with a single training experience.
    """
    matrix = accuracy_matrix(R)
    return _mean(matrix[np.tril_indices(matrix.shape[0], k=-1, m=matrix.shape[1])])


def forward_transfer(R: MatrixLike) -> float | None:
    """Mean accuracy on future experiences: entries strictly above the diagonal (``j > i``).

    Args:
        R: accuracy matrix (see :func:`accuracy_matrix`).

    Returns:
        float | None: mean of ``R[i][j]`` over ``j > i``; None with a single test experience.
    """
    matrix = accuracy_matrix(R)
    return _mean(matrix[np.triu_indices(matrix.shape[0], k=1, m=matrix.shape[1])])


def average_accuracy(R: MatrixLike, test_sizes: Sequence[int] | None = None) -> float | None:
    """Accuracy over all test experiences after the last training experience (the last row).

    Without ``test_sizes`` this is the plain mean of the last row. With them it is weighted by the
    number of test samples of each experience, which is exactly Avalanche's ``StreamAccuracy``
    (it pools every test sample of the stream); both agree when experiences have equal sizes.

    Args:
        R: accuracy matrix (see :func:`accuracy_matrix`).
        test_sizes: optional number of samples of each test experience (length ``M``).

    Returns:
        float | None: the (weighted) mean of ``R[T-1]``; None for an empty matrix.

    Raises:
        ValueError: when ``test_sizes`` does not have one entry per column of ``R``.
    """
    matrix = accuracy_matrix(R)
    if matrix.shape[0] == 0:
        return None
    last = matrix[-1]
    if test_sizes is None:
        return _mean(last)
    weights = np.asarray(test_sizes, dtype=np.float64)
    if weights.shape != last.shape:
        raise ValueError(
            f"test_sizes has {weights.size} entries, R has {last.size} test experiences"
        )
    measured = ~np.isnan(last) & (weights > 0)
    if not measured.any():
        return None
    return float(np.average(last[measured], weights=weights[measured]))


def experience_forgetting(R: MatrixLike) -> list[float | None]:
    """Forgetting of each test experience, as Avalanche's ``ExperienceForgetting`` at the end.

    Avalanche stores, for experience ``j``, the accuracy measured when the training experience id
    equals ``j`` (``R[j][j]``) and the one measured in the latest evaluation (``R[T-1][j]``); the
    latest evaluation's own experience (``T-1``) has no "last" value yet, and test experiences never
    trained on (``j >= T``) have no "initial" one, so both give None.

    Args:
        R: accuracy matrix (see :func:`accuracy_matrix`).

    Returns:
        list[float | None]: ``R[j][j] - R[T-1][j]`` for ``j < T-1``, None elsewhere (length ``M``).
    """
    matrix = accuracy_matrix(R)
    num_train, num_test = matrix.shape
    result: list[float | None] = [None] * num_test
    for j in range(min(num_train - 1, num_test)):
        value = matrix[j, j] - matrix[num_train - 1, j]
        result[j] = None if np.isnan(value) else float(value)
    return result


def average_forgetting(R: MatrixLike) -> float | None:
    """Mean forgetting over the experiences trained before the last one (Avalanche's definition).

    Matches ``StreamForgetting`` after the final evaluation: the unweighted mean of
    :func:`experience_forgetting` over its defined entries. Avalanche reports 0.0 when no experience
    qualifies (its ``Mean`` of nothing); here that case is None, as nothing was measured.

    Args:
        R: accuracy matrix (see :func:`accuracy_matrix`).

    Returns:
        float | None: mean of ``R[j][j] - R[T-1][j]`` over ``j < T-1``; None when ``T == 1``.
    """
    values = np.array([v for v in experience_forgetting(R) if v is not None], dtype=np.float64)
    return _mean(values)


def seen_accuracy_curve(R: MatrixLike) -> list[float | None]:
    """Average accuracy on the experiences seen so far, after each training experience.

    Entry ``i`` is the mean of ``R[i][0..i]``; the columns ``j > i`` are left out because a
    class-incremental run scores zero on classes it has not met, which would make every curve a
    staircase of the stream layout rather than a picture of learning and forgetting.

    Args:
        R: accuracy matrix (see :func:`accuracy_matrix`).

    Returns:
        list[float | None]: one value per training experience (None where nothing was measured).
    """
    matrix = accuracy_matrix(R)
    return [_mean(matrix[i, : i + 1]) for i in range(matrix.shape[0])]


def streaming_summary(R: MatrixLike, test_sizes: Sequence[int] | None = None) -> dict:
    """All summaries of an accuracy matrix, as written in ``results.json["streaming"]``.

    ``score`` is the equal-weight mean of the defined parts among ``in_domain``, ``next_domain``,
    ``backward_transfer`` and ``forward_transfer`` (CLEAR's summary score). Undefined values (e.g.
    transfer with one experience) are None, never NaN.

    Args:
        R: accuracy matrix, ``T x M`` (see :func:`accuracy_matrix`).
        test_sizes: optional samples per test experience, so that ``average_accuracy`` equals
            Avalanche's pooled stream accuracy (see :func:`average_accuracy`).

    Returns:
        dict: ``in_domain``, ``next_domain``, ``backward_transfer``, ``forward_transfer``, ``score``,
        ``average_accuracy``, ``average_forgetting`` (floats in 0..1 or None).
    """
    matrix = accuracy_matrix(R)
    summary: dict[str, float | None] = {
        "in_domain": in_domain_accuracy(matrix),
        "next_domain": next_domain_accuracy(matrix),
        "backward_transfer": backward_transfer(matrix),
        "forward_transfer": forward_transfer(matrix),
    }
    parts = np.array([v for v in summary.values() if v is not None], dtype=np.float64)
    summary["score"] = _mean(parts)
    summary["average_accuracy"] = average_accuracy(matrix, test_sizes)
    summary["average_forgetting"] = average_forgetting(matrix)
    return summary
