"""Image pipelines from config: lists of torchvision transform dicts, as in the original demo config.

Types resolve to ``torchvision.transforms.v2`` (which handles PIL images and uint8 tensors alike);
``ToTensor`` is ours so that the demo vocabulary also works on CIFAR's in-memory uint8 tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import TRANSFORMS, build

__all__ = ["ToTensor", "build_pipeline"]


@TRANSFORMS.register_module()
class ToTensor:
    """Converts a PIL image, an HWC uint8 array or a CHW uint8 tensor to a float CHW tensor in [0, 1].

    torchvision's ``ToTensor`` leaves tensors untouched, which silently skips the scaling for
    in-memory datasets; this one scales every input the same way.
    """

    def __call__(self, img):
        if isinstance(img, torch.Tensor):
            return img.float().div_(255) if img.dtype == torch.uint8 else img.float()
        if isinstance(img, np.ndarray):
            img = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
            return img.float().div_(255) if img.dtype == torch.uint8 else img.float()
        return F.to_dtype(F.to_image(img), torch.float32, scale=True)

    def __repr__(self) -> str:
        return "ToTensor()"


def build_pipeline(
    pipeline: Sequence[dict] | Callable | None, key: str = "pipeline"
) -> Callable | None:
    """Builds a ``v2.Compose`` from a list of transform dicts.

    Args:
        pipeline: a list of dicts with ``type`` (e.g. ``dict(type='RandomCrop', size=32, padding=4)``),
            an already built callable (returned as is), or None.
        key: the config key, named in errors.
    """
    if pipeline is None or callable(pipeline):
        return pipeline
    if not isinstance(pipeline, (list, tuple)):
        raise ConfigError(
            f"{key}: expected a list of transform dicts, got {type(pipeline).__name__}"
        )
    return v2.Compose(
        [build(TRANSFORMS, dict(t), key=f"{key}[{i}]") for i, t in enumerate(pipeline)]
    )
