"""Avalanche loggers as the original demo configured them: ``TextLogger`` takes a file name inside the
work dir (or none: a timestamped one), ``WandBLogger`` runs offline and works with current wandb."""

from __future__ import annotations

import os
import time

from avalanche.logging import TextLogger as _AvalancheTextLogger
from avalanche.logging import WandBLogger as _AvalancheWandBLogger

from avalanche_ext import _compat
from avalanche_ext.registry import LOGGERS

__all__ = ["TextLogger", "WandBLogger"]


@LOGGERS.register_module()
class TextLogger(_AvalancheTextLogger):
    """Avalanche's text logger writing to a file in the run folder.

    The file is an append-only stream, line-buffered (flushed at every newline), not an atomic
    write like the run's other files (decided: a log is read while it grows, and a killed run
    should keep every line logged before the kill; a temp-file-and-rename would lose it all).

    Args:
        file: file name (relative to the run folder) or None for ``<timestamp>.log``.
        work_dir: the run folder (given by the runner, not the config).
    """

    def __init__(self, file: str | None = None, work_dir: str = "."):
        name = file or time.strftime("%Y%m%d_%H%M%S") + ".log"
        self.path = name if os.path.isabs(name) else os.path.join(work_dir, name)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        super().__init__(file=open(self.path, "a", buffering=1))  # noqa: SIM115

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


@LOGGERS.register_module()
class WandBLogger(_AvalancheWandBLogger):
    """Avalanche's W&B logger, offline unless ``WANDB_MODE`` says otherwise, files in the run folder.

    avalanche 0.6 calls ``wandb.util.generate_id`` and ``wandb.viz``, both gone from wandb 0.31;
    :func:`avalanche_ext._compat.patch_wandb` restores them before the logger starts.

    Args:
        project_name: W&B project.
        run_name: W&B run name.
        work_dir: the run folder (given by the runner); wandb writes under ``<work_dir>/wandb``.
        **kwargs: the other arguments of avalanche's ``WandBLogger`` (``log_artifacts``, ``config``...).
    """

    def __init__(
        self,
        project_name: str = "avalanche-ext",
        run_name: str = "run",
        work_dir: str = ".",
        **kwargs,
    ):
        _compat.patch_wandb()
        kwargs.setdefault("dir", work_dir)
        kwargs.setdefault("save_code", False)
        kwargs.setdefault("path", os.path.join(work_dir, "wandb_checkpoints"))
        super().__init__(project_name=project_name, run_name=run_name, **kwargs)

    def close(self) -> None:
        if getattr(self, "wandb", None) is not None and self.wandb.run is not None:
            self.wandb.finish()
