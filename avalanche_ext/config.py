"""Loading and validating experiment configs (mmengine ``Config``: ``_base_``, ``_delete_``,
``custom_imports``, ``--cfg-options``), with one-line errors that name the key or file at fault."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmengine.config import Config

from avalanche_ext.config_files import config_files, helper_variables
from avalanche_ext.errors import ConfigError
from avalanche_ext.strict import TOP_LEVEL_KEYS, check_keys, resolve_pipelines

__all__ = [
    "REQUIRED_KEYS",
    "check_epoch_plan",
    "load_config",
    "resolve_config_path",
    "validate_config",
]

REQUIRED_KEYS = ("scenario", "model", "cl_strategy")
# key -> (expected python types, description) for the values that must have a given type.
_TYPED_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "cl_strategy.train_epochs": (
        (int, list, tuple),
        "a positive int, or a list of them (one per experience, the last repeated); 0 only with"
        " load_from",
    ),
    "cl_strategy.train_mb_size": ((int,), "a positive int"),
    "cl_strategy.eval_mb_size": ((int,), "a positive int"),
    "cl_strategy.plugins": ((list, tuple), "a list of plugin dicts"),
    "metrics": ((list, tuple), "a list of metric dicts"),
    "loggers": ((list, tuple), "a list of logger dicts"),
    "checkpoint_config.interval": ((int,), "a positive int"),
    "train_pipeline": ((list, tuple), "a list of transform dicts"),
    "test_pipeline": ((list, tuple), "a list of transform dicts"),
    "seed": ((int,), "an int"),
    "work_dir": ((str,), "a path"),
    "load_from": ((str,), "a checkpoint path"),
}
_POSITIVE = {
    "cl_strategy.train_epochs",
    "cl_strategy.train_mb_size",
    "cl_strategy.eval_mb_size",
    "checkpoint_config.interval",
}
# Keys that may be 0 when ``load_from`` gives trained weights: 0 epochs trains nothing on that
# experience, so only the after-training stages of the plugins run (cRT, GML re-training, Model
# Doctor from a trained model, the discovery update from a saved base model). Without trained
# weights 0 epochs would stage-two a random network, so it stays refused.
_ZERO_WITH_WEIGHTS = {"cl_strategy.train_epochs"}


def resolve_config_path(path: str | os.PathLike) -> Path:
    """Finds a config file; ``config/x.py`` (the original demo's folder name) also finds ``configs/x.py``.

    Raises:
        ConfigError: the file does not exist.
    """
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    parts = candidate.parts
    if parts and parts[0] == "config":
        alt = Path("configs", *parts[1:])
        if alt.is_file():
            return alt
    raise ConfigError(f"{path}: config file not found")


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node:
            return None
        node = node[part]
    return node


def validate_config(cfg: Config) -> None:
    """Checks required keys and value types before anything is built.

    Raises:
        ConfigError: naming the first offending key.
    """
    for key in REQUIRED_KEYS:
        if cfg.get(key) is None:
            raise ConfigError(f"{key}: missing required key")
        if not isinstance(cfg[key], dict):
            raise ConfigError(f"{key}: expected a dict, got {type(cfg[key]).__name__}")
    for key, (types, what) in _TYPED_KEYS.items():
        value = _get(cfg, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise ConfigError(f"{key}: expected {what}, got {value!r}")
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        lowest = 0 if key in _ZERO_WITH_WEIGHTS and cfg.get("load_from") else 1
        if key in _POSITIVE and (
            not items
            or any(isinstance(v, bool) or not isinstance(v, int) or v < lowest for v in items)
        ):
            raise ConfigError(f"{key}: expected {what}, got {value!r}")
    for key in ("cl_strategy.plugins", "metrics", "loggers"):
        for i, item in enumerate(_get(cfg, key) or []):
            if not isinstance(item, dict) or "type" not in item:
                raise ConfigError(f"{key}[{i}]: expected a dict with a 'type', got {item!r}")
    scenario = cfg["scenario"]
    if "type" not in scenario and "dataset_type" not in scenario:
        raise ConfigError("scenario.type: missing required key (or its alias dataset_type)")


def check_epoch_plan(plan: Any, num_experiences: int) -> None:
    """``cl_strategy.train_epochs`` against the stream once it is built.

    A list gives one count per experience, its last entry repeated for the rest (``[6, 3]``: 6
    epochs on the base experience, 3 on every later one), so a shorter list is the documented
    shorthand; a longer one names experiences the stream does not have, which is refused rather
    than silently ignored.

    Raises:
        ConfigError: a list with more entries than the stream has experiences.
    """
    if isinstance(plan, (list, tuple)) and len(plan) > num_experiences:
        raise ConfigError(
            f"cl_strategy.train_epochs: {len(plan)} entries for a stream of {num_experiences} "
            f"experience(s); give at most one per experience (the last is repeated)"
        )


def load_config(path: str | os.PathLike, cfg_options: dict | None = None) -> Config:
    """Loads a config file (with ``_base_`` inheritance and ``custom_imports``) and validates it.

    Args:
        path: the config file; ``config/...`` falls back to ``configs/...``.
        cfg_options: dotted overrides (``{"cl_strategy.train_epochs": 2}``), as ``--cfg-options``.

    Raises:
        ConfigError: missing file, syntax error, failing custom import, invalid key or value.
    """
    resolved = resolve_config_path(path)
    files = config_files(resolved)  # a _base_ cycle is named here, not as a RecursionError
    try:
        cfg = Config.fromfile(str(resolved), import_custom_modules=False)
    except (SyntaxError, FileNotFoundError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"{resolved}: cannot load config ({type(err).__name__}: {err})") from err
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    import_custom_modules(cfg)
    cfg._helper_keys = sorted(helper_variables(files, list(cfg.keys()), TOP_LEVEL_KEYS))
    check_keys(cfg)
    validate_config(cfg)
    resolve_pipelines(cfg)  # after merging: a leaf's or --cfg-options' pipeline wins
    return cfg


def import_custom_modules(cfg: Config) -> None:
    """Imports ``custom_imports=dict(imports=[...], allow_failed_imports=False)`` modules.

    Raises:
        ConfigError: naming ``custom_imports`` and the module that failed.
    """
    import importlib  # noqa: PLC0415

    custom = cfg.get("custom_imports")
    if not custom:
        return
    imports = custom.get("imports", []) if isinstance(custom, dict) else custom
    if isinstance(imports, str):
        imports = [imports]
    for name in imports:
        try:
            importlib.import_module(name)
        except ImportError as err:
            if isinstance(custom, dict) and custom.get("allow_failed_imports", False):
                continue
            raise ConfigError(f"custom_imports: cannot import {name!r} ({err})") from err
