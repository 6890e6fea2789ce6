#!/usr/bin/env python
"""Long-tail methods on the full CIFAR-100-LT (rho 100, 10,847 images), several seeds, paired
differences against cross-entropy, and Model Doctor against the same fine-tuning unconstrained.

    python benchmarks/longtail_seeds.py [--epochs 40] [--depth 20] [--seeds 0,1,2]
                                        [--only ce,gml] [--no-write] [--fresh]

Every method is its ``configs/longtail/<method>_resnet32_cpu_cifar100-lt-r100.py`` with the same
budget overrides (epochs, depth, data), so methods differ only in what their config adds to the
cross-entropy baseline. The data split is the same for every run (``scenario.seed=0``); the seed
changes the initialisation, the batches and the augmentation. A finished run is reused unless
``--fresh`` (runs go to ``work_dirs/benchmarks/longtail_seeds/<method>/seed<k>/``), so an
interrupted benchmark continues where it stopped.

The two-stage methods (cRT, GML, both Model Doctor rows) are the cross-entropy config plus a plugin
that acts after training, so their first stage IS the cross-entropy run of the same seed: they start
from its checkpoint (``load_from``, 0 epochs) instead of training it again. This is exact, not an
approximation: GML from the seed-0 cross-entropy checkpoint gave the same 35.89 % top-1 as the whole
two-stage run (each plugin draws from its own seeded generator). Their time column is the
cross-entropy run's time plus the second stage's. Jobs run cheapest-first for the seeds: the
cross-entropy seeds, then the second stages, then the methods that train from scratch.

Times are only comparable on a quiet machine: while a file ``PAUSE`` exists in the work root the
script waits before its next job (nothing else should run during one), so other work can be
done between runs without inflating a run's time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
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

__all__ = [
    "METHODS",
    "PAIRS",
    "budget_options",
    "main",
    "paired_differences",
    "seed_means",
    "tables",
]

# The methods whose direction the literature knows, GML, and Model Doctor with its fair baseline.
METHODS = (
    "ce",
    "balanced-softmax",
    "logit-adjusted",
    "ldam-drw",
    "crt",
    "gml",
    "model-doctor",
    "model-doctor-unconstrained",
)
# Methods whose first stage is the cross-entropy run: they start from its checkpoint.
STAGE_TWO = ("crt", "gml", "model-doctor", "model-doctor-unconstrained")
# (method, baseline) pairs whose per-seed differences are reported.
PAIRS = tuple((m, "ce") for m in METHODS if m != "ce") + (
    ("model-doctor", "model-doctor-unconstrained"),
)
METRICS = ("top-1", "many", "medium", "few", "GM", "HM", "lowest recall")
BEGIN, END = "<!-- longtail-seeds:begin -->", "<!-- longtail-seeds:end -->"


def _sibling(name: str):
    """``benchmarks/<name>.py`` as a module (this folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"_bench_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_single = _sibling("longtail")  # results_row, cpu_name, the section writer


def config_path(method: str) -> Path:
    return REPO / "configs" / "longtail" / f"{method}_resnet32_cpu_cifar100-lt-r100.py"


def budget_options(
    epochs: int,
    depth: int,
    base_channels: int,
    seed: int,
    test_subset: int | None = None,
    n_max: int = 500,
) -> dict[str, Any]:
    """The overrides of every run: the budget, the full 10,847-image split and the run seed.

    Args:
        epochs: one-cycle training epochs (the configs' own schedule otherwise).
        depth: CifarResNet depth (6n+2).
        base_channels: width of the first stage (16 in the paper).
        seed: the run seed (the data split stays ``scenario.seed=0``).
        test_subset: test images per class (None: all 100).
        n_max: images of the largest class (500: the standard 10,847-image split; smaller only
            to check that the script works).
    """
    return {
        "cl_strategy.train_epochs": epochs,
        "model.backbone.depth": depth,
        "model.backbone.base_channels": base_channels,
        "model.head.in_channels": 4 * base_channels,
        "scenario.n_max": n_max,
        "scenario.seed": 0,
        "scenario.test_subset": test_subset,
        "seed": seed,
        "loggers": [dict(type="TextLogger")],
        "checkpoint_config": dict(interval=1),
    }


def _finished(work_dir: Path, options: dict[str, Any]) -> dict[str, Any] | None:
    """The results of an earlier completed run with the same overrides, else None."""
    path = work_dir / "latest" / "results.json"
    stamp = work_dir / "options.json"
    if not (path.exists() and stamp.exists()):
        return None
    if json.loads(stamp.read_text()) != json.loads(json.dumps(options)):
        return None
    results = json.loads(path.read_text())
    return results if results.get("status") == "completed" else None


def _run_dir(work_root: Path, method: str, seed: int) -> Path:
    """Where ``method`` at ``seed`` keeps its runs."""
    return work_root / method / f"seed{seed}"


def _checkpoint(work_root: Path, method: str, seed: int) -> Path:
    """The final checkpoint of a finished run (its last experience)."""
    folder = _run_dir(work_root, method, seed) / "latest" / "checkpoints"
    return sorted(folder.glob("experience_*.pth"))[-1]


def _stage_two_options(options: dict[str, Any], work_root: Path) -> dict[str, Any]:
    """A second stage's overrides: the cross-entropy run's final weights, no first-stage epoch."""
    return {
        **options,
        "load_from": str(_checkpoint(work_root, "ce", options["seed"])),
        "cl_strategy.train_epochs": 0,
    }


def is_finished(method: str, options: dict[str, Any], work_root: Path) -> bool:
    """Whether ``method`` at this seed already has a finished run with these overrides."""
    if method in STAGE_TWO:
        if not is_finished("ce", options, work_root):
            return False
        options = _stage_two_options(options, work_root)
    return _finished(_run_dir(work_root, method, options["seed"]), options) is not None


def run_stage_two(method: str, options: dict[str, Any], work_root: Path, fresh: bool) -> dict:
    """A two-stage method from the cross-entropy run of the same seed (run first if needed)."""
    first = run_one("ce", options, work_root, fresh=False)
    row = run_one(method, _stage_two_options(options, work_root), work_root, fresh)
    row["time (s)"] = (first["time (s)"] or 0.0) + (row["time (s)"] or 0.0)
    return row


def jobs(methods: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """(method, seed) in running order: cross-entropy first, then the second stages, then the rest."""

    def rank(job: tuple[str, int]) -> tuple[int, int, int]:
        method, seed = job
        group = 0 if method == "ce" else 1 if method in STAGE_TWO else 2
        return group, seed, methods.index(method)

    return sorted(((m, s) for m in methods for s in seeds), key=rank)


def wait_while_paused(flag: Path, poll_s: float = 5.0) -> None:
    """Blocks while ``flag`` exists (between jobs, so no run's time includes the pause)."""
    if flag.exists():
        print(f"paused: remove {flag} to continue", flush=True)
    while flag.exists():
        time.sleep(poll_s)


def run_one(method: str, options: dict[str, Any], work_root: Path, fresh: bool) -> dict:
    """One method at one seed: its table row (reused when already finished)."""
    work_dir = _run_dir(work_root, method, options["seed"])
    results = None if fresh else _finished(work_dir, options)
    if results is None:
        path = config_path(method)
        t0 = time.time()
        results = run(
            load_config(path, dict(options)),
            work_dir=str(work_dir),
            config_path=str(path.relative_to(REPO)),
        )
        results.setdefault("timing", {})["wall_s"] = time.time() - t0
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / "options.json").write_text(json.dumps(options, indent=1))
    return _single.results_row(results)


def seed_means(rows: dict[str, dict[int, dict]]) -> dict[str, dict[str, tuple[float, float]]]:
    """``method -> metric -> (mean, sample std)`` over the seeds (std 0 for one seed); metrics a
    run lacks are skipped."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for method, by_seed in rows.items():
        out[method] = {}
        for metric in (*METRICS, "time (s)"):
            values = [r[metric] for r in by_seed.values() if r.get(metric) is not None]
            if values:
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                out[method][metric] = (statistics.fmean(values), spread)
    return out


def paired_differences(
    rows: dict[str, dict[int, dict]], method: str, baseline: str
) -> dict[str, tuple[float, float, int]]:
    """``metric -> (mean, sample std, n)`` of ``method - baseline`` over the seeds both ran."""
    seeds = sorted(set(rows.get(method, {})) & set(rows.get(baseline, {})))
    out: dict[str, tuple[float, float, int]] = {}
    for metric in METRICS:
        diffs = [
            rows[method][s][metric] - rows[baseline][s][metric]
            for s in seeds
            if rows[method][s].get(metric) is not None and rows[baseline][s].get(metric) is not None
        ]
        if diffs:
            spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            out[metric] = (statistics.fmean(diffs), spread, len(diffs))
    return out


def _cell(value: tuple | None, signed: bool = False, time_col: bool = False) -> str:
    if value is None:
        return "-"
    mean, spread = value[0], value[1]
    if time_col:
        return f"{mean:.0f}"
    sign = "+" if signed else ""
    return f"{100 * mean:{sign}.2f} ± {100 * spread:.2f}"


def tables(rows: dict[str, dict[int, dict]]) -> str:
    """Markdown: mean ± std over seeds per method, then the paired differences (points)."""
    means = seed_means(rows)
    head = "| method | seeds | " + " | ".join((*METRICS, "time (s)")) + " |"
    lines = [head, "|---" * (len(METRICS) + 3) + "|"]
    for method, by_metric in means.items():
        cells = [_cell(by_metric.get(m)) for m in METRICS]
        cells.append(_cell(by_metric.get("time (s)"), time_col=True))
        lines.append(f"| {method} | {len(rows[method])} | " + " | ".join(cells) + " |")
    lines += ["", "Paired differences (same seed), points, mean ± std over seeds:", ""]
    lines += [
        "| method - baseline | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for method, baseline in PAIRS:
        diff = paired_differences(rows, method, baseline)
        if diff:
            cells = [_cell(diff.get(m), signed=True) for m in METRICS]
            lines.append(f"| {method} - {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _section(rows: dict, args: argparse.Namespace, started: str) -> str:
    return (
        "## Long-tail methods on the full CIFAR-100-LT (rho 100), several seeds, CPU\n\n"
        f"Every `configs/longtail/<method>_resnet32_cpu_cifar100-lt-r100.py` with the same "
        f"overrides: {args.epochs} one-cycle epochs, CifarResNet-{args.depth} "
        f"(width {args.base_channels}), n_max {args.n_max} (500: all 10,847 training images; "
        "scenario seed 0), "
        f"{args.test_subset or 100} test images per class, run seeds {args.seeds}. "
        "Accuracies in %, mean ± sample std over seeds; GM / HM are 0 when a class has zero "
        "recall. Time: wall time of one run (a two-stage method: the cross-entropy run plus its "
        "second stage).\n\n"
        f"Machine: {_single.cpu_name()}, CPU only. Date: {started}. {args.note}\n"
        f"Command: `python benchmarks/longtail_seeds.py --epochs {args.epochs} --depth "
        f"{args.depth} --base-channels {args.base_channels} --n-max {args.n_max} --seeds {args.seeds}"
        + (f" --only {args.only}" if args.only else "")
        + (" --finished-only" if args.finished_only else "")
        + "`\n\n"
        + tables(rows)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--depth", type=int, default=20, help="CifarResNet depth (6n+2)")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--test-subset", type=int, default=0, help="test images per class (0: all)")
    parser.add_argument("--n-max", type=int, default=500, help="500: the standard split")
    parser.add_argument("--only", default="", help="comma-separated methods (default: all)")
    parser.add_argument("--fresh", action="store_true", help="rerun finished runs")
    parser.add_argument("--no-write", action="store_true", help="print the tables only")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="tabulate the finished runs and start none (a table of a benchmark still going)",
    )
    parser.add_argument("--note", default="")
    parser.add_argument(
        "--work-root", default=str(REPO / "work_dirs" / "benchmarks" / "longtail_seeds")
    )
    args = parser.parse_args(argv)
    methods = [m for m in args.only.split(",") if m] or list(METHODS)
    unknown = [m for m in methods if not config_path(m).is_file()]
    if unknown:
        print(f"error: --only: no CPU config for {unknown}", file=sys.stderr)
        return 2
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows: dict[str, dict[int, dict]] = {m: {} for m in methods}
    for method, seed in jobs(methods, [int(s) for s in args.seeds.split(",")]):
        wait_while_paused(Path(args.work_root) / "PAUSE")
        options = budget_options(
            args.epochs, args.depth, args.base_channels, seed, args.test_subset or None, args.n_max
        )
        if args.finished_only and not is_finished(method, options, Path(args.work_root)):
            continue
        runner = run_stage_two if method in STAGE_TWO else run_one
        rows[method][seed] = runner(method, options, Path(args.work_root), args.fresh)
        print(json.dumps({"method": method, "seed": seed, **rows[method][seed]}), flush=True)
    text = _section(rows, args, started)
    print(text)
    if not args.no_write:
        _single.write_section(REPO / "benchmarks" / "RESULTS.md", text, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
