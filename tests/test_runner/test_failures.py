"""A run that cannot go on says so: a diverging loss or parameter stops it at that step (or the
batch is skipped when asked), a file system that refuses a write ends it with one line naming the
path; both leave ``results.json`` with ``"status": "failed"`` and every earlier checkpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_config
from avalanche_ext.checkpoint import load_checkpoint
from avalanche_ext.config import load_config
from avalanche_ext.non_finite import first_non_finite
from avalanche_ext.registry import PLUGINS
from avalanche_ext.runner import run
from tests.conftest import REPO, SYNTHETIC_CONFIG, TINY_OPTIONS, run_main

S = str(SYNTHETIC_CONFIG)
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the configs' custom_imports find disk_limit.py here
    sys.path.insert(0, str(HERE))
TINY = [*TINY_OPTIONS, "cl_strategy.train_mb_size=4"]  # three iterations an epoch


@PLUGINS.register_module(name="_PoisonPlugin", force=True)
class _PoisonPlugin:
    """Makes the loss (``what='loss'``) or a parameter (``what='param'``) NaN at the second
    iteration of experience 2's first epoch: a divergence at a known step."""

    def __init__(self, what: str = "loss"):
        self.what = what

    def __getattr__(self, name):
        if name.startswith(("before_", "after_")):
            return lambda *a, **k: None
        raise AttributeError(name)

    @staticmethod
    def _due(strategy) -> bool:
        clock = strategy.clock
        return (
            strategy.experience.current_experience == 1
            and clock.train_exp_epochs == 0
            and clock.train_epoch_iterations == 1
        )

    def before_backward(self, strategy, **kwargs):
        if self.what == "loss" and self._due(strategy):
            strategy.loss = strategy.loss * float("nan")

    def after_update(self, strategy, **kwargs):
        if self.what == "param" and self._due(strategy):
            with torch.no_grad():
                next(strategy.model.parameters()).fill_(float("inf"))


def _run(tmp_path: Path, poison: str | None = "loss", *options: str, runtime: str = ""):
    """The synthetic run (tiny) with the poison plugin and ``runtime`` block given."""
    leaf = tmp_path / "leaf.py"
    plugins = f"[dict(type='_PoisonPlugin', what={poison!r})]" if poison else "[]"
    leaf.write_text(
        f"_base_ = [{S!r}]\ncl_strategy = dict(plugins={plugins})\nruntime = dict({runtime})\n"
    )
    work = tmp_path / "work"
    return run_main(str(leaf), "--work-dir", str(work), "--cfg-options", *TINY, *options), work


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("what", ["loss", "param"])
def test_a_diverging_run_stops_at_that_step_and_keeps_its_checkpoints(tmp_path, what):
    proc, work = _run(tmp_path, what)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = _errors(proc)
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "experience 2, epoch 1, iteration 2" in errors[0]
    assert ("loss became nan" if what == "loss" else "became non-finite") in errors[0]
    (run_dir,) = [p for p in work.iterdir() if p.is_dir()]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and "experience 2, epoch 1" in results["reason"]
    assert len(results["experiences"]) == 1  # the numbers of the experience done before
    kept = load_checkpoint(run_dir / "checkpoints" / "experience_1.pth")
    assert results["checkpoint"] == str(run_dir / "checkpoints" / "experience_1.pth")
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "experience_1.pth",
        "latest.pth",
    ]


def test_a_huge_learning_rate_no_longer_finishes_as_if_nothing_happened(tmp_path):
    proc, _ = _run(tmp_path, None, "cl_strategy.optimizer.lr=1e12")
    assert proc.returncode == 1 and len(_errors(proc)) == 1, proc.stderr[-2000:]
    assert "the training loss became nan at experience " in _errors(proc)[0]


