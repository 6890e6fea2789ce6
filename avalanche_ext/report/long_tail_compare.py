"""The long-tail part of a run comparison: per-class accuracy bars of several runs, head to tail, and
the long-tail summary table (top-1, many / medium / few, GM, HM, lowest recall) across runs.

Pure functions on results dicts (``per_class_accuracy``, ``scenario.train_class_counts``,
``long_tail``); :func:`add_long_tail_sections` is what ``compare_runs`` calls.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from avalanche_ext.report._document import Document, format_percent
from avalanche_ext.strict import atomic_write

__all__ = [
    "LONG_TAIL_COLUMNS",
    "add_long_tail_sections",
    "head_to_tail_order",
    "long_tail_rows",
    "plot_per_class_comparison",
]

LONG_TAIL_COLUMNS = (
    ("top1", "top-1"),
    ("many_acc", "many"),
    ("medium_acc", "medium"),
    ("few_acc", "few"),
    ("geometric_mean", "GM"),
    ("harmonic_mean", "HM"),
    ("lowest_recall", "lowest recall"),
)


def head_to_tail_order(train_counts: Sequence[int]) -> list[int]:
    """Class ids sorted by training count, largest first (ties: smaller id first)."""
    return sorted(range(len(train_counts)), key=lambda c: (-int(train_counts[c]), c))


def long_tail_rows(names: Sequence[str], results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run with a ``long_tail`` block (runs without one are left out).

    Args:
        names: the runs' display names.
        results: their summarized results dicts (``summarize`` adds ``long_tail``).

    Returns:
        rows with ``name`` and the keys of :data:`LONG_TAIL_COLUMNS` (fractions or None).
    """
    rows = []
    for name, res in zip(names, results):
        lt = res.get("long_tail")
        if not isinstance(lt, dict):
            continue
        row = {"name": name, "top1": (res.get("final") or {}).get("stream_accuracy")}
        row.update({key: lt.get(key) for key, _ in LONG_TAIL_COLUMNS if key != "top1"})
        rows.append(row)
    return rows


def plot_per_class_comparison(
    per_class: dict[str, Sequence[float | None]],
    train_counts: Sequence[int],
    path: str | os.PathLike,
    title: str = "Per-class accuracy, classes sorted by training images (head to tail)",
) -> str:
    """Grouped bars: for each class (x, head to tail), one bar per run; the training count of each
    class as a line on a log-scaled right axis.

    Args:
        per_class: run name -> accuracy per class id (None: no test sample).
        train_counts: training images per class id (the order of the x axis).
        path: PNG to write.
        title: figure title.

    Returns:
        the path written.
    """
    order = head_to_tail_order(train_counts)
    n, runs = len(order), len(per_class)
    fig = Figure(figsize=(min(18.0, max(8.0, 0.05 * n * max(runs, 1) + 2)), 4.2))
    ax = fig.subplots()
    width = 0.8 / max(runs, 1)
    x = np.arange(n)
    for k, (name, accs) in enumerate(per_class.items()):
        values = [
            np.nan if c >= len(accs) or accs[c] is None else 100 * float(accs[c]) for c in order
        ]
        ax.bar(x - 0.4 + width * (k + 0.5), values, width=width, label=name)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    step = max(1, int(np.ceil(n / 25)))
    ax.set_xticks(x[::step])
    ax.set_xticklabels([str(order[i]) for i in range(0, n, step)], fontsize=7)
    ax.set_xlabel("class id, from the most to the least frequent in training")
    counts_ax = ax.twinx()
    counts_ax.plot(x, [max(int(train_counts[c]), 1) for c in order], color="black", lw=1)
    counts_ax.set_yscale("log")
    counts_ax.set_ylabel("training images (line, log scale)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    return path


def add_long_tail_sections(
    doc: Document, names: Sequence[str], results: Sequence[dict[str, Any]], out: Path
) -> dict[str, str]:
    """Adds the long-tail table and the per-class bar chart to a comparison document.

    Only runs with per-class accuracy and training counts take part; the x axis follows the
    first such run's counts (runs trained on other counts are named in a note).

    Returns:
        the artifacts written (``per_class_comparison_png``), relative to ``out``.
    """
    rows = long_tail_rows(names, results)
    if not rows:
        return {}
    section = doc.section("Long tail")
    section.table(
        ["run"] + [header for _, header in LONG_TAIL_COLUMNS],
        [
            [row["name"]] + [format_percent(row[key]) for key, _ in LONG_TAIL_COLUMNS]
            for row in rows
        ],
    )
    section.text(
        "Top-1 over the test stream; many / medium / few: mean accuracy of the classes with more "
        "than / between / fewer than the shot thresholds of training images; GM, HM: geometric and "
        "harmonic mean of the per-class recalls (0 when one class has zero recall); lowest recall: "
        "the worst class."
    )
    usable = [
        (name, res)
        for name, res in zip(names, results)
        if res.get("per_class_accuracy") and (res.get("scenario") or {}).get("train_class_counts")
    ]
    if not usable:
        return {}
    counts = usable[0][1]["scenario"]["train_class_counts"]
    others = [name for name, res in usable if res["scenario"]["train_class_counts"] != counts]
    plot_per_class_comparison(
        {name: res["per_class_accuracy"] for name, res in usable},
        counts,
        out / "per_class_comparison.png",
    )
    note = f"Classes sorted by the training counts of {usable[0][0]}."
    if others:
        note += f" These runs trained on other counts: {', '.join(others)}."
    section.text(note).image("per_class_comparison.png", "per-class accuracy of every run")
    return {"per_class_comparison_png": "per_class_comparison.png"}
