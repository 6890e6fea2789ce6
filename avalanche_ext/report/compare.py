"""Side-by-side comparison of several runs: one table and overlaid accuracy curves.

Reads each run's results.json (a run folder, or a work dir whose latest run is taken).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from avalanche_ext.errors import ConfigError
from avalanche_ext.metrics.streaming import seen_accuracy_curve
from avalanche_ext.report import plots
from avalanche_ext.report._document import Document, format_percent, format_value
from avalanche_ext.report.long_tail_compare import add_long_tail_sections
from avalanche_ext.report.summarize import summarize
from avalanche_ext.strict import atomic_write_text

__all__ = ["resolve_run_dir", "load_results", "comparison_rows", "compare_runs", "CURVE_DEFINITION"]

RESULTS_FILE = "results.json"
CURVE_DEFINITION = (
    "average accuracy on the experiences seen so far: after training experience i, "
    "the mean of R[i][0..i]"
)

# (key, header, kind): kind "pct" = fraction shown as a percentage, "num" = plain number.
_COLUMNS = (
    ("name", "run", "str"),
    ("scenario", "scenario", "str"),
    ("stream_accuracy", "final stream acc", "pct"),
    ("stream_forgetting", "forgetting", "pct"),
    ("in_domain", "in-domain", "pct"),
    ("next_domain", "next-domain", "pct"),
    ("backward_transfer", "BwT", "pct"),
    ("forward_transfer", "FwT", "pct"),
    ("score", "score", "pct"),
    ("old_acc", "old acc", "pct"),
    ("new_acc", "new acc", "pct"),
    ("all_acc", "all acc", "pct"),
    ("hm", "old/new HM", "pct"),
    ("transductive_acc", "update's transductive acc", "pct"),
    ("train_images_per_s", "train img/s", "num"),
    ("precision", "precision", "str"),
)
_DISCOVERY_KEYS = ("old_acc", "new_acc", "all_acc", "hm", "transductive_acc")


def resolve_run_dir(path: str | os.PathLike) -> Path:
    """The run folder ``path`` stands for.

    ``path`` is either a run folder (it holds results.json) or a work dir holding timestamped run
    folders: its ``latest`` entry (a symlink, or a file naming the run folder) is followed, and
    without one the last run folder (by name, i.e. timestamp) holding results.json is taken.

    Args:
        path: a run folder or a work dir.

    Returns:
        Path: the run folder (contains results.json).

    Raises:
        ConfigError: when ``path`` is not a folder or no results.json can be found under it.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such directory")
    if (folder / RESULTS_FILE).is_file():
        return folder
    latest = folder / "latest"
    if latest.is_dir():
        target = latest.resolve()
    elif latest.is_file():
        name = latest.read_text(encoding="utf-8").strip()
        target = Path(name) if os.path.isabs(name) else folder / name
    else:
        runs = sorted(p for p in folder.iterdir() if p.is_dir() and (p / RESULTS_FILE).is_file())
        if not runs:
            raise ConfigError(f"{folder}: no {RESULTS_FILE} in it nor in any run folder under it")
        target = runs[-1]
    if not (target / RESULTS_FILE).is_file():
        raise ConfigError(f"{folder}: its latest run {target} has no {RESULTS_FILE}")
    return target


def load_results(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Reads the results.json of a run folder or work dir (see :func:`resolve_run_dir`).

    Args:
        path: a run folder or a work dir.

    Returns:
        tuple[Path, dict[str, Any]]: the run folder and its results.

    Raises:
        ConfigError: when the folder or file is missing, or the file is not a JSON object.
    """
    run_dir = resolve_run_dir(path)
    file = run_dir / RESULTS_FILE
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{file}: cannot read it ({error})") from error
    except json.JSONDecodeError as error:
        raise ConfigError(f"{file}: invalid JSON ({error.msg} at line {error.lineno})") from error
    if not isinstance(results, dict):
        raise ConfigError(f"{file}: expected a JSON object, got {type(results).__name__}")
    return run_dir, results


def _run_name(run_dir: Path, results: dict[str, Any]) -> str:
    """The work dir's name (usually the config's), else the run folder's."""
    work_dir = results.get("work_dir")
    if work_dir:
        return Path(str(work_dir)).name
    return run_dir.parent.name if (run_dir.parent / "latest").exists() else run_dir.name


