"""Conversion of results (numpy / torch values, paths, NaN) into strict, plain JSON data.

``json.dumps(to_jsonable(obj), allow_nan=False)`` never fails on what the runner and report produce.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from os import PathLike
from typing import Any

__all__ = ["to_jsonable"]


def _float(value: float) -> float | None:
    """A finite float, or None for NaN and +-inf (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _key(key: Any) -> str | int | float | bool | None:
    """A dict key JSON accepts (numpy / torch scalars become python scalars, the rest a string)."""
    if isinstance(key, str | bool | int) or key is None:
        return key
    converted = to_jsonable(key)
    return converted if isinstance(converted, str | int | float) else str(key)


def to_jsonable(obj: Any) -> Any:
    """Converts ``obj`` recursively into plain python data that strict JSON can hold.

    numpy and torch scalars become ``int`` / ``float`` / ``bool``, arrays and tensors become (nested)
    lists, tuples and sets become lists, paths become strings, enums their value, dataclass-like
    objects with ``to_dict()`` their dict. NaN and infinities become ``None`` (written as ``null``),
    which is the project's convention for "undefined" (see docs/contracts.md).

    Args:
        obj: any value (dict, list, scalar, ``np.ndarray``, ``torch.Tensor``, ``Path`` ...).

    Returns:
        Any: an equivalent structure of dict / list / str / int / float / bool / None.

    Raises:
        TypeError: when a value has no JSON equivalent (e.g. an arbitrary object).
    """
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _float(obj)
    if isinstance(obj, Mapping):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, PathLike):
        return str(obj)
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    module = type(obj).__module__.split(".")[0]
    if module == "torch" and hasattr(obj, "tolist"):
        # Tensor.tolist() handles every dtype (bfloat16 included) and 0-d tensors (-> scalar).
        return to_jsonable(obj.detach().cpu().tolist() if hasattr(obj, "detach") else obj.tolist())
    if module == "numpy":
        import numpy as np  # noqa: PLC0415 - only needed when numpy values are present

        if isinstance(obj, np.ndarray):
            return to_jsonable(obj.tolist())
        if isinstance(obj, np.bool_):
            return bool(obj)
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.floating):
            return _float(obj)
        if isinstance(obj, np.generic):
            return to_jsonable(obj.item())
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON: {obj!r:.80}")