def test_skip_drops_the_batch_and_the_run_completes(tmp_path):
    proc, work = _run(tmp_path, "loss", runtime="on_non_finite='skip'")
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [line for line in proc.stderr.splitlines() if "batch skipped" in line]
    assert len(warnings) == 1 and "experience 2, epoch 1, iteration 2" in warnings[0]
    results = json.loads((work / "latest" / "results.json").read_text())
    assert results["status"] == "completed"
    assert math.isfinite(results["final"]["stream_accuracy"])
    model = load_checkpoint(work / "latest" / "checkpoints" / "latest.pth")["model"]
    assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())


def test_first_non_finite_names_the_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    assert first_non_finite(model) is None
    with torch.no_grad():
        model[1].bias.fill_(float("nan"))
    assert first_non_finite(model) == "1.bias"


@pytest.mark.slow
def test_a_disk_that_refuses_writes_mid_run_is_one_error_line_and_loses_nothing(tmp_path):
    leaf = tmp_path / "leaf.py"
    leaf.write_text(
        f"_base_ = [{S!r}]\ncustom_imports = dict(imports=['disk_limit'])\n"
        "cl_strategy = dict(plugins=[dict(type='_DiskLimitPlugin')])\n"
    )
    work = tmp_path / "work"
    cmd = [sys.executable, str(REPO / "train_config.py"), str(leaf), "--work-dir", str(work)]
    cmd += ["--cfg-options", *TINY]
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{HERE}", "FILE_LIMIT_BYTES": "1024"}
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = _errors(proc)
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (run_dir,) = [p for p in work.iterdir() if p.is_dir()]
    ckpts = run_dir / "checkpoints"
    assert errors[0].startswith(f"error: cannot write {ckpts / 'experience_2.pth'} (")
    assert sorted(p.name for p in ckpts.iterdir()) == ["experience_1.pth", "latest.pth"]
    assert load_checkpoint(ckpts / "latest.pth")["next_experience"] == 1  # intact, no leftovers
    assert not list(run_dir.rglob("*.tmp*"))

    # With room again, the run continues from its last checkpoint to the uninterrupted numbers.
    options = train_config.parse_args([S, "--cfg-options", *TINY]).cfg_options
    full = run(load_config(leaf, options), work_dir=str(tmp_path / "full"))
    resumed = run(load_config(leaf, options), work_dir=str(work), resume=True)
    assert resumed["accuracy_matrix"] == full["accuracy_matrix"]


def test_a_checkpoint_folder_that_became_unwritable_is_named_and_leaves_nothing(tmp_path):
    from avalanche_ext.checkpoint import save_checkpoint
    from avalanche_ext.errors import WriteFailed

    ckpts = tmp_path / "checkpoints"
    save_checkpoint(ckpts / "experience_1.pth", {"x": torch.ones(3)}, latest=ckpts / "latest.pth")
    before = {p.name: p.read_bytes() for p in ckpts.iterdir()}
    (ckpts / "experience_2.pth.tmp").mkdir()  # the temporary file cannot be created
    with pytest.raises(WriteFailed, match=r"cannot write .*experience_2\.pth \("):
        save_checkpoint(
            ckpts / "experience_2.pth", {"x": torch.ones(3)}, latest=ckpts / "latest.pth"
        )
    (ckpts / "experience_2.pth.tmp").rmdir()
    assert {p.name: p.read_bytes() for p in ckpts.iterdir()} == before


def test_a_logger_stream_on_a_full_disk_becomes_a_failed_run(tmp_path):
    import errno

    from avalanche_ext.errors import WriteFailed
    from avalanche_ext.failures import recording_failures

    log = tmp_path / "run.log"
    with pytest.raises(WriteFailed, match=f"cannot write {log} \\(No space left on device\\)"):
        with recording_failures(tmp_path, "cfg.py"):
            raise OSError(errno.ENOSPC, "No space left on device", str(log))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "failed" and results["checkpoint"] is None
    with pytest.raises(OSError, match="not a write"):  # other OS errors are not rewritten
        with recording_failures(tmp_path, "cfg.py"):
            raise OSError(errno.EBADF, "not a write")
