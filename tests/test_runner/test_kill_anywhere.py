"""A run SIGKILLed at any instant resumes to exactly the uninterrupted run's numbers.

Real processes (forked from a forkserver that imported the package once, so each start is cheap)
kill themselves at chosen instants of one short replay run: right after a checkpoint is renamed
into place and before ``latest.pth`` follows it, half-way through writing a checkpoint, during
an evaluation, between the last experience's checkpoint and ``results.json``, after
``results.json`` but before the report, and at a timed offset. Every instant is resumed with
``--resume`` and compared with the uninterrupted run, with and without ``epoch_interval``.
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys
import time
from pathlib import Path

import pytest
import torch

from avalanche_ext.config import load_config
from avalanche_ext.runner import run
from tests.conftest import SYNTHETIC_CONFIG

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
kill_child = importlib.import_module("kill_child")

LEAF = """_base_ = [{base!r}]
scenario = dict(num_classes=6, num_experiences=3, images_per_class=8, test_images_per_class=4,
                image_size=8)
metrics = [
    dict(type='accuracy_metrics', epoch=True, experience=True, stream=True),
    dict(type='loss_metrics', epoch=True, experience=True, stream=True),
    dict(type='forgetting_metrics', experience=True, stream=True),
]
cl_strategy = dict(train_epochs=2, train_mb_size=8,
                   plugins=[dict(type='ReplayPlugin', mem_size=12)])
checkpoint_config = dict(interval=1{epochs})
loggers = []
"""
SEED = 3
COMPARED = ("accuracy_matrix", "final", "per_class_accuracy", "confusion_matrix", "streaming")
# (point, n): the n-th file rename (before / after it), the n-th torch.save cut in half, the n-th
# evaluation. Renames of a run with epoch checkpoints: 1 config.py, 2-3 experience_0_epoch_1 and
# latest, 4-5 experience_1, ..., 12-13 experience_3 and latest, 14 results.json, 15-20 report
# files, 21 results.json again, 22 the work dir's ``latest`` link.
WITH_EPOCHS = [
    ("after_replace", 2),  # the first epoch checkpoint, latest.pth not yet pointed at it
    ("half_save", 3),  # half of experience_1_epoch_1.pth written
    ("before_replace", 8),  # experience_2.pth complete as a temporary file, not renamed
    ("eval", 3),  # during the last evaluation
    ("after_replace", 13),  # after the last checkpoint, before results.json
    ("after_replace", 14),  # results.json written, the report not
]
# Renames without epoch checkpoints: 1 config.py, 2-3 experience_1, 4-5 experience_2, 6-7
# experience_3, 8 results.json, ...
WITHOUT_EPOCHS = [
    ("after_replace", 2),
    ("half_save", 2),
    ("eval", 2),
    ("after_replace", 7),
    ("after_replace", 15),  # everything written but the work dir's ``latest`` link
]


@pytest.fixture(scope="module")
def forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(kill_child.PRELOAD)
    return ctx


def _leaf(tmp_path: Path, epoch_interval: bool) -> Path:
    path = tmp_path / "leaf.py"
    epochs = ", epoch_interval=1" if epoch_interval else ""
    path.write_text(LEAF.format(base=str(SYNTHETIC_CONFIG), epochs=epochs))
    return path


def _kill_at(ctx, config: Path, work: Path, point: str, count: int, after: Path | None = None):
    """One real process killed at ``point``/``count``; ``point == 'timed'``: ``count`` ms after
    the file ``after`` (a glob under the work dir) appears."""
    argv = [str(config), "--work-dir", str(work), "--seed", str(SEED)]
    args = (argv, "" if point == "timed" else point, count, torch.get_num_threads())
    proc = ctx.Process(target=kill_child.run_killed, args=args)
    proc.start()
    if point == "timed":
        deadline = time.time() + 120
        while not list(work.glob(str(after))) and proc.is_alive() and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(count / 1000)
        proc.kill()
    proc.join(120)
    assert proc.exitcode == -9, f"{point} {count}: exit {proc.exitcode}, not killed"


def _same_numbers(full: dict, resumed: dict, where: str) -> None:
    assert resumed["status"] == "completed", where
    for key in COMPARED:
        assert resumed[key] == full[key], f"{where}: {key}"
    for ea, eb in zip(full["experiences"], resumed["experiences"], strict=True):
        for name, value in ea["eval"].items():
            if not name.startswith(("Time", "CPU", "Disk")):
                assert eb["eval"][name] == value, f"{where}: {name}"


@pytest.mark.parametrize(
    "epoch_interval, instants",
    [(True, WITH_EPOCHS + [("timed", 300)]), (False, WITHOUT_EPOCHS + [("timed", 150)])],
    ids=["epoch_interval", "experience_checkpoints"],
)
def test_a_run_killed_at_any_instant_resumes_to_the_same_numbers(
    tmp_path, forkserver, epoch_interval, instants
):
    config = _leaf(tmp_path, epoch_interval)
    full = run(load_config(config), work_dir=str(tmp_path / "full"), seed=SEED)
    for k, (point, count) in enumerate(instants):
        where = f"killed at {point} {count}"
        work = tmp_path / f"killed_{k}"
        _kill_at(
            forkserver, config, work, point, count, after=Path("*/checkpoints/experience_1.pth")
        )
        assert not (work / "latest").exists() or point == "after_replace", where
        resumed = run(load_config(config), work_dir=str(work), seed=SEED, resume=True)
        _same_numbers(full, resumed, where)
        run_dirs = [p for p in work.iterdir() if p.is_dir() and not p.is_symlink()]
        assert len(run_dirs) == 1 and resumed["run_dir"] == str(run_dirs[0]), where
        assert not list(work.rglob("*.tmp*")) or point in ("half_save", "before_replace"), where
