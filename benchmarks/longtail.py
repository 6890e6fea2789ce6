#!/usr/bin/env python
"""Every CPU long-tail config (``configs/longtail/*_cpu_*.py``) at one short budget on the same data,
and the table of top-1, many/medium/few, GM, HM, lowest recall and time in ``benchmarks/RESULTS.md``.

    python benchmarks/longtail.py [--epochs 3] [--depth 8] [--n-max 200] [--test-subset 20]
                                  [--only ce,balanced-softmax] [--no-write]

The budget overrides the same keys of every config (``--cfg-options`` style), so the methods
differ only in what their config adds to the CE baseline. Runs go to
``work_dirs/benchmarks/longtail/<config>/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import avalanche_ext  # noqa: E402, F401  (fixes before torchvision/avalanche)

# isort: split
from avalanche_ext.config import load_config  # noqa: E402
from avalanche_ext.runner import run  # noqa: E402

__all__ = ["budget_options", "cpu_configs", "main", "results_row", "table"]

BEGIN, END = "<!-- longtail-benchmark:begin -->", "<!-- longtail-benchmark:end -->"
COLUMNS = ("top-1", "many", "medium", "few", "GM", "HM", "lowest recall", "time (s)")


def cpu_configs(only: list[str] | None = None) -> list[Path]:
    """The CPU long-tail configs, CE first, then alphabetical; ``only``: method name prefixes."""
    paths = sorted((REPO / "configs" / "longtail").glob("*_cpu_*.py"))
    paths.sort(key=lambda p: (not p.name.startswith("ce_"), p.name))
    if only:
        paths = [p for p in paths if p.name.split("_", 1)[0] in only]
    return paths


def budget_options(epochs: int, depth: int | None, n_max: int, test_subset: int | None) -> dict:
    """The overrides applied to every config."""
    options: dict[str, Any] = {
        "cl_strategy.train_epochs": epochs,
        "scenario.n_max": n_max,
        "scenario.test_subset": test_subset,
        "loggers": [dict(type="TextLogger")],
        "checkpoint_config": dict(interval=1),
    }
    if depth is not None:
        options["model.backbone.depth"] = depth
    return options


def results_row(results: dict) -> dict[str, float | None]:
    """The table's numbers from one ``results.json``."""
    lt = results.get("long_tail") or {}
    return {
        "top-1": (results.get("final") or {}).get("stream_accuracy"),
        "many": lt.get("many_acc"),
        "medium": lt.get("medium_acc"),
        "few": lt.get("few_acc"),
        "GM": lt.get("geometric_mean"),
        "HM": lt.get("harmonic_mean"),
        "lowest recall": lt.get("lowest_recall"),
        "time (s)": (results.get("timing") or {}).get("total_s"),
    }


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if name == "time (s)" else f"{100 * value:.2f}"


def table(rows: dict[str, dict[str, float | None]]) -> str:
    """A markdown table, accuracies in %."""
    lines = ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for method, row in rows.items():
        lines.append(f"| {method} | " + " | ".join(_fmt(c, row[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU model as ``lscpu`` reports it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown CPU"
    found = re.search(r"Model name:\s*(.+)", out)
    return found.group(1).strip() if found else platform.processor() or "unknown CPU"


def write_section(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replaces a benchmark's section of RESULTS.md, between the ``begin`` and ``end`` markers
    (this one's by default), or appends it, leaving the rest."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"{begin}\n{text.rstrip()}\n{end}\n"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + section + rest.split(end, 1)[1].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + section
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--depth", type=int, default=8, help="CifarResNet depth (0: the config's)")
    parser.add_argument("--n-max", type=int, default=200, help="images of the largest class")
    parser.add_argument("--test-subset", type=int, default=20, help="test images per class")
    parser.add_argument("--only", default="", help="comma-separated method names")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--note", default="", help="appended to the section (e.g. 'under load')")
    args = parser.parse_args(argv)

    options = budget_options(args.epochs, args.depth or None, args.n_max, args.test_subset)
    rows: dict[str, dict[str, float | None]] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for path in cpu_configs([s for s in args.only.split(",") if s]):
        method = path.name.split("_", 1)[0]
        cfg = load_config(path, dict(options))
        t0 = time.time()
        results = run(
            cfg,
            device=args.device,
            work_dir=str(REPO / "work_dirs" / "benchmarks" / "longtail" / path.stem),
            config_path=str(path.relative_to(REPO)),
        )
        rows[method] = results_row(results)
        rows[method]["time (s)"] = time.time() - t0
        print(json.dumps({"method": method, **rows[method]}), flush=True)

    depth = f"CifarResNet-{args.depth}" if args.depth else "the configs' ResNet-32"
    text = (
        "## Long-tail methods on CIFAR-100-LT (rho 100), CPU budget\n\n"
        f"Every `configs/longtail/*_cpu_*.py` with the same overrides: {args.epochs} epochs "
        f"(one-cycle), {depth}, the rho-100 exponential profile with n_max = {args.n_max} "
        f"({args.n_max} down to {max(1, args.n_max // 100)} images per class), "
        f"{args.test_subset or 100} test images per class, seed 0. Shot groups: many > 100, "
        "few < 20 training images. Accuracies in %; GM / HM are 0 as soon as one class has zero "
        "recall. Time: wall time of the whole run (build, train, evaluate, report).\n\n"
        f"Machine: {cpu_name()}, CPU only, 1 thread pinned to one core. Date: {started}. "
        f"{args.note}\n"
        "Command: `OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 1 python benchmarks/longtail.py "
        f"--epochs {args.epochs} --depth {args.depth} --n-max {args.n_max} "
        f"--test-subset {args.test_subset}`\n\n" + table(rows) + "\n"
    )
    print(text)
    if not args.no_write:
        write_section(REPO / "benchmarks" / "RESULTS.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
