"""Mean and standard deviation over runs that differ only in their seed (``--seeds 0 1 2``).

A single run's +-0.01 is noise, not a result: benchmark tables quote ``mean +- std`` over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["SEED_DIFFERENCES", "SEED_KEYS", "aggregate_seeds", "seeds_markdown"]

SEED_KEYS: dict[str, tuple[str, ...]] = {
    "final_accuracy": ("final", "stream_accuracy"),
    "old_acc": ("discovery", "old_acc"),
    "new_acc": ("discovery", "new_acc"),
    "all_acc": ("discovery", "all_acc"),
    "hm": ("discovery", "hm"),
    "floor_hm": ("discovery", "floor", "frost_task_agnostic", "hm"),
    "floor_old_acc": ("discovery", "floor", "frost_task_agnostic", "old_acc"),
    "floor_all_acc": ("discovery", "floor", "frost_task_agnostic", "all_acc"),
    "task_aware_all_acc": ("discovery", "conventions", "frost_task_aware", "all_acc"),
    "routing_auroc": ("discovery", "routing_auroc"),
    "cluster_acc": ("discovery", "cluster_acc"),
    "transductive_acc": ("discovery", "transductive_acc"),
    "tradeoff_auc": ("discovery", "tradeoff", "auc"),
    "gate_auroc": ("discovery", "gate", "auroc"),
    "novel_predicted_new": ("discovery", "novel_predicted_new"),
    "total_s": ("timing", "total_s"),
}
"""Row name -> path into ``results.json``."""

SEED_DIFFERENCES: dict[str, tuple[str, str]] = {
    "hm_gain": ("hm", "floor_hm"),
    "all_acc_gain": ("all_acc", "floor_all_acc"),
    "old_acc_drop": ("floor_old_acc", "old_acc"),
}
"""Row name -> ``(a, b)``: ``a - b`` per run (paired by seed, so the base model's seed-to-seed
spread cancels), then mean and std like any other row. "Does the update beat the base model?"
is this row, not two overlapping means."""


def _get(results: Mapping[str, Any], path: Sequence[str]) -> float | None:
    node: Any = results
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def aggregate_seeds(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{name: {"mean", "std", "values", "n"}}`` for every :data:`SEED_KEYS` and
    :data:`SEED_DIFFERENCES` entry present.

    ``std`` is the sample standard deviation (``n - 1``; None for one run). Runs lacking a value
    are left out of that row (``n`` says how many counted).
    """
    out: dict[str, Any] = {"seeds": [r.get("seed") for r in runs]}
    per_run = [{name: _get(r, path) for name, path in SEED_KEYS.items()} for r in runs]
    for row in per_run:
        for name, (a, b) in SEED_DIFFERENCES.items():
            row[name] = None if row[a] is None or row[b] is None else row[a] - row[b]
    for name in (*SEED_KEYS, *SEED_DIFFERENCES):
        values = [row[name] for row in per_run if row[name] is not None]
        if not values:
            continue
        mean = sum(values) / len(values)
        std = (
            math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else None
        )
        out[name] = {"mean": mean, "std": std, "values": values, "n": len(values)}
    return out


def seeds_markdown(summary: Mapping[str, Any]) -> str:
    """A markdown table of :func:`aggregate_seeds`."""
    lines = [
        f"Seeds: {summary.get('seeds')}",
        "",
        "| metric | mean | std | values |",
        "|---|--:|--:|---|",
    ]
    for name in (*SEED_KEYS, *SEED_DIFFERENCES):
        row = summary.get(name)
        if not row:
            continue
        std = "" if row["std"] is None else f"{row['std']:.4f}"
        values = ", ".join(f"{v:.4f}" for v in row["values"])
        lines.append(f"| {name} | {row['mean']:.4f} | {std} | {values} |")
    return "\n".join(lines) + "\n"
