"""Checkpoints: a killed run resumed ends with the numbers of an uninterrupted one; bad files fail
cleanly; everything loads with torch.load(weights_only=True)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from avalanche_ext.checkpoint import load_checkpoint
from avalanche_ext.errors import ConfigError
from avalanche_ext.runner import load_weights
from tests.conftest import REPO, SYNTHETIC_CONFIG

pytestmark = pytest.mark.slow
# Five experiences, so there is time to kill the run in the middle.
OPTIONS = ["scenario.num_classes=10", "scenario.num_experiences=5", "metrics.3.num_classes=10"]
COMPARED = ("accuracy_matrix", "final", "per_class_accuracy", "confusion_matrix", "streaming")


def _start(work: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "train_config.py"),
            str(SYNTHETIC_CONFIG),
            "--work-dir",
            str(work),
            "--cfg-options",
            *OPTIONS,
        ],
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _results(work: Path) -> dict:
    return json.loads((work / "latest" / "results.json").read_text())


def test_killed_run_resumes_to_identical_results(tmp_path, cli):
    full = tmp_path / "full"
    proc = cli(str(SYNTHETIC_CONFIG), "--work-dir", str(full), "--cfg-options", *OPTIONS)
    assert proc.returncode == 0, proc.stderr

    killed = tmp_path / "killed"
    p = _start(killed)
    deadline = time.time() + 240
    target = None
    while time.time() < deadline and p.poll() is None:
        found = list(killed.glob("*/checkpoints/experience_2.pth"))
        if found:
            target = found[0]
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert target is not None, "the run ended before experience 2 was checkpointed"
    run_dir = target.parent.parent
    assert not (run_dir / "results.json").exists(), "killed before the end"

    proc = cli(
        str(SYNTHETIC_CONFIG), "--work-dir", str(killed), "--resume", "--cfg-options", *OPTIONS
    )
    assert proc.returncode == 0, proc.stderr
    assert "resumed from experience" in proc.stderr
    a, b = _results(full), _results(killed)
    assert b["run_dir"] == str(run_dir)
    for key in COMPARED:
        assert a[key] == b[key], key
    for ea, eb in zip(a["experiences"], b["experiences"]):
        for name, value in ea["eval"].items():
            if not name.startswith(("Time", "CPU", "Disk")):
                assert eb["eval"][name] == value, name


def test_checkpoints_are_weights_only_loadable(tmp_path, cli):
    proc = cli(str(SYNTHETIC_CONFIG), "--work-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    ckpt = tmp_path / "latest" / "checkpoints" / "latest.pth"
    payload = torch.load(ckpt, weights_only=True)
    assert payload["next_experience"] == 3
    assert payload["num_classes"] == 6
    assert "model" in payload and "optimizer" in payload and "rng" in payload


def test_truncated_and_foreign_checkpoints_fail_cleanly(tmp_path, synthetic_cfg):
    from avalanche_ext.builders import build_model

    model = build_model(synthetic_cfg.model)
    good = {"model": model.state_dict(), "num_classes": 2}
    torch.save(good, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="truncated or not a checkpoint"):
        load_checkpoint(tmp_path / "truncated.pth")

    before = {k: v.clone() for k, v in model.state_dict().items()}
    foreign = {k: v for k, v in model.state_dict().items() if "layer3" not in k}
    foreign["something.else"] = torch.zeros(3)
    foreign = {k: (v + 1 if v.is_floating_point() else v) for k, v in foreign.items()}
    torch.save(foreign, tmp_path / "foreign.pth")
    with pytest.raises(ConfigError, match="does not fit the model"):
        load_weights(model, str(tmp_path / "foreign.pth"))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "never half-loaded"

    # A pickle with arbitrary objects is refused by weights_only loading.
    torch.save({"obj": ConfigError("any python object")}, tmp_path / "evil.pth")
    with pytest.raises(ConfigError):
        load_checkpoint(tmp_path / "evil.pth")


def test_resume_without_checkpoint_is_a_user_error(tmp_path, cli):
    proc = cli(str(SYNTHETIC_CONFIG), "--work-dir", str(tmp_path / "empty"), "--resume")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --resume")


def test_load_from_loads_weights_only(tmp_path, cli):
    proc = cli(str(SYNTHETIC_CONFIG), "--work-dir", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr
    ckpt = tmp_path / "a" / "latest" / "checkpoints" / "latest.pth"
    proc = cli(
        str(SYNTHETIC_CONFIG),
        "--work-dir",
        str(tmp_path / "b"),
        "--cfg-options",
        f"load_from={ckpt}",
        "cl_strategy.optimizer.lr=0.0",
        "cl_strategy.optimizer.momentum=0.0",
    )
    assert proc.returncode == 0, proc.stderr
    # with a zero learning rate the loaded weights are never changed: the second run ends with the
    # first run's weights (BatchNorm's running statistics still move, so accuracies may differ)
    a = load_checkpoint(ckpt)["model"]
    b = load_checkpoint(tmp_path / "b" / "latest" / "checkpoints" / "latest.pth")["model"]
    weights = [
        k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    ]
    assert len(weights) > 10 and all(torch.equal(a[k], b[k]) for k in weights)
    assert not all(torch.equal(a[k], b[k]) for k in a), "BatchNorm statistics did move"
