"""Mid-experience checkpoints and safe interruption, by killing and signalling real processes: a
run SIGKILLed right after ``experience_{k}_epoch_{e}.pth`` appears, or stopped by SIGTERM / SIGINT,
and resumed, ends with the uninterrupted run's numbers (with and without a replay buffer)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from avalanche_ext.checkpointer import differs
from avalanche_ext.config import load_config
from avalanche_ext.registry import PLUGINS
from avalanche_ext.runner import make_run_dir, run
from avalanche_ext.signals import Interrupted
from tests.conftest import REPO, SYNTHETIC_CONFIG

LEAF = """_base_ = [{base!r}]
scenario = dict(num_classes=4, num_experiences=2, images_per_class=12, image_size=8)
metrics = [
    dict(type='accuracy_metrics', epoch=True, experience=True, stream=True),
    dict(type='loss_metrics', epoch=True, experience=True, stream=True),
    dict(type='forgetting_metrics', experience=True, stream=True),
]
cl_strategy = dict(
    train_epochs=3,
    scheduler=dict(type='OneCycleLR', max_lr=0.1, total_steps='auto'),
    plugins={plugins!r},
)
checkpoint_config = dict(interval=1, epoch_interval=1)
loggers = []
"""
REPLAY = [dict(type="ReplayPlugin", mem_size=12)]
COMPARED = ("accuracy_matrix", "final", "per_class_accuracy", "confusion_matrix")


def _leaf(tmp_path: Path, plugins: list) -> Path:
    path = tmp_path / "leaf.py"
    path.write_text(LEAF.format(base=str(SYNTHETIC_CONFIG), plugins=plugins))
    return path


def _start(work: Path, config: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "train_config.py"), str(config), "--work-dir", str(work)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(proc: subprocess.Popen, work: Path, pattern: str, timeout: float = 240) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        found = list(work.glob(f"*/checkpoints/{pattern}"))
        if found:
            return found[0]
        time.sleep(0.01)
    err = proc.stderr.read() if proc.poll() is not None else ""
    raise AssertionError(f"{pattern} never appeared (exit {proc.poll()}): {err[-800:]}")


def _same_numbers(a: dict, b: dict) -> None:
    for key in COMPARED:
        assert a[key] == b[key], key
    for ea, eb in zip(a["experiences"], b["experiences"], strict=True):
        for name, value in ea["eval"].items():
            if not name.startswith(("Time", "CPU", "Disk")):
                assert eb["eval"][name] == value, name


@pytest.mark.slow
@pytest.mark.parametrize("replay", [False, True], ids=["plain", "replay"])
def test_sigkill_after_an_epoch_checkpoint_resumes_to_identical_results(tmp_path, replay):
    config = _leaf(tmp_path, REPLAY if replay else [])
    killed = tmp_path / "killed"
    proc = _start(killed, config)
    target = _wait_for(proc, killed, "experience_1_epoch_1.pth")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = target.parent.parent
    assert not (run_dir / "results.json").exists()
    latest = torch.load(run_dir / "checkpoints" / "latest.pth", weights_only=True)
    assert latest["next_experience"] >= 1 and "model" in latest

    full = run(load_config(config), work_dir=str(tmp_path / "full"))
    messages: list[str] = []
    resumed = run(load_config(config), work_dir=str(killed), resume=True, progress=messages.append)
    assert resumed["run_dir"] == str(run_dir)
    assert any("after epoch" in m for m in messages) or latest.get("mid") is None
    _same_numbers(full, resumed)


@pytest.mark.slow
def test_sigterm_stops_at_a_safe_point_and_resumes(tmp_path):
    config = _leaf(tmp_path, REPLAY)
    work = tmp_path / "work"
    proc = _start(work, config)
    _wait_for(proc, work, "experience_0_epoch_1.pth")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err
    run_dir = next(p for p in work.iterdir() if p.is_dir() and not p.is_symlink())
    partial = json.loads((run_dir / "results.json").read_text())
    assert partial["status"] == "interrupted"
    assert f"--resume {run_dir}" in partial["resume_command"] and "--resume" in err
    assert Path(partial["checkpoint"]).is_file()

    full = run(load_config(config), work_dir=str(tmp_path / "full"))
    resumed = run(load_config(config), work_dir=str(work), resume=True)
    assert resumed["status"] == "completed"
    _same_numbers(full, resumed)


@PLUGINS.register_module(name="_SelfInterruptPlugin", force=True)
class _SelfInterruptPlugin:
    """Sends SIGINT to this process at the end of the first epoch of experience 1."""

    def __init__(self):
        self.seen = 0

    def __getattr__(self, name):
        if name.startswith("before_") or name.startswith("after_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def after_training_epoch(self, strategy, **kwargs):
        self.seen += 1
        if self.seen == 4:  # 3 epochs of experience 0, then the first one of experience 1
            os.kill(os.getpid(), signal.SIGINT)


def test_sigint_in_process_writes_an_epoch_checkpoint_and_exits_130(tmp_path):
    options = {"cl_strategy.train_epochs": 3, "loggers": [], "checkpoint_config": None}
    options["cl_strategy.plugins"] = [dict(type="_SelfInterruptPlugin")]
    cfg = load_config(SYNTHETIC_CONFIG, options)
    # Whatever this process started with (a background shell starts it with SIGINT ignored).
    found = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as err:
        run(cfg, work_dir=str(tmp_path))
    assert err.value.exit_code == 130
    assert Path(err.value.checkpoint).name == "experience_1_epoch_1.pth"  # the next safe point
    run_dir = Path(err.value.run_dir)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "experience_1_epoch_1.pth",
        "latest.pth",
    ]
    partial = json.loads((run_dir / "results.json").read_text())
    assert partial["status"] == "interrupted" and len(partial["experiences"]) == 1
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == found


def test_two_runs_started_at_once_never_share_a_folder(tmp_path):
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(make_run_dir(tmp_path))) for _ in "1234"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 4 and all(p.is_dir() for p in made)


def test_differs_compares_nested_states():
    a = {"x": torch.ones(2), "y": [1, {"z": 2}]}
    assert not differs(a, {"x": torch.ones(2), "y": [1, {"z": 2}]})
    assert differs(a, {"x": torch.zeros(2), "y": [1, {"z": 2}]})
    assert differs(a, {"x": torch.ones(2), "y": [1, {"z": 3}]})
