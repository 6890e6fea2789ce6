"""tau-normalisation (Kang et al., ICLR 2020): rescale each classifier row by ``1 / ||w_c|| ** tau``
after an experience."""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from avalanche_ext.decoupled import tau_normalize
from avalanche_ext.registry import PLUGINS

__all__ = ["TauNormalizationPlugin"]


@PLUGINS.register_module()
class TauNormalizationPlugin(SupervisedPlugin):
    """Normalises the classifier rows at ``after_training_exp`` (no training, no data).

    Joint training leaves head classes with larger weight norms; ``w_c / ||w_c|| ** tau`` evens
    them out. The bias is set to zero (the paper removes it; a bias learned with the old norms
    would re-introduce the imbalance) unless ``keep_bias``.

    Args:
        tau: 0 (no change) .. 1 (unit norms); the paper picks it on validation data (~0.7-1.0).
        keep_bias: keep the bias instead of zeroing it.
    """

    stateless = True  # nothing to checkpoint: the normalisation is applied to the model's weights

    def __init__(self, tau: float = 1.0, keep_bias: bool = False):
        super().__init__()
        self.tau = tau
        self.keep_bias = keep_bias

    @torch.no_grad()
    def after_training_exp(self, strategy, **kwargs):
        layer = strategy.model.classifier
        layer.weight.copy_(tau_normalize(layer.weight, self.tau))
        if layer.bias is not None and not self.keep_bias:
            layer.bias.zero_()
