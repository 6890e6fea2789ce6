"""Training runs started from the app: each one is ``train_config.py`` in a child process, so the
page never blocks and a crash leaves the app and the other runs untouched.

Stop sends SIGTERM: the runner finishes the epoch, writes a checkpoint and ``status: interrupted``.
SIGTERM rather than SIGINT because a process started from a non-interactive shell in the background
inherits SIGINT *ignored*: a child that has not yet installed the runner's handlers (still importing
or building its model) would drop a SIGINT and train to the end. SIGTERM is never inherited ignored;
before the handlers exist it ends the child at once, which is still a stop the user asked for.
"""

from __future__ import annotations

import collections
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Job", "JobManager", "TRAIN_SCRIPT"]

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "train_config.py"
_RUN_FOLDER = re.compile(r"^run folder: (?P<path>.+)$")
_STOP_SIGNAL = signal.SIGTERM
# the runner's exit after a signal (128 + signal), or death by the signal before its handlers existed
_EXITS_INTERRUPTED = {128 + signal.SIGINT, 128 + signal.SIGTERM}
_DEATHS_BY_STOP = {-signal.SIGINT, -signal.SIGTERM}


@dataclass
class Job:
    """One child process and what it printed.

    Args:
        id: the job's number in this app.
        command: the child's argv.
        label: what the page calls it.
        process: the child.
    """

    id: int
    command: list[str]
    label: str
    process: subprocess.Popen
    lines: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))
    run_dir: str | None = None
    stopping: bool = False

    @property
    def status(self) -> str:
        """``running``, ``completed``, ``interrupted`` or ``failed``."""
        rc = self.process.poll()
        if rc is None:
            return "running"
        if rc == 0:
            return "completed"
        if rc in _EXITS_INTERRUPTED or (self.stopping and rc in _DEATHS_BY_STOP):
            return "interrupted"
        return "failed"

    @property
    def error(self) -> str | None:
        """A failed run's error line: its ``error:`` line, else the last line it printed."""
        if self.status != "failed":
            return None
        lines = [line for line in self.lines if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        return (errors or lines or [f"exit code {self.process.returncode}"])[-1]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "status": self.status,
            "error": self.error,
            "run_dir": self.run_dir,
            "log_tail": list(self.lines)[-30:],
        }


class JobManager:
    """Starts, lists and stops training children.

    Args:
        cwd: the children's working directory (the repository: ``custom_imports`` resolve there).
    """

    def __init__(self, cwd: str | os.PathLike):
        self.cwd = os.fspath(cwd)
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, args: list[str], label: str) -> Job:
        """Runs ``train_config.py ARGS`` in a child; its output is read by a thread."""
        command = [sys.executable, str(TRAIN_SCRIPT), *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # a Ctrl-C in the app's terminal is not the child's
        )
        with self._lock:
            job = Job(next(self._ids), command, label, process)
            self.jobs[job.id] = job
        threading.Thread(target=self._read, args=(job,), daemon=True).start()
        return job

    @staticmethod
    def _read(job: Job) -> None:
        for raw in job.process.stdout:
            for line in raw.rstrip("\n").split("\r"):  # tqdm redraws with carriage returns
                if not line.strip():
                    continue
                match = _RUN_FOLDER.match(line.strip())
                if match:
                    job.run_dir = match.group("path")
                job.lines.append(line)
        job.process.wait()

    def stop(self, job_id: int) -> Job | None:
        """SIGTERM to a running child: checkpoint at the end of the epoch, ``interrupted``."""
        job = self.jobs.get(job_id)
        if job is not None and job.status == "running":
            job.stopping = True
            job.process.send_signal(_STOP_SIGNAL)
        return job

    def running_dirs(self) -> dict[str, Job]:
        """Run folder -> its running job."""
        return {
            os.path.realpath(j.run_dir): j
            for j in self.jobs.values()
            if j.run_dir and j.status == "running"
        }

    def shutdown(self) -> None:
        """Stops every running child (the app is closing)."""
        for job in self.jobs.values():
            if job.status == "running":
                job.stopping = True
                job.process.send_signal(_STOP_SIGNAL)
