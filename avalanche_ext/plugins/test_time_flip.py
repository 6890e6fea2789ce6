"""Test-time augmentation by horizontal flip: evaluation logits are the mean over each image and
its mirror (a standard inference choice for CIFAR; it changes what is reported, so it is a plugin a
config names, never a default)."""

from __future__ import annotations

from typing import Any

import torch
from avalanche.training.plugins import SupervisedPlugin

from avalanche_ext.registry import PLUGINS

__all__ = ["TestTimeFlipPlugin"]


@PLUGINS.register_module()
class TestTimeFlipPlugin(SupervisedPlugin, supports_distributed=True):
    """Averages evaluation logits over the image and its horizontal mirror.

    Runs in ``after_eval_forward``, before Avalanche computes the loss and the metrics (and before
    the runner pads logits for classes the model does not have yet), so every reported number sees
    the averaged logits. Training is untouched.
    """

    stateless = True  # nothing to checkpoint: a resumed run may add or drop it

    def after_eval_forward(self, strategy: Any, **kwargs: Any) -> None:
        x = strategy.mb_x
        if not torch.is_tensor(x) or x.dim() != 4:
            return
        with torch.inference_mode():
            mirrored = strategy.model(x.flip(-1))
        strategy.mb_output = (strategy.mb_output + mirrored) / 2
