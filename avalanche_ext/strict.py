"""Strict configs: every top-level key is known or a deliberate helper variable, pipelines are
resolved after merging, and the dumped ``config.py`` holds only what the run used.

Helper variables: a top-level name that starts with an underscore (``_gate = dict(...)``), or one
that another key of the config or of its ``_base_`` files reads, as OpenMMLab configs write them
(``img_norm_cfg = dict(...)`` then ``dict(type='Normalize', **img_norm_cfg)``;
:func:`avalanche_ext.config_files.helper_variables`). The key check accepts them and the dumped
config drops them (their values already live in the dicts that use them). Any other top-level name
must be one of :data:`TOP_LEVEL_KEYS`; a typo such as ``chekpoint_config``, which nothing reads,
ends with exit 2 and "did you mean".

``train_pipeline`` / ``test_pipeline`` are resolved when the scenario is built, not when the base
file is parsed: a scenario without ``train_transform`` (or with ``train_transform='train_pipeline'``)
gets the top-level ``train_pipeline`` of the *merged* config, so a leaf config or ``--cfg-options``
overriding ``train_pipeline`` takes effect.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmengine.config import Config

from avalanche_ext.errors import ConfigError, WriteFailed

__all__ = [
    "TOP_LEVEL_KEYS",
    "CHECKPOINT_KEYS",
    "check_keys",
    "register_top_level_key",
    "scenario_config",
    "resolve_pipelines",
    "dump_config",
    "dumped_text",
    "atomic_write",
    "atomic_write_text",
    "did_you_mean",
]

# Every top-level key the runner (or a component) reads. A new feature reading a new key registers
# it here (or with register_top_level_key) so that the strict check accepts it.
TOP_LEVEL_KEYS: set[str] = {
    "scenario",
    "model",
    "cl_strategy",
    "metrics",
    "loggers",
    "checkpoint_config",
    "train_pipeline",
    "test_pipeline",
    "seed",
    "work_dir",
    "load_from",
    "eval_streams",
    "discovery",
    "long_tail",
    "history",
    "custom_imports",
    "runtime",
}
CHECKPOINT_KEYS = {"interval", "epoch_interval"}
# Sub-keys of the blocks the runner reads itself: a key nothing reads is a typo or a stale recipe
# (``discovery=dict(hungarian='all')`` was silently ignored for months).
BLOCK_KEYS: dict[str, set[str]] = {
    "checkpoint_config": CHECKPOINT_KEYS,
    "discovery": {"histogram_bins"},
}
# scenario key -> the top-level pipeline it defaults to.
_PIPELINES = {"train_transform": "train_pipeline", "eval_transform": "test_pipeline"}


def register_top_level_key(name: str) -> None:
    """Lets a component read a new top-level key without the strict check rejecting it."""
    TOP_LEVEL_KEYS.add(name)


def did_you_mean(name: str, valid: list[str] | set[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest valid name, or ``""``."""
    close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_block(value: Any, block: str, known: set[str]) -> None:
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{block}: expected a dict, got {value!r}")
    for key in value or {}:
        if key not in known:
            raise ConfigError(f"{block}.{key}: unknown key{did_you_mean(key, known)}")


def check_keys(cfg: Config) -> None:
    """Rejects unknown top-level keys (helper variables: a leading ``_``, or listed in
    ``cfg._helper_keys``) and unknown keys of the blocks in :data:`BLOCK_KEYS`.

    Raises:
        ConfigError: naming the key and the closest known one.
    """
    helpers = set(cfg.get("_helper_keys") or [])
    for key in cfg.keys():
        if key.startswith("_") or key in TOP_LEVEL_KEYS or key in helpers:
            continue
        raise ConfigError(
            f"{key}: unknown top-level key{did_you_mean(key, TOP_LEVEL_KEYS)} "
            "(no other key reads it, so it is not a helper variable either)"
        )
    for block, known in BLOCK_KEYS.items():
        _check_block(cfg.get(block), block, known)
    ckpt = cfg.get("checkpoint_config")
    epoch_interval = (ckpt or {}).get("epoch_interval")
    if epoch_interval is not None and (
        isinstance(epoch_interval, bool)
        or not isinstance(epoch_interval, int)
        or epoch_interval < 0
    ):
        raise ConfigError(
            f"checkpoint_config.epoch_interval: expected a non-negative int, got {epoch_interval!r}"
        )


def scenario_config(cfg: Config) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``scenario`` dict with its transforms taken from the merged top-level pipelines.

    A missing ``train_transform`` / ``eval_transform`` (or the string ``'train_pipeline'`` /
    ``'test_pipeline'``) becomes the config's ``train_pipeline`` / ``test_pipeline``; an explicit
    list or ``None`` is kept.

    Returns:
        The scenario dict and, for each transform taken from the top level, the config key to name
        in errors (``{"train_transform": "train_pipeline"}``).

    Raises:
        ConfigError: a string naming a pipeline the config does not define.
    """
    scenario = cfg["scenario"]
    scenario = scenario.to_dict() if hasattr(scenario, "to_dict") else dict(scenario)
    known = cfg.get("_transform_keys")
    keys: dict[str, str] = dict(known.to_dict() if hasattr(known, "to_dict") else known or {})
    for key, top in _PIPELINES.items():
        value = scenario.get(key, top)
        if isinstance(value, str):
            if value not in cfg:
                if key in scenario:
                    raise ConfigError(f"scenario.{key}: the config has no {value!r}")
                continue
            pipeline = cfg[value]
            scenario[key] = list(pipeline) if isinstance(pipeline, (list, tuple)) else pipeline
            keys[key] = value
    return scenario, keys


def resolve_pipelines(cfg: Config) -> None:
    """Fills the scenario's transforms from the merged top-level pipelines, in place (after
    ``_base_`` merging and ``--cfg-options``), so code reading ``cfg.scenario`` sees them; which
    top-level key each came from is kept in ``cfg._transform_keys`` (for error messages)."""
    scenario, keys = scenario_config(cfg)
    cfg.scenario = scenario
    cfg._transform_keys = keys


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Calls ``write(tmp)`` on a temporary file next to ``path``, then renames it over ``path``.

    The temporary file is in the same folder (a rename never crosses file systems), hidden, unique
    per process and thread, and keeps ``path``'s suffix, so writers that choose a format from the
    name (matplotlib's ``savefig``) still work. A reader sees the old file or the new one, never a
    half-written one; if ``write`` fails, the temporary file is removed and ``path`` is untouched.
    Every file of a run folder goes through here (or :func:`avalanche_ext.checkpoint
    .save_checkpoint`), except the loggers' line streams (README, "What a run writes").

    Args:
        path: the file to (re)place.
        write: writes the whole content to the path it is given.

    Returns:
        ``path``.

    Raises:
        WriteFailed: the file system refused the write (``path`` untouched, no temporary left).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # a folder made read-only keeps its temporary file
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):  # disk full, quota, a folder that became unwritable
            raise WriteFailed(str(path), err.strerror or str(err)) from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to a temporary file next to ``path``, then renames it over ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def dumped_text(cfg: Config) -> str:
    """The merged config as Python text, without its helper variables."""
    helpers = set(cfg.get("_helper_keys") or [])
    clean = {k: v for k, v in cfg.to_dict().items() if not k.startswith("_") and k not in helpers}
    return Config(clean).pretty_text


def dump_config(cfg: Config, path: str | os.PathLike) -> None:
    """Writes the merged config without its helper variables, atomically."""
    atomic_write_text(path, dumped_text(cfg))
