"""PNG figures of a run's results (accuracy matrix, confusions, per-class bars, long tail, gate scores).

Each function draws one ``Figure`` (no pyplot state, no window, no backend switch), writes it, returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from avalanche_ext.strict import atomic_write

__all__ = [
    "plot_accuracy_matrix",
    "plot_confusion_matrix",
    "plot_per_class_accuracy",
    "plot_class_counts",
    "plot_score_histograms",
    "plot_binned_score_histograms",
    "plot_accuracy_curves",
    "plot_tradeoff",
    "plot_channel_masks",
    "plot_history",
]

_DPI = 110


def _values(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Floats with NaN where a value is missing (None), for plotting."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A standalone figure and its axes.

    ``Figure`` objects outside pyplot are written by the Agg canvas, never shown, and freed with
    their last reference, so plotting from a headless run, a thread or a test leaks nothing.
    """
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _save(fig: Figure, path: str | os.PathLike) -> str:
    """Writes ``fig`` to ``path`` as PNG (creating its folder), atomically; returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=_DPI, bbox_inches="tight", format="png"))
    return path


def _tick_step(n: int, max_ticks: int = 25) -> int:
    """Label every k-th tick so that at most ``max_ticks`` labels are drawn."""
    return max(1, int(np.ceil(n / max_ticks)))


def plot_accuracy_matrix(
    R: Sequence[Sequence[float | None]] | np.ndarray,
    path: str | os.PathLike,
    title: str = "Accuracy matrix",
) -> str:
    """Heatmap of ``R[i][j]`` (rows = after training experience i, columns = test experience j).

    Args:
        R: accuracy matrix in 0..1 (None / NaN cells are left blank).
        path: PNG file to write.
        title: figure title.

    Returns:
        str: ``path``.
    """
    matrix = np.array([_values(row) for row in R], dtype=np.float64)
    if matrix.ndim != 2:
        matrix = matrix.reshape(len(R), -1)
    rows, cols = matrix.shape
    fig, ax = _figure(1.2 + 0.7 * max(cols, 3), 1.0 + 0.6 * max(rows, 3))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="accuracy")
    if rows * cols <= 400:  # values stay readable up to a 20 x 20 matrix
        font = 9 if max(rows, cols) <= 10 else 6
        for i in range(rows):
            for j in range(cols):
                if not np.isnan(matrix[i, j]):
                    color = "black" if matrix[i, j] > 0.6 else "white"
                    ax.text(
                        j,
                        i,
                        f"{matrix[i, j]:.2f}",
                        ha="center",
                        va="center",
                        color=color,
                        fontsize=font,
                    )
    ax.set_xticks(range(0, cols, _tick_step(cols)))
    ax.set_yticks(range(0, rows, _tick_step(rows)))
    ax.set_xlabel("test experience j")
    ax.set_ylabel("after training experience i")
    ax.set_title(title)
    return _save(fig, path)


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str] | None,
    path: str | os.PathLike,
    normalize: bool = True,
) -> str:
    """Confusion-matrix heatmap that stays readable up to a few hundred classes.

    Rows are normalised to the true class's sample count by default (so tail classes are as visible
    as head ones); tick labels are thinned to at most 25 per axis with a font that shrinks with the
    number of classes, and cell values are written only for 15 classes or fewer.

    Args:
        cm: confusion counts, rows = true class, columns = predicted class.
        class_names: names by class id (ids are shown when None).
        path: PNG file to write.
        normalize: show row fractions instead of counts.

    Returns:
        str: ``path``.
    """
    counts = np.asarray(cm, dtype=np.float64)
    n = counts.shape[0]
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        shown = counts
    size = min(14.0, 3.0 + 0.12 * n) if n > 15 else 3.0 + 0.45 * n
    fig, ax = _figure(size + 1.2, size)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(
        image,
        ax=ax,
        fraction=0.046,
        pad=0.04,
        label="fraction of true class" if normalize else "count",
    )
    names = [str(name) for name in (class_names or [])]
    names += [str(c) for c in range(len(names), n)]
    step = _tick_step(n)
    ticks = list(range(0, n, step))
    font = 8 if n <= 25 else max(4, 8 - n // 50)
    ax.set_xticks(ticks)
    ax.set_xticklabels([names[t] for t in ticks], rotation=90, fontsize=font)
    ax.set_yticks(ticks)
    ax.set_yticklabels([names[t] for t in ticks], fontsize=font)
    if n <= 15:
        for i in range(n):
            for j in range(counts.shape[1]):
                if counts[i, j]:
                    text = f"{shown[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                    color = "white" if shown[i, j] > 0.5 * (shown.max() or 1) else "black"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalize else ""))
    return _save(fig, path)


def plot_per_class_accuracy(
    acc: Sequence[float | None],
    path: str | os.PathLike,
    old_classes: Sequence[int] | None = None,
    before: Sequence[float | None] | None = None,
) -> str:
    """Bar chart of the accuracy of each class.

    Args:
        acc: final accuracy of each class (None = no test sample, drawn as a gap).
        path: PNG file to write.
        old_classes: ids of the classes known before the last update; they are drawn in one colour
            and the others ("new") in another. All bars share one colour when None.
        before: accuracy of each class before the last update; drawn as a thin bar beside each
            final bar so that gains and losses per class are visible.

    Returns:
        str: ``path``.
    """
    after = _values(acc)
    n = after.size
    classes = np.arange(n)
    old = set(old_classes or [])
    colors = ["tab:blue" if (not old or c in old) else "tab:orange" for c in classes]
    fig, ax = _figure(min(16.0, 4.0 + 0.12 * n), 3.6)
    width = 0.8
    if before is not None:
        previous = _values(before)[:n]
        width = 0.45
        ax.bar(
            classes[: previous.size] - width / 2,
            np.nan_to_num(previous),
            width=width,
            color="lightgray",
            label="before update",
        )
        offsets = classes + width / 2
    else:
        offsets = classes
    ax.bar(offsets, np.nan_to_num(after), width=width, color=colors)
    handles = []
    if old:
        handles += [
            Patch(color="tab:blue", label="old classes"),
            Patch(color="tab:orange", label="new classes"),
        ]
    if before is not None:
        handles.append(Patch(color="lightgray", label="before update"))
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="upper right")
    step = _tick_step(n, max_ticks=50)
    ax.set_xticks(range(0, n, step))
    ax.tick_params(axis="x", labelsize=7 if n > 30 else 9)
    ax.set_xlim(-1, n)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("class id")
    ax.set_ylabel("accuracy")
    ax.set_title("Per-class accuracy")
    return _save(fig, path)


def plot_class_counts(
    counts: Sequence[int], path: str | os.PathLike, log: bool | None = None
) -> str:
    """The long-tail curve: training samples per class, sorted in descending order.

    Args:
        counts: training samples of each class.
        path: PNG file to write.
        log: log-scale y axis; by default when the largest count is at least 10x the smallest.

    Returns:
        str: ``path``.
    """
    ordered = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    fig, ax = _figure(6.0, 3.4)
    ax.bar(np.arange(ordered.size), ordered, width=1.0, color="tab:blue")
    positive = ordered[ordered > 0]
    if log is None:
        log = positive.size > 0 and positive.max() >= 10 * positive.min()
    if log:
        ax.set_yscale("log")
    ratio = f" (imbalance {positive.max() / positive.min():.0f}x)" if positive.size else ""
    ax.set_xlabel("classes, sorted by training samples")
    ax.set_ylabel("training samples")
    ax.set_title("Training samples per class" + ratio)
    return _save(fig, path)


def plot_score_histograms(
    known_scores: Sequence[float] | np.ndarray,
    novel_scores: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    bins: int = 30,
    threshold: float | None = None,
) -> str:
    """Overlaid histograms of gate scores for known-class and novel-class samples.

    Args:
        known_scores: scores of samples from known classes.
        novel_scores: scores of samples from novel classes.
        path: PNG file to write.
        bins: number of shared bins.
        threshold: gate threshold, drawn as a vertical line.

    Returns:
        str: ``path``.
    """
    known = np.asarray(known_scores, dtype=np.float64).reshape(-1)
    novel = np.asarray(novel_scores, dtype=np.float64).reshape(-1)
    both = np.concatenate([known, novel])
    both = both[np.isfinite(both)]
    low, high = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    known_counts, _ = np.histogram(known[np.isfinite(known)], bins=edges)
    novel_counts, _ = np.histogram(novel[np.isfinite(novel)], bins=edges)
    return plot_binned_score_histograms(
        edges, known_counts, novel_counts, path, threshold=threshold
    )


def plot_binned_score_histograms(
    bins: Sequence[float],
    known_counts: Sequence[float],
    novel_counts: Sequence[float],
    path: str | os.PathLike,
    threshold: float | None = None,
) -> str:
    """Overlaid gate-score histograms from counts already binned (as stored in results.json).

    Args:
        bins: bin edges (one more than the counts) or bin centres (as many as the counts).
        known_counts: samples of known classes per bin.
        novel_counts: samples of novel classes per bin.
        path: PNG file to write.
        threshold: gate threshold, drawn as a vertical line.

    Returns:
        str: ``path``.

    Raises:
        ValueError: when the bins match neither the number of counts nor that number plus one.
    """
    known = np.asarray(known_counts, dtype=np.float64)
    novel = np.asarray(novel_counts, dtype=np.float64)
    points = np.asarray(bins, dtype=np.float64)
    n = max(known.size, novel.size)
    if points.size == n + 1:
        lefts, widths = points[:-1], np.diff(points)
    elif points.size == n and n > 0:
        step = np.diff(points).mean() if n > 1 else 1.0
        lefts, widths = points - step / 2, np.full(n, step)
    else:
        raise ValueError(f"{points.size} bins do not fit {n} histogram counts")
    fig, ax = _figure(6.0, 3.4)
    if known.size:
        ax.bar(
            lefts, known, width=widths, align="edge", alpha=0.55, color="tab:blue", label="known"
        )
    if novel.size:
        ax.bar(lefts, novel, width=widths, align="edge", alpha=0.55, color="tab:red", label="novel")
    if threshold is not None:
        ax.axvline(float(threshold), color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("gate score")
    ax.set_ylabel("samples")
    ax.set_title("Gate scores: known vs novel samples")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_accuracy_curves(
    curves: Mapping[str, Sequence[float | None]],
    path: str | os.PathLike,
    ylabel: str = "average accuracy on seen experiences",
) -> str:
    """Overlaid accuracy-after-each-experience curves, one per run.

    Args:
        curves: run name -> accuracy after training experience 0, 1, ... (None = not measured).
        path: PNG file to write.
        ylabel: y-axis label (say which average the curves are).

    Returns:
        str: ``path``.
    """
    fig, ax = _figure(6.4, 3.8)
    longest = 1
    for name, values in curves.items():
        ys = _values(values)
        longest = max(longest, ys.size)
        ax.plot(np.arange(ys.size), ys, marker="o", label=name)
    ax.set_xticks(range(0, longest, _tick_step(longest)))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("after training experience")
    ax.set_ylabel(ylabel)
    ax.set_title("Accuracy over the stream")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_tradeoff(
    curve: dict,
    path: str | os.PathLike,
    operating_point: tuple[float | None, float | None] | None = None,
) -> str:
    """New-class vs old-class accuracy as the old-vs-new offset sweeps (a discovery run's whole
    trade-off), with the operating point the run chose without test labels.

    Args:
        curve: ``{"old_acc": [...], "new_acc": [...], "auc": float}``.
        path: PNG file to write.
        operating_point: ``(old, new)`` accuracy of the run's own decision, or None.

    Returns:
        str: ``path``.
    """
    fig, ax = _figure(4.8, 4.2)
    old, new = _values(curve["old_acc"]), _values(curve["new_acc"])
    ax.plot(old, new, "-", color="tab:blue", label=f"offset swept (area {curve.get('auc', 0):.3f})")
    if operating_point and None not in operating_point:
        ax.plot(*operating_point, "o", color="tab:red", label="chosen without test labels")
    ax.set_xlabel("old-class accuracy")
    ax.set_ylabel("new-class accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_channel_masks(
    masks: Sequence[Sequence[int]], path: str | os.PathLike, title: str = "Relevant channels"
) -> str:
    """Model Doctor's sifted kernels: a classes x channels image, a cell lit when the channel is
    relevant to the class.

    Args:
        masks: ``[C][K]`` 0/1.
        path: PNG file to write.
        title: figure title (the layer's name).

    Returns:
        str: ``path``.
    """
    matrix = np.asarray(masks, dtype=np.float64).reshape(len(masks), -1)
    rows, cols = matrix.shape
    fig, ax = _figure(1.5 + min(0.08 * cols, 12.0), 1.2 + min(0.06 * rows, 10.0))
    ax.imshow(matrix, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xlabel("channel")
    ax.set_ylabel("class")
    ax.set_title(f"{title} (black: relevant)")
    return _save(fig, path)


def plot_history(history: Sequence[Mapping], path: str | os.PathLike) -> str:
    """Per-epoch curves: training loss (left), training accuracy and the periodic evaluation's
    accuracy, geometric mean, harmonic mean and lowest recall of each stream (right); dotted
    lines mark the start of each experience.

    Args:
        history: ``results["history"]`` entries (see :class:`avalanche_ext.history.EpochHistory`).
        path: PNG file to write.

    Returns:
        str: ``path``.
    """
    fig = Figure(figsize=(10, 3.6))
    loss_ax, acc_ax = fig.subplots(1, 2)
    x = np.arange(1, len(history) + 1)
    loss_ax.plot(x, _values([e.get("train_loss") for e in history]), marker=".")
    acc_ax.plot(x, _values([e.get("train_accuracy") for e in history]), marker=".", label="train")
    streams = sorted({s for e in history for s in (e.get("eval") or {})})
    for stream in streams:
        for key, style in (
            ("accuracy", "-"),
            ("geometric_mean", "--"),
            ("harmonic_mean", "-."),
            ("lowest_recall", ":"),
        ):
            ys = _values([((e.get("eval") or {}).get(stream) or {}).get(key) for e in history])
            if np.isfinite(ys).any():
                acc_ax.plot(x, ys, style, marker=".", label=f"{stream} {key.replace('_', ' ')}")
    for i, entry in enumerate(history):
        if i and entry.get("experience") != history[i - 1].get("experience"):
            for ax in (loss_ax, acc_ax):
                ax.axvline(i + 0.5, color="grey", linestyle=":", linewidth=0.8)
    loss_ax.set_title("Training loss")
    acc_ax.set_title("Accuracy per epoch")
    acc_ax.set_ylim(0, 1.02)
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch (all experiences)")
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=7)
    return _save(fig, path)
