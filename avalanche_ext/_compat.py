"""Fixes for the pinned stack that must run before anything imports torchvision or wandb.

Imported first by ``avalanche_ext/__init__.py``; every entry point (CLI, tests, tools) goes through it.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import torch

from avalanche_ext.paths import cache_root

__all__ = [
    "patch_torchvision_ops",
    "patch_wandb",
    "isolate_avalanche_home",
    "torchvision_ops_missing",
    "quiet_mmengine",
]

# The op schemas torchvision's ``_meta_registrations`` registers fake kernels for unconditionally;
# every other op there is guarded by ``torchvision.extension._has_ops()``.
_PLACEHOLDER_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_placeholder_lib = None


def torchvision_ops_missing() -> bool:
    """Whether torchvision's compiled extension cannot be loaded with this torch.

    The published torchvision 0.28.0 wheel is built for CUDA; with the CPU torch its ``_C`` library
    fails to load, after which ``import torchvision`` dies on ``operator torchvision::nms does not exist``.
    """
    if "torchvision" in sys.modules:
        return not hasattr(torch.ops.torchvision, "nms") or _placeholder_lib is not None
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    libs = []
    for location in spec.submodule_search_locations:
        libs += glob.glob(os.path.join(location, "_C*.so")) + glob.glob(
            os.path.join(location, "_C*.pyd")
        )
    for lib in libs:
        try:
            torch.ops.load_library(lib)
            return False
        except (OSError, RuntimeError):
            continue
    return True


def patch_torchvision_ops() -> bool:
    """Registers placeholder schemas for torchvision's detection ops when its extension is absent.

    Only the schemas are defined (no kernels): calling ``torchvision.ops.nms`` still fails, which is
    right, since this project never uses detection ops; transforms, datasets and models work.

    Returns:
        bool: True when placeholders were registered, False when the real extension is there.
    """
    global _placeholder_lib
    if _placeholder_lib is not None or "torchvision" in sys.modules:
        return _placeholder_lib is not None
    if not torchvision_ops_missing():
        return False
    _placeholder_lib = torch.library.Library("torchvision", "DEF")  # noqa: TOR901
    for schema in _PLACEHOLDER_SCHEMAS:
        _placeholder_lib.define(schema)
    return True


def patch_wandb() -> None:
    """Restores the two wandb attributes avalanche 0.6's ``WandBLogger`` still uses.

    ``wandb.util.generate_id`` and ``wandb.viz`` were removed from wandb; avalanche calls the first in
    ``WandBLogger.__init__`` and the second (``wandb.viz.CustomChart``) in ``log_single_metric``.
    Nothing is imported when wandb is not installed.
    """
    if importlib.util.find_spec("wandb") is None:
        return
    if not os.environ.get("WANDB_MODE"):  # offline unless the user's environment says otherwise
        os.environ["WANDB_MODE"] = "offline"
    import wandb  # noqa: PLC0415

    util = getattr(wandb, "util", None)
    if util is not None and not hasattr(util, "generate_id"):
        import secrets
        import string

        def generate_id(length: int = 8) -> str:
            alphabet = string.ascii_lowercase + string.digits
            return "".join(secrets.choice(alphabet) for _ in range(length))

        util.generate_id = generate_id
    if not hasattr(wandb, "viz"):
        import types

        class CustomChart:  # only used in an isinstance() check by avalanche
            pass

        wandb.viz = types.SimpleNamespace(CustomChart=CustomChart)


def isolate_avalanche_home(cache_dir: str | None = None) -> str:
    """Imports avalanche with its config folder inside the project's cache, not ``$HOME``.

    avalanche 0.6 writes ``~/.avalanche/config.json`` at import time (and crashes when ``$HOME`` is
    read-only); its dataset root comes from that file. We import it once with ``HOME`` pointing at
    ``cache_dir`` (default: the project's cache folder, :mod:`avalanche_ext.paths`), then restore
    ``HOME``.

    Returns:
        str: the folder avalanche's config lives in.
    """
    root = cache_dir or str(cache_root())
    if "avalanche.benchmarks.datasets.dataset_utils" in sys.modules:
        return os.path.dirname(
            sys.modules["avalanche.benchmarks.datasets.dataset_utils"].AVALANCHE_CONFIG_ROOT
        )
    os.makedirs(root, exist_ok=True)
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = os.path.abspath(root)
    try:
        import avalanche.benchmarks.datasets.dataset_utils  # noqa: F401, PLC0415
    finally:
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home
    return os.path.abspath(root)


def quiet_mmengine(level: int = 30) -> None:
    """Raises mmengine's logger to WARNING: it logs every weight initialisation at INFO."""
    from mmengine.logging import MMLogger  # noqa: PLC0415

    MMLogger.get_current_instance().setLevel(level)
