"""Checkpoints that ``torch.load(weights_only=True)`` can read: state dicts, tensors and plain types.

Also snapshots the state of Avalanche's evaluation metrics and clock (plain attributes), so a resumed
run logs the same forgetting/accuracy values as an uninterrupted one. Writes are atomic and a refused
write is a :class:`~avalanche_ext.errors.WriteFailed` naming the file; loads check every record's
CRC, and :func:`newest_good_checkpoint` picks the furthest checkpoint of a run folder that loads.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avalanche_ext.errors import ConfigError, WriteFailed

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_state",
    "get_rng_state",
    "checkpoint_progress",
    "load_checkpoint",
    "newest_good_checkpoint",
    "restore_state",
    "save_checkpoint",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "avalanche-ext-checkpoint-v1"
_PLAIN = (int, float, str, bool, type(None), torch.Tensor)
_RECURSE_PREFIXES = ("avalanche.evaluation", "avalanche.training.plugins.clock")
_PROGRESS_NAME = re.compile(r"^experience_(?P<exp>\d+)(?:_epoch_(?P<epoch>\d+))?\.pth$")
_LOAD_ERRORS = (
    RuntimeError,
    EOFError,
    OSError,
    ValueError,  # UnicodeDecodeError from a damaged pickle, among others
    KeyError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, (str, int)) and _is_plain(v) for k, v in value.items())
    return False


def _to_plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def capture_state(obj: Any, _depth: int = 0) -> dict[str, Any]:
    """Plain-typed attributes of ``obj`` and, recursively, of its Avalanche metric sub-objects.

    Lists and tuples are stored as lists; objects from ``avalanche.evaluation`` (metrics, ``Mean``,
    ``Forgetting``...) and the clock are descended into; anything else is left out.
    """
    state: dict[str, Any] = {}
    if _depth > 6:
        return state
    items = (
        obj.items() if isinstance(obj, (list, tuple)) is False and isinstance(obj, dict) else None
    )
    if items is None and isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    if items is None:
        items = vars(obj).items() if hasattr(obj, "__dict__") else []
    for name, value in items:
        if _is_plain(value):
            state[str(name)] = {"v": _to_plain(value)}
        elif isinstance(value, (list, tuple)) or (
            type(value).__module__.startswith(_RECURSE_PREFIXES)
        ):
            state[str(name)] = {"o": capture_state(value, _depth + 1)}
    return state


def restore_state(obj: Any, state: Mapping[str, Any]) -> None:
    """Writes a :func:`capture_state` snapshot back; containers are updated in place (so a
    ``defaultdict`` keeps its factory), tuples come back as tuples where the current value is one."""
    for name, entry in state.items():
        if isinstance(obj, (list, tuple)):
            index = int(name)
            if index >= len(obj):
                continue
            current = obj[index]
        elif isinstance(obj, dict):
            current = obj.get(name)
        else:
            current = getattr(obj, name, None)
        if "o" in entry:
            if current is not None:
                restore_state(current, entry["o"])
            continue
        value = entry["v"]
        if isinstance(current, dict) and isinstance(value, dict):
            current.clear()
            current.update(
                {
                    k: tuple(v) if isinstance(v, list) and _tuple_values(current) else v
                    for k, v in value.items()
                }
            )
            continue
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(obj, list):
            obj[int(name)] = value
        elif isinstance(obj, dict):
            obj[name] = value
        else:
            setattr(obj, name, value)


def _tuple_values(container: dict) -> bool:
    factory = getattr(container, "default_factory", None)
    return factory is not None and isinstance(factory(), tuple)


def get_rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors and plain types."""
    np_state = np.random.get_state()
    return {
        "python": _to_plain(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])


def save_checkpoint(
    path: str | os.PathLike, payload: dict[str, Any], latest: str | os.PathLike | None = None
) -> None:
    """Writes atomically (temp file + rename): a crash never leaves a truncated checkpoint behind.

    Args:
        path: the checkpoint file.
        payload: its content (state dicts, tensors and plain types).
        latest: also (re)placed by a copy of the checkpoint, atomically (``latest.pth``).

    Raises:
        WriteFailed: disk full, quota or an unwritable folder (torch's writer reports a full disk
            as a ``RuntimeError``); the temporary file is removed, earlier files are untouched.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
        os.replace(tmp, path)
        if latest is not None:
            tmp = Path(latest).with_name(Path(latest).name + ".tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, latest)
    except (OSError, RuntimeError) as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) else str(err).strip().splitlines()[0]
        raise WriteFailed(str(tmp.with_suffix("")), reason or type(err).__name__) from None


def load_checkpoint(path: str | os.PathLike, key: str = "resume") -> dict[str, Any]:
    """Loads with ``weights_only=True``, after checking the CRC32 of every record of a zip-format
    file (``torch.load`` reads a flipped byte in tensor data without noticing).

    Raises:
        ConfigError: missing, truncated, corrupt or foreign file (naming ``key`` and the path).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: checkpoint {path} not found")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                raise ConfigError(f"{key}: {path} is corrupt (record {bad} fails its CRC check)")
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as err:
        if isinstance(err, ConfigError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{key}: {path} is truncated or not a checkpoint ({first})") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{key}: {path} is not a checkpoint (it holds {type(payload).__name__})")
    return payload


def checkpoint_progress(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(experiences done, epochs of the next)`` from a checkpoint's name (``experience_2.pth``:
    ``(2, 0)``; ``experience_2_epoch_1.pth``: ``(2, 1)``), or None for another name."""
    match = _PROGRESS_NAME.match(Path(path).name)
    if match is None:
        return None
    return int(match.group("exp")), int(match.group("epoch") or 0)


def newest_good_checkpoint(
    ckpt_dir: str | os.PathLike, say: Callable[[str], None] | None = None
) -> Path:
    """The checkpoint of a run folder to resume from: the furthest one that loads.

    Checkpoints are ranked by how far the run had got (their names), not by ``latest.pth``: a run
    killed after ``experience_1_epoch_1.pth`` was renamed into place but before ``latest.pth``
    followed holds its newest state in the former. A damaged file (truncated, failing its CRC
    check, not a checkpoint) is skipped and ``say`` is told which one and what is resumed
    instead; ``latest.pth`` is the last resort (run folders copied without the named files).

    Raises:
        ConfigError: no checkpoint at all, or none that loads (naming the newest and its fault).
    """
    ckpt_dir = Path(ckpt_dir)
    named = [p for p in ckpt_dir.glob("experience_*.pth") if checkpoint_progress(p) is not None]
    candidates = sorted(named, key=checkpoint_progress, reverse=True)
    candidates.append(ckpt_dir / "latest.pth")
    damaged: list[str] = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            payload = load_checkpoint(path, key="--resume")
        except ConfigError as err:
            damaged.append(str(err).removeprefix("--resume: "))
            continue
        if payload.get("format") != CHECKPOINT_FORMAT or "next_experience" not in payload:
            damaged.append(f"{path} is not an avalanche-ext checkpoint")
            continue
        if damaged and say is not None:
            say(f"--resume: {'; '.join(damaged)}; resuming from {path} instead")
        return path
    if damaged:
        raise ConfigError(f"--resume: no checkpoint of {ckpt_dir} loads: {damaged[0]}")
    raise ConfigError(f"--resume: no checkpoint in {ckpt_dir}")
