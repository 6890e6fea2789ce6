"""Run folders: a fresh timestamped folder per run, the ``latest`` pointer, finding the checkpoint to
resume, and the results.json of an interrupted run."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from avalanche_ext.checkpoint import load_checkpoint, newest_good_checkpoint
from avalanche_ext.errors import ConfigError
from avalanche_ext.signals import Interrupted
from avalanche_ext.strict import atomic_write_text

__all__ = [
    "find_resume_checkpoint",
    "make_run_dir",
    "point_latest",
    "write_interrupted",
    "write_results",
]


def make_run_dir(work_dir: str | os.PathLike) -> Path:
    """A new ``<work_dir>/<YYYYmmdd_HHMMSS>[_k]`` folder; earlier runs are never touched.

    Raises:
        ConfigError: the work dir cannot be created or written.
    """
    work = Path(work_dir)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    try:
        work.mkdir(parents=True, exist_ok=True)
        for k in range(1000):
            run_dir = work / (stamp if k == 0 else f"{stamp}_{k}")
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                continue
    except OSError as err:
        raise ConfigError(f"work_dir: cannot write {work} ({err.strerror or err})") from None
    raise ConfigError(f"work_dir: too many runs started at {stamp} in {work}")


def point_latest(run_dir: Path) -> None:
    """``<work_dir>/latest`` -> the run folder (a symlink; a text file where links are unsupported)."""
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    try:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError:  # no symlinks here: a text file, switched atomically as well
        atomic_write_text(tmp, run_dir.name)
        os.replace(tmp, latest)


def find_resume_checkpoint(
    path: str | os.PathLike | None, work_dir: str | os.PathLike, say: Callable | None = None
) -> Path:
    """The checkpoint to resume: ``path`` (a file, or a run folder), else the newest run of
    ``work_dir`` (a folder with ``config.py``); in a run folder the furthest checkpoint that loads
    (:func:`~avalanche_ext.checkpoint.newest_good_checkpoint`, which tells ``say`` what it skipped).

    Raises:
        ConfigError: no checkpoint to resume from, or none of the run folder's loads.
    """
    candidates: list[Path] = []
    if path:
        p = Path(path)
        if p.is_file():
            return p
        candidates = [p]
    else:
        work = Path(work_dir)
        if work.is_dir():
            runs = (d for d in work.iterdir() if d.is_dir() and not d.is_symlink())
            runs = [d for d in runs if (d / "config.py").is_file() or (d / "checkpoints").is_dir()]
            candidates = sorted(runs, key=lambda d: d.name, reverse=True)[:1]  # the newest only
    for run_dir in candidates:
        if any((run_dir / "checkpoints").glob("*.pth")):
            return newest_good_checkpoint(run_dir / "checkpoints", say)
        if not path:  # never an older run in its place: that one may well be finished
            raise ConfigError(
                f"--resume: the newest run {run_dir} stopped before its first checkpoint; start "
                "it again without --resume (or pass --resume RUN_FOLDER for another run)"
            )
    where = path or work_dir
    raise ConfigError(
        f"--resume: no checkpoint found in {where} (expected <run>/checkpoints/latest.pth)"
    )


def write_interrupted(err: Interrupted, run_dir: Path, config_path: str | None) -> str:
    """results.json of an interrupted run (the numbers of the experiences done, how to resume);
    returns the progress line saying so."""
    results = dict(load_checkpoint(err.checkpoint, key="--resume")["results"])
    command = f"python train_config.py {config_path or 'CONFIG'} --resume {run_dir}"
    results.update(status="interrupted", checkpoint=err.checkpoint, resume_command=command)
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, allow_nan=False))
    return f"interrupted (signal {err.signum}): checkpoint {err.checkpoint}; resume with: {command}"


def write_results(
    results: dict[str, Any], run_dir: Path, write_report: Callable[[dict, str], dict]
) -> dict:
    """Writes results.json, then the report from it, then results.json again with the report's
    files listed; returns those files (``artifacts``)."""
    path = run_dir / "results.json"
    atomic_write_text(path, json.dumps(results, indent=2, allow_nan=False))
    artifacts = write_report(results, str(run_dir))
    results["artifacts"] = artifacts
    atomic_write_text(path, json.dumps(results, indent=2, allow_nan=False))
    return artifacts
