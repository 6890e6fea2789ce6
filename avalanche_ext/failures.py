"""What a started run leaves behind when it cannot go on: ``results.json`` with
``"status": "failed"``, the reason and the numbers of the newest checkpoint, every checkpoint kept.

A divergence (:class:`~avalanche_ext.non_finite.NonFiniteError`) and a write the file system
refuses (:class:`~avalanche_ext.errors.WriteFailed`) both end here; an ``OSError`` from a writer
that does not go through the atomic helpers (a logger's line stream) is turned into
``WriteFailed`` when its errno says the disk or the folder refused it.
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avalanche_ext.checkpoint import load_checkpoint, newest_good_checkpoint
from avalanche_ext.errors import ConfigError, RunFailed, WriteFailed

__all__ = ["WRITE_ERRNOS", "failed_results", "recording_failures"]

# errno values that mean "the disk or the folder refused the write", not a bug.
WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
}


def failed_results(err: RunFailed, run_dir: Path, config_path: str | None) -> dict[str, Any]:
    """The ``results.json`` of a failed run: the newest checkpoint's numbers (if any), the reason,
    the checkpoint and the command that continues from it."""
    results: dict[str, Any] = {"config": config_path, "run_dir": str(run_dir), "experiences": []}
    checkpoint = None
    with contextlib.suppress(ConfigError):
        checkpoint = newest_good_checkpoint(run_dir / "checkpoints")
        saved = load_checkpoint(checkpoint, key="--resume").get("results") or {}
        results.update({k: v for k, v in saved.items() if not k.startswith("_")})
    results.update(status="failed", reason=str(err), checkpoint=checkpoint and str(checkpoint))
    if checkpoint is not None:
        command = f"python train_config.py {config_path or 'CONFIG'} --resume {run_dir}"
        results["resume_command"] = command
    return results


@contextlib.contextmanager
def recording_failures(
    run_dir: Path, config_path: str | None, write: bool = True
) -> Iterator[None]:
    """Writes ``results.json`` of a run that fails inside the block (``write``: this process
    writes the run folder), then lets the failure go on to the caller.

    Raises:
        RunFailed: the failure, with an ``OSError`` from a refused write turned into
            :class:`~avalanche_ext.errors.WriteFailed`.
    """
    from avalanche_ext.strict import atomic_write_text  # noqa: PLC0415

    try:
        yield
    except (RunFailed, OSError) as err:
        failure = err
        if isinstance(err, OSError):
            if err.errno not in WRITE_ERRNOS:
                raise
            failure = WriteFailed(err.filename or str(run_dir), err.strerror or str(err))
        if write:
            text = json.dumps(failed_results(failure, run_dir, config_path), indent=2)
            with contextlib.suppress(RunFailed):  # a full disk may refuse this one too
                atomic_write_text(run_dir / "results.json", text)
        if failure is err:
            raise
        raise failure from None
