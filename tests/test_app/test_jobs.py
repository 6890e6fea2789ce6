"""The app's training jobs stop when asked, however the app itself was started.

A process started from a non-interactive shell in the background (as CI and ``nohup``-style
launchers do) inherits SIGINT ignored, and so do its children. The app's Stop must still stop a
child that has not installed the runner's handlers yet.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from avalanche_ext.app.jobs import JobManager

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = REPO / "configs" / "synthetic" / "naive_resnet8_1ep_synthetic.py"


def _until_done(job, timeout: float = 120.0) -> str:
    end = time.monotonic() + timeout
    while job.status == "running" and time.monotonic() < end:
        time.sleep(0.1)
    return job.status


def _long_job(work_dir) -> tuple[JobManager, object]:
    """A synthetic run of 3 x 500 epochs (about 30 s): long enough to be stopped."""
    jobs = JobManager(REPO)
    args = [str(SYNTHETIC), "--work-dir", str(work_dir)]
    return jobs, jobs.start([*args, "--cfg-options", "cl_strategy.train_epochs=500"], label="long")


def test_stop_before_training_starts_ends_the_child_even_with_sigint_ignored(tmp_path):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under a background shell
    try:
        jobs, job = _long_job(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    jobs.stop(job.id)  # while the child is still importing
    assert _until_done(job) == "interrupted"
    assert job.describe()["error"] is None


def test_stop_during_training_checkpoints_and_reports_interrupted(tmp_path):
    jobs, job = _long_job(tmp_path)
    end = time.monotonic() + 120
    while not any(line.startswith("experience 1/3:") for line in job.lines):  # training began
        assert job.status == "running" and time.monotonic() < end, list(job.lines)[-5:]
        time.sleep(0.1)
    jobs.stop(job.id)
    assert _until_done(job) == "interrupted"
    assert job.process.returncode == 128 + signal.SIGTERM
    assert list(Path(job.run_dir).glob("checkpoints/*.pth"))
