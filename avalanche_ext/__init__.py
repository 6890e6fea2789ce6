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
__all__ = ["__version__"]
