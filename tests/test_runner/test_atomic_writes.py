"""Nothing a run writes is ever half-written: every file of a finished run folder (and the
comparison and seed summaries beside it) arrived through ``os.replace`` of a temporary file in
the same folder, with its final content; the only exception is the documented line stream of
``TextLogger``. Two runs created at once (two processes, the same second) get two folders."""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
from pathlib import Path

import pytest

import train_config
from avalanche_ext.config import load_config
from avalanche_ext.errors import WriteFailed
from avalanche_ext.report import compare_runs
from avalanche_ext.runner import make_run_dir, run
from avalanche_ext.strict import atomic_write, atomic_write_text
from tests.conftest import SYNTHETIC_CONFIG

TINY = {
    "scenario.images_per_class": 6,
    "scenario.test_images_per_class": 2,
    "scenario.image_size": 8,
}
# Append-only streams, read while they grow: the TextLogger's file (flushed per line, README) and
# the per-epoch history.jsonl (one line per epoch; a reader skips a partly written last line).
STREAMS = {".log", ".jsonl"}


def _content(path: Path) -> str:
    if path.is_symlink():
        return "-> " + os.readlink(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def placed(monkeypatch) -> dict[Path, str]:
    """Every ``os.replace`` target -> its content right after the rename."""
    real, seen = os.replace, {}

    def recording(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        src, dst = Path(src), Path(dst)
        assert src.parent.resolve() == dst.parent.resolve(), (src, dst)  # same folder
        seen[dst.absolute()] = _content(dst)

    monkeypatch.setattr(os, "replace", recording)
    return seen


def _files(folder: Path) -> list[Path]:
    return sorted(p.absolute() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def test_every_file_of_a_run_is_written_atomically(tmp_path, placed):
    work = tmp_path / "work"
    results = run(load_config(SYNTHETIC_CONFIG, TINY), work_dir=str(work))
    run_dir = Path(results["run_dir"])
    out = tmp_path / "comparison"
    compare_runs([run_dir, run_dir], out)
    args = argparse.Namespace(
        config="x.py", seed=None, resume=None, dry_run=False, work_dir=str(work), seeds=[0, 1]
    )
    args.device = "cpu"  # the seed runs themselves are the run above: only the summary is new
    cfg = load_config(SYNTHETIC_CONFIG, TINY)
    train_config._run_seeds(args, cfg, lambda cfg, seed, **kw: {**results, "seed": seed})

    files = _files(work) + _files(out)
    names = {p.name for p in files}
    # the run's own files, the latest link, the comparison and the seed summary are all there
    assert {"results.json", "config.py", "report.md", "report.html", "latest.pth"} <= names
    assert {"accuracy_matrix.png", "confusion_matrix.png", "latest"} <= names
    assert {"comparison.md", "comparison.html", "accuracy_curves.png"} <= names
    assert {"seeds_summary.json", "seeds_summary.md"} <= names
    streams = [p for p in files if p.suffix in STREAMS]
    assert sorted(p.suffix for p in streams) == [".jsonl", ".log"]  # the log and the history
    assert all(p.parent == run_dir for p in streams)
    written_in_place = [
        str(p) for p in files if p.suffix not in STREAMS and placed.get(p) != _content(p)
    ]
    assert written_in_place == []
    assert [p.name for p in files if p.name.startswith(".") or ".tmp" in p.name] == []


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "figure.png"
    atomic_write_text(target, "old")

    def broken(tmp: Path) -> None:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"  # savefig picks PNG from it
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(WriteFailed, match=r"cannot write .*figure\.png \(disk full\)"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]


def _create(work: str, barrier, queue) -> None:
    barrier.wait()
    queue.put(str(make_run_dir(work)))


def test_two_processes_creating_runs_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    monkeypatch.setattr("time.strftime", lambda *_: "20260101_000000")  # both in one second
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_create, args=(str(tmp_path), barrier, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    made = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(Path(m).name for m in made) == [
        "20260101_000000",
        "20260101_000000_1",
        "20260101_000000_2",
        "20260101_000000_3",
    ]
