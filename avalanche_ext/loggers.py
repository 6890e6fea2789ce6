"""Avalanche loggers that write inside the run folder: ``TextLogger`` takes a file name there (or
none: a timestamped one), ``TensorboardLogger`` and ``CSVLogger`` put their folders there (Avalanche's
defaults are ``./tb_data`` and ``./csvlogs`` in the current directory), ``WandBLogger`` runs offline,
is named after the run folder and receives the run's merged config."""

from __future__ import annotations

import os
import time

from avalanche.logging import CSVLogger as _AvalancheCSVLogger
from avalanche.logging import TensorboardLogger as _AvalancheTensorboardLogger
from avalanche.logging import TextLogger as _AvalancheTextLogger
from avalanche.logging import WandBLogger as _AvalancheWandBLogger
from mmengine.config import Config

from avalanche_ext import _compat
from avalanche_ext.registry import LOGGERS

__all__ = ["CSVLogger", "TensorboardLogger", "TextLogger", "WandBLogger"]


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


def _inside(work_dir: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(work_dir, path)


def _run_name(work_dir: str) -> str:
    """``<work dir name>/<run folder name>``: the config's name and the run's timestamp."""
    run = os.path.abspath(work_dir)
    return f"{os.path.basename(os.path.dirname(run))}/{os.path.basename(run)}"


def merged_config(work_dir: str) -> dict | None:
    """The run's merged config as a dict (``<work_dir>/config.py``, written before any logger is
    built), or None when the folder has none."""
    path = os.path.join(work_dir, "config.py")
    return Config.fromfile(path).to_dict() if os.path.isfile(path) else None


@LOGGERS.register_module()
class TensorboardLogger(_AvalancheTensorboardLogger):
    """Avalanche's TensorBoard logger, its event files in the run folder.

    Args:
        tb_log_dir: folder of the event files, relative to the run folder.
        filename_suffix: suffix of the event file names.
        work_dir: the run folder (given by the runner).
    """

    def __init__(self, tb_log_dir: str = "tb_data", filename_suffix: str = "", work_dir: str = "."):
        super().__init__(tb_log_dir=_inside(work_dir, tb_log_dir), filename_suffix=filename_suffix)

    def close(self) -> None:
        self.writer.close()


@LOGGERS.register_module()
class CSVLogger(_AvalancheCSVLogger):
    """Avalanche's CSV logger (``training_results.csv``, ``eval_results.csv``) in the run folder.

    Args:
        log_folder: folder of the CSV files, relative to the run folder.
        work_dir: the run folder (given by the runner).
    """

    def __init__(self, log_folder: str = "csvlogs", work_dir: str = "."):
        super().__init__(log_folder=_inside(work_dir, log_folder))


@LOGGERS.register_module()
class WandBLogger(_AvalancheWandBLogger):
    """Avalanche's W&B logger, offline unless ``WANDB_MODE`` says otherwise, files in the run folder.

    avalanche 0.6 calls ``wandb.util.generate_id`` and ``wandb.viz``, both gone from wandb 0.31;
    :func:`avalanche_ext._compat.patch_wandb` restores them before the logger starts.

    Args:
        project_name: W&B project.
        run_name: W&B run name (default: ``<config name>/<run folder name>``).
        work_dir: the run folder (given by the runner); wandb writes under ``<work_dir>/wandb``.
        **kwargs: the other arguments of avalanche's ``WandBLogger`` (``log_artifacts``...);
            ``config`` defaults to the run's merged config (``<work_dir>/config.py``).
    """

    def __init__(
        self,
        project_name: str = "avalanche-ext",
        run_name: str | None = None,
        work_dir: str = ".",
        **kwargs,
    ):
        _compat.patch_wandb()
        run_name = run_name or _run_name(work_dir)
        if kwargs.get("config") is None:
            kwargs["config"] = merged_config(work_dir)
        kwargs.setdefault("dir", work_dir)
        kwargs.setdefault("save_code", False)
        kwargs.setdefault("path", os.path.join(work_dir, "wandb_checkpoints"))
        super().__init__(project_name=project_name, run_name=run_name, **kwargs)

    def close(self) -> None:
        if getattr(self, "wandb", None) is not None and self.wandb.run is not None:
            self.wandb.finish()