def comparison_rows(runs: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row of comparable numbers per run (derived blocks computed when missing).

    Args:
        runs: ``(run folder, results)`` pairs, e.g. from :func:`load_results`.

    Returns:
        list[dict[str, Any]]: rows with the keys of the comparison table, plus ``run_dir`` and
        ``curve`` (see :data:`CURVE_DEFINITION`). Names shared by several runs get the run
        folder's name appended.
    """
    rows = []
    for run_dir, raw in runs:
        results = summarize(dict(raw))
        streaming = results.get("streaming") or {}
        final = results.get("final") or {}
        discovery = results.get("discovery") or {}
        row: dict[str, Any] = {
            "name": _run_name(run_dir, results),
            "run_dir": str(run_dir),
            "scenario": (results.get("scenario") or {}).get("type"),
            "stream_accuracy": final.get("stream_accuracy", streaming.get("average_accuracy")),
            "stream_forgetting": final.get(
                "stream_forgetting", streaming.get("average_forgetting")
            ),
            "train_images_per_s": (results.get("timing") or {}).get("train_images_per_s"),
            "precision": results.get("precision"),  # absent in runs made before it was recorded
            "curve": seen_accuracy_curve(results["accuracy_matrix"])
            if results.get("accuracy_matrix")
            else [],
        }
        for key in ("in_domain", "next_domain", "backward_transfer", "forward_transfer", "score"):
            row[key] = streaming.get(key)
        for key in _DISCOVERY_KEYS:
            row[key] = discovery.get(key) if isinstance(discovery, dict) else None
        rows.append(row)
    names = [row["name"] for row in rows]
    for row in rows:
        if names.count(row["name"]) > 1:
            row["name"] = f"{row['name']} ({Path(row['run_dir']).name})"
    return rows


def compare_runs(run_dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Writes ``comparison.md``, ``comparison.html`` and ``accuracy_curves.png`` into ``out_dir``.

    The table has one row per run: scenario type, final stream accuracy and forgetting (Avalanche's,
    as logged), the streaming summary (in-domain, next-domain, BwT, FwT, score), old/new/all
    accuracy when some run has a discovery block, and training throughput. The curves are
    :data:`CURVE_DEFINITION` (seen experiences only, so class-incremental runs are not pulled to
    zero by classes they have not met yet).

    Args:
        run_dirs: run folders or work dirs (see :func:`resolve_run_dir`).
        out_dir: output folder (created when missing).

    Returns:
        dict[str, Any]: ``columns`` (keys shown), ``rows`` (see :func:`comparison_rows`) and
        ``artifacts`` (``comparison_md``, ``comparison_html``, ``accuracy_curves_png``, and for
        runs with class counts ``per_class_comparison_png``, relative to ``out_dir``). Runs with
        a long-tail block also get the long-tail table and the head-to-tail per-class bars
        (:mod:`avalanche_ext.report.long_tail_compare`).

    Raises:
        ConfigError: when a run cannot be found or read.
    """
    runs = [load_results(path) for path in run_dirs]
    rows = comparison_rows(runs)
    has_discovery = any(row[key] is not None for row in rows for key in _DISCOVERY_KEYS)
    columns = [c for c in _COLUMNS if has_discovery or c[0] not in _DISCOVERY_KEYS]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    artifacts = {"comparison_md": "comparison.md", "comparison_html": "comparison.html"}
    curves = {row["name"]: row["curve"] for row in rows if row["curve"]}
    doc = Document(f"Comparison of {len(rows)} runs")
    table = doc.section("Results")
    cells = []
    for row in rows:
        cells.append(
            [
                format_percent(row[key]) if kind == "pct" else format_value(row[key])
                for key, _, kind in columns
            ]
        )
    table.table([header for _, header, _ in columns], cells)
    table.text(
        "Final stream accuracy and forgetting are Avalanche's metrics after the last experience; "
        "in-domain, next-domain, BwT, FwT and score summarise the accuracy matrix R "
        "(see each run's report.md)."
    )
    if curves:
        plots.plot_accuracy_curves(curves, out / "accuracy_curves.png")
        artifacts["accuracy_curves_png"] = "accuracy_curves.png"
        doc.section("Accuracy over the stream").text(f"Curves: {CURVE_DEFINITION}.").image(
            "accuracy_curves.png", "accuracy curves"
        )
    summarized = [summarize(dict(results)) for _, results in runs]
    artifacts.update(add_long_tail_sections(doc, [row["name"] for row in rows], summarized, out))
    runs_section = doc.section("Runs")
    runs_section.table(["run", "folder"], [[row["name"], row["run_dir"]] for row in rows])
    atomic_write_text(out / "comparison.md", doc.to_markdown())
    atomic_write_text(out / "comparison.html", doc.to_html(str(out)))
    return {"columns": [key for key, _, _ in columns], "rows": rows, "artifacts": artifacts}
