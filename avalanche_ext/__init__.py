"""avalanche-ext: continual-learning and novel-class-discovery components on Avalanche + OpenMMLab.

Importing the package applies the stack fixes in ``_compat`` first (torchvision's missing CPU ops,
avalanche's ``$HOME`` config), so every entry point shares them.
"""

import warnings

from avalanche_ext import _compat

_compat.patch_torchvision_ops()
_compat.isolate_avalanche_home()
# mmengine logs every weight initialisation at INFO; mmcv-lite warns about compiled ops we never use.
_compat.quiet_mmengine()
warnings.filterwarnings("ignore", message=".*mmcv-lite.*")
warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")

__version__ = "0.1.0"

# The public API (avalanche_ext.api), re-exported lazily: importing the package stays light.
_API = (
    "load_config",
    "run",
    "load_model",
    "predict",
    "evaluate",
    "find_checkpoint",
    "Predictor",
    "Prediction",
    "DiscoveryInfo",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from avalanche_ext import api  # noqa: PLC0415

        return getattr(api, name)
    raise AttributeError(f"module 'avalanche_ext' has no attribute {name!r}")
