"""A resumed run is the run it continues: ``--resume`` compares the config with the merged config
saved in the run folder (``config.py``) and refuses a difference, naming it, unless the user passes
``--resume-with-changes``.

Keys that cannot change the numbers are not compared: ``work_dir``, ``loggers`` and
``checkpoint_config`` (where and how often things are written) and ``seed`` (the checkpoint's own
seed is checked against the run's). Everything else is: a new learning rate, epoch count, plugin
setting or scenario would make the "resumed" run neither the old run nor a new one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mmengine.config import Config

from avalanche_ext.errors import ConfigError
from avalanche_ext.strict import atomic_write_text, dump_config, dumped_text

__all__ = ["NOT_COMPARED", "check_resume_config", "config_changes"]

NOT_COMPARED = ("work_dir", "loggers", "checkpoint_config", "seed")
_MISSING = "<absent>"


def config_changes(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (lists compared whole when
    their lengths differ, item by item otherwise)."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        out: list[str] = []
        for key in sorted(set(saved) | set(current), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            out += config_changes(saved.get(key, _MISSING), current.get(key, _MISSING), name)
        return out
    if (
        isinstance(saved, (list, tuple))
        and isinstance(current, (list, tuple))
        and len(saved) == len(current)
    ):
        out = []
        for i, (a, b) in enumerate(zip(saved, current)):
            out += config_changes(a, b, f"{prefix}[{i}]")
        return out
    return [] if saved == current else [f"{prefix}: {saved!r} -> {current!r}"]


def _comparable(text: str) -> dict[str, Any]:
    values = Config.fromstring(text, ".py").to_dict()
    return {k: v for k, v in values.items() if k not in NOT_COMPARED}


def check_resume_config(
    run_dir: Path,
    cfg: Config,
    allow_changes: bool = False,
    say: Callable[[str], None] | None = None,
    write: bool = True,
) -> list[str]:
    """Compares ``cfg`` with ``run_dir/config.py``; with ``allow_changes`` the new config becomes
    the run's ``config.py`` and the old one is kept as ``config_before_resume_<k>.py``.

    Args:
        run_dir: the run folder being resumed.
        cfg: this invocation's merged config.
        allow_changes: ``--resume-with-changes``.
        say: receives one line naming the accepted changes (or why nothing was compared).
        write: this process writes the run folder (rank 0).

    Returns:
        The differences found (``key: old -> new``).

    Raises:
        ConfigError: the configs differ and ``allow_changes`` is False (naming the first keys).
    """
    say = say or (lambda _msg: None)
    saved_path = run_dir / "config.py"
    if not saved_path.is_file():
        say(f"--resume: {saved_path} is missing; the config cannot be compared with the run's")
        return []
    try:
        saved = _comparable(saved_path.read_text(encoding="utf-8"))
    except Exception as err:  # noqa: BLE001 - a damaged config.py must not block the resume
        say(f"--resume: {saved_path} cannot be read ({type(err).__name__}); not compared")
        return []
    changes = config_changes(saved, _comparable(dumped_text(cfg)))
    if not changes:
        return []
    listed = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
    if not allow_changes:
        raise ConfigError(
            f"--resume: this config differs from the run's own ({saved_path}): {listed}; resume "
            "with the run's config, or pass --resume-with-changes to continue with these changes"
        )
    say(f"resuming with changes: {listed}")
    if write:
        k = 1
        while (run_dir / f"config_before_resume_{k}.py").exists():
            k += 1
        atomic_write_text(run_dir / f"config_before_resume_{k}.py", saved_path.read_text("utf-8"))
        dump_config(cfg, os.fspath(saved_path))
    return changes
