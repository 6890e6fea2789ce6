"""What the app shows of run folders: the list with status and headline numbers, the comparison
table, per-class bars (head to tail) and accuracy matrices. Reads only; figures are returned as
data URIs, never written."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from avalanche_ext.errors import ConfigError
from avalanche_ext.history import HISTORY_FILE, read_history

__all__ = ["RunIndex", "compare_runs", "old_new_harmonic_mean", "run_summary"]

_MAX_DEPTH = 3
_TABLE = (
    ("accuracy", ("final", "stream_accuracy")),
    ("GM", ("long_tail", "geometric_mean")),
    ("HM", ("long_tail", "harmonic_mean")),
    ("lowest recall", ("long_tail", "lowest_recall")),
    ("many", ("long_tail", "many_acc")),
    ("medium", ("long_tail", "medium_acc")),
    ("few", ("long_tail", "few_acc")),
    ("discovery old", ("discovery", "old_acc")),
    ("discovery new", ("discovery", "new_acc")),
    ("discovery all", ("discovery", "all_acc")),
    ("discovery HM", ("discovery", "old_new_harmonic_mean")),
)


def old_new_harmonic_mean(old: float | None, new: float | None) -> float | None:
    """The harmonic mean of old- and new-class accuracy (the H-score discovery and generalized
    category discovery papers report beside old/new/all): high only when both are."""
    if old is None or new is None:
        return None
    return 0.0 if old + new == 0 else 2 * old * new / (old + new)


def _get(results: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = results
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _read_results(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunIndex:
    """The run folders under the work roots, named by ids the page sends back (never paths).

    Args:
        roots: the folders whose runs the app lists (and where it starts new ones).
    """

    def __init__(self, roots: list[Path]):
        self.roots = [Path(r).resolve() for r in roots]

    def run_id(self, run_dir: str | os.PathLike) -> str:
        path = Path(run_dir).resolve()
        for i, root in enumerate(self.roots):
            if path.is_relative_to(root):
                return f"{i}:{path.relative_to(root).as_posix()}"
        raise ConfigError(f"{run_dir}: not under the app's work folders")

    def resolve(self, run_id: str) -> Path:
        """The run folder of an id from the page.

        Raises:
            ConfigError: an id that names no run folder under the roots.
        """
        index, _, rel = str(run_id).partition(":")
        try:
            root = self.roots[int(index)]
        except (ValueError, IndexError):
            raise ConfigError(f"run {run_id!r}: unknown") from None
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not (path / "config.py").is_file():
            raise ConfigError(f"run {run_id!r}: unknown")
        return path

    def folders(self) -> list[Path]:
        """Every run folder (holding ``config.py``), newest first."""
        found: list[Path] = []
        for root in self.roots:
            found.extend(_walk(root, 0))
        return sorted(set(found), key=lambda p: p.stat().st_mtime, reverse=True)


def _walk(folder: Path, depth: int) -> list[Path]:
    if depth > _MAX_DEPTH or not folder.is_dir():
        return []
    if (folder / "config.py").is_file():
        return [folder]
    out: list[Path] = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
            out.extend(_walk(child, depth + 1))
    return out


def run_summary(run_dir: Path, running: bool, error: str | None = None) -> dict[str, Any]:
    """Status, config, date and headline numbers of one run folder.

    Args:
        run_dir: the run folder.
        running: whether an app job is training it now.
        error: a failed job's error line.
    """
    results = _read_results(run_dir)
    status = "running" if running else (results or {}).get("status")
    if status is None:
        status = "failed" if error else "incomplete"
    history = read_history(run_dir) if (run_dir / HISTORY_FILE).is_file() else []
    return {
        "name": f"{run_dir.parent.name}/{run_dir.name}",
        "status": status,
        "error": error,
        "config": (results or {}).get("config") or "config.py",
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(run_dir.stat().st_mtime)),
        "headline": {label: _get(results or {}, path) for label, path in _TABLE[:4]},
        "has_checkpoint": (run_dir / "checkpoints" / "latest.pth").is_file(),
        "has_report": (run_dir / "report.html").is_file(),
        "discovery": bool(_get(results or {}, ("scenario", "novel_classes"))),
        "epochs": len(history),
    }


def _per_class_png(names: list[str], results: list[dict[str, Any]]) -> str | None:
    """Per-class accuracy bars of the runs, head to tail, as a PNG data URI."""
    from avalanche_ext.report.long_tail_compare import plot_per_class_comparison  # noqa: PLC0415

    per_class = {n: r.get("per_class_accuracy") for n, r in zip(names, results)}
    if not all(per_class.values()):
        return None
    counts = _get(results[0], ("scenario", "train_class_counts"))
    width = len(next(iter(per_class.values())))
    counts = list(counts) if counts and len(counts) == width else [1] * width
    with tempfile.TemporaryDirectory() as tmp:  # the figure is drawn to a file, read, dropped
        path = plot_per_class_comparison(per_class, counts, os.path.join(tmp, "bars.png"))
        data = Path(path).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def compare_runs(run_dirs: list[Path]) -> dict[str, Any]:
    """The Compare tab's content for completed runs.

    Raises:
        ConfigError: a run without results.json.
    """
    names, all_results = [], []
    for run_dir in run_dirs:
        results = _read_results(run_dir)
        if results is None:
            raise ConfigError(f"{run_dir.name}: no results.json yet (not finished)")
        names.append(f"{run_dir.parent.name}/{run_dir.name}")
        all_results.append(results)
    from avalanche_ext.report import summarize  # noqa: PLC0415

    views = [summarize(dict(r)) for r in all_results]
    for view in views:
        block = view.get("discovery")
        if isinstance(block, dict):
            block["old_new_harmonic_mean"] = old_new_harmonic_mean(
                block.get("old_acc"), block.get("new_acc")
            )
    columns = [label for label, path in _TABLE if any(_get(v, path) is not None for v in views)]
    rows = [
        {"name": n, **{label: _get(v, path) for label, path in _TABLE if label in columns}}
        for n, v in zip(names, views)
    ]
    return {
        "columns": columns,
        "rows": rows,
        "per_class_png": _per_class_png(names, views),
        "accuracy_matrices": [
            {"name": n, "matrix": v.get("accuracy_matrix") or []} for n, v in zip(names, views)
        ],
    }
