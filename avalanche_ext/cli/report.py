"""Re-renders one run's report, or compares several runs, from their results.json.

Usage: ``python tools/report.py WORK_DIR [WORK_DIR ...] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import avalanche_ext  # noqa: E402, F401  - applies the stack's import fixes first
from avalanche_ext.errors import ConfigError  # noqa: E402
from avalanche_ext.report import compare_runs, load_results, summarize, write_report  # noqa: E402
from avalanche_ext.strict import atomic_write_text  # noqa: E402
from avalanche_ext.utils import to_jsonable  # noqa: E402

__all__ = ["main", "parse_args"]

DEFAULT_COMPARISON_DIR = os.path.join("work_dirs", "comparison")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line.

    Args:
        argv: arguments without the program name (``sys.argv[1:]`` when None).

    Returns:
        argparse.Namespace: ``work_dirs`` (list of paths) and ``out`` (path or None).
    """
    parser = argparse.ArgumentParser(
        description="One WORK_DIR: re-render its latest run's report (figures, report.md, "
        "report.html). Several: write a comparison table and accuracy curves.",
    )
    parser.add_argument(
        "work_dirs",
        nargs="+",
        metavar="WORK_DIR",
        help="a run folder (with results.json) or a work dir (its latest run is used)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (one run: default its run folder; several: "
        f"default {DEFAULT_COMPARISON_DIR})",
    )
    return parser.parse_args(argv)


def _write_json(path: Path, data: dict) -> None:
    """Writes strict JSON atomically, so an interrupted write never leaves half a results.json."""
    text = json.dumps(to_jsonable(data), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")


def main(argv: list[str] | None = None) -> int:
    """Runs the tool.

    With one folder the run's derived blocks are recomputed and its report is written into the run
    folder (whose results.json is then updated with them and the artifact paths) or into ``--out``
    (the run folder is left untouched). With several, the comparison goes to ``--out``.

    Args:
        argv: arguments without the program name (``sys.argv[1:]`` when None).

    Returns:
        int: 0 on success, 2 on bad input (with one ``error: ...`` line on stderr).
    """
    args = parse_args(argv)
    try:
        if len(args.work_dirs) == 1:
            run_dir, results = load_results(args.work_dirs[0])
            summarize(results)
            out = Path(args.out) if args.out else run_dir
            artifacts = write_report(results, str(out))
            if out.resolve() == run_dir.resolve():
                _write_json(run_dir / "results.json", results)
            for name, path in artifacts.items():
                print(f"{name}: {out / path}")
        else:
            out = Path(args.out or DEFAULT_COMPARISON_DIR)
            comparison = compare_runs(args.work_dirs, out)
            for name, path in comparison["artifacts"].items():
                print(f"{name}: {out / path}")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
