#!/usr/bin/env python
"""Run one continual-learning experiment from an OpenMMLab-style config.

    python train_config.py CONFIG [--device cpu|cuda|cuda:N] [--work-dir DIR]
        [--cfg-options k=v ...] [--seed N | --seeds N N ...] [--resume [PATH]]
        [--resume-with-changes] [--dry-run]
        [--debug]
        [--launcher none|pytorch]
    torchrun --nproc_per_node N train_config.py CONFIG --launcher pytorch [...]

A thin CLI over :func:`avalanche_ext.runner.run`. User mistakes end with one ``error: ...`` line on
stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if os.getcwd() not in sys.path:
    sys.path.insert(1, os.getcwd())  # so custom_imports finds the user's own modules

import avalanche_ext  # noqa: E402, F401  (import fixes first, before mmengine/torchvision)
from avalanche_ext.errors import ConfigError, RunFailed  # noqa: E402
from avalanche_ext.signals import Interrupted  # noqa: E402

EXIT_USER_ERROR = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="config file (configs/... or config/...)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--work-dir", help="where run folders go (default: work_dirs/<config name>)"
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default=None,
        help="override config keys, e.g. cl_strategy.train_epochs=2",
    )
    parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="run once per seed (into WORK_DIR/seed_N) and write seeds_summary.json/.md: "
        "mean and std of the headline numbers",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        help="continue the newest run of the work dir, or the given checkpoint/run folder",
    )
    parser.add_argument(
        "--resume-with-changes",
        action="store_true",
        help="with --resume: continue even though the config differs from the run's own "
        "(the differences are listed; the new config becomes the run's config.py)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="build everything, train nothing, print the streams as JSON",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--launcher",
        choices=["none", "pytorch"],
        default="none",
        help="pytorch: one process of a torchrun job (DDP; gloo on cpu, nccl on cuda:LOCAL_RANK)",
    )
    # torch.distributed.launch (the predecessor of torchrun) passes --local-rank; torchrun sets env.
    parser.add_argument("--local-rank", "--local_rank", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except (RecursionError, AssertionError, ValueError, SyntaxError) as err:
        # mmengine's DictAction fails on values it cannot parse (e.g. "x=dict(a=1)")
        print(
            f"error: --cfg-options: cannot parse the overrides ({type(err).__name__})",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    from avalanche_ext import distributed  # noqa: PLC0415

    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    try:
        device = distributed.init_distributed(args.launcher, args.device)
        from avalanche_ext.config import load_config  # noqa: PLC0415
        from avalanche_ext.runner import run  # noqa: PLC0415

        cfg = load_config(args.config, args.cfg_options)
        if args.seeds:
            return _run_seeds(args, cfg, run)
        result = run(
            cfg,
            device=device,
            work_dir=args.work_dir,
            seed=args.seed,
            resume=args.resume,
            resume_with_changes=args.resume_with_changes,
            dry_run=args.dry_run,
            config_path=args.config,
            progress=(lambda msg: print(msg, file=sys.stderr, flush=True))
            if distributed.is_main()
            else None,
        )
    except (ConfigError, RunFailed) as err:  # RunFailed: diverged, disk full (results.json says)
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code if isinstance(err, RunFailed) else EXIT_USER_ERROR
    except Interrupted as err:
        return err.exit_code  # the runner printed where the checkpoint is and how to resume
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        main_process = distributed.is_main()
        distributed.teardown()
    if main_process:  # rank 0 alone prints the summary
        _print_summary(result, args.dry_run)
    return 0


def _print_summary(result: dict, dry_run: bool) -> None:
    """The dry run's description, or where the run is and its headline numbers, as JSON (a
    discovery run's ``final`` holds its mapped all-class accuracy, old, new and their HM)."""
    if dry_run:
        print(json.dumps(result, indent=2))
        return
    summary = {
        "run_dir": result.get("run_dir"),
        "final": result.get("final", {}),
        "report": result.get("artifacts", {}).get("report_md"),
    }
    print(json.dumps(summary, indent=2))


def _run_seeds(args: argparse.Namespace, cfg, run) -> int:
    """``--seeds``: one run per seed, then the mean/std summary beside them."""
    from avalanche_ext.report.seeds import aggregate_seeds, seeds_markdown  # noqa: PLC0415
    from avalanche_ext.strict import atomic_write_text  # noqa: PLC0415

    if args.seed is not None or args.resume or args.dry_run:
        raise ConfigError("--seeds: cannot be combined with --seed, --resume or --dry-run")
    repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if repeated:  # the summary's mean and std would count one run twice
        raise ConfigError(f"--seeds: seed {repeated[0]} is given twice; give each seed once")
    work = Path(args.work_dir or cfg.get("work_dir") or Path("work_dirs") / Path(args.config).stem)
    runs = []
    for seed in args.seeds:
        runs.append(
            run(
                cfg.copy(),
                device=args.device,
                work_dir=str(work / f"seed_{seed}"),
                seed=seed,
                config_path=args.config,
                progress=lambda msg, s=seed: print(
                    f"[seed {s}] {msg}", file=sys.stderr, flush=True
                ),
            )
        )
    summary = aggregate_seeds(runs)
    atomic_write_text(work / "seeds_summary.json", json.dumps(summary, indent=2))
    atomic_write_text(work / "seeds_summary.md", seeds_markdown(summary))
    print(json.dumps({"work_dir": str(work), "summary": str(work / "seeds_summary.md")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
