"""SIGINT / SIGTERM during training: the first asks for a stop at the next safe point, the second stops.

The runner holds a :class:`StopRequest` while it trains; the checkpointer writes a checkpoint at the
next safe point (the end of the current epoch, or of the experience when it was the last epoch) and
raises :class:`Interrupted`; the CLI prints how to resume and exits ``128 + signal`` (130 for SIGINT,
143 for SIGTERM). A second signal raises ``KeyboardInterrupt`` at once (exit 130, nothing new
written).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["Interrupted", "StopRequest"]


class Interrupted(Exception):
    """Training stopped at a safe point after SIGINT / SIGTERM; a checkpoint was written.

    Args:
        signum: the signal received.
        run_dir: the run folder (resume with ``--resume RUN_DIR``).
        checkpoint: the checkpoint written at the safe point.
    """

    def __init__(self, signum: int, run_dir: str = "", checkpoint: str = ""):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = int(signum)
        self.run_dir = run_dir
        self.checkpoint = checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """SIGINT / SIGTERM handlers (main thread only) that ask for a stop at the next safe point.

    A second signal raises ``KeyboardInterrupt`` at once. Use as a context manager; the previous
    handlers come back on exit. True once a signal arrived.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def interrupted(self, checkpoint: str) -> Interrupted:
        """The exception to raise once the checkpoint of the safe point is written."""
        return Interrupted(int(self.signum or signal.SIGINT), checkpoint=checkpoint)
