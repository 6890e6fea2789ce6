"""The exception types that the CLI turns into one ``error: ...`` line: :class:`ConfigError` (exit
code 2, nothing was run) and :class:`RunFailed` (exit code 1, a started run could not go on)."""

from __future__ import annotations

__all__ = ["ConfigError", "RunFailed", "WriteFailed"]


class ConfigError(ValueError):
    """A user mistake in a config, a command line, a data folder or a checkpoint.

    The message names the config key or the path at fault; the CLI prints it on one line.
    """


class RunFailed(Exception):
    """A started run that cannot go on (its loss diverged, its disk filled up).

    The runner writes ``results.json`` with ``"status": "failed"`` and this message as the reason
    (where it still can) and keeps every checkpoint; the CLI prints the message on one line and
    exits with :attr:`exit_code`.
    """

    exit_code = 1


class WriteFailed(RunFailed):
    """A file of the run folder could not be written (disk full, quota, folder made unwritable).

    Args:
        path: the file being written.
        reason: what the operating system (or torch's writer) said.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(
            f"cannot write {path} ({reason}); the run stopped there and every file written "
            "before is intact: make room (or make the folder writable) and continue with --resume"
        )
        self.path = str(path)
