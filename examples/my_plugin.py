"""A user's own Avalanche plugin, kept outside the package: gradient-norm clipping that reports what
it did as metrics. A config registers it with ``custom_imports=dict(imports=['examples.my_plugin'])``.
"""

from __future__ import annotations

from typing import Any

import avalanche_ext  # noqa: F401  (the package's torchvision/avalanche fixes come first)

# isort: split
import torch
from avalanche.evaluation.metric_results import MetricValue
from avalanche.training.plugins import SupervisedPlugin

from avalanche_ext.registry import PLUGINS

__all__ = ["GradNormClipPlugin"]


@PLUGINS.register_module()
class GradNormClipPlugin(SupervisedPlugin):
    """Clips the global gradient norm of every training step and reports the norms it saw.

    ``after_backward`` (gradients exist, the optimizer has not stepped yet) clips with
    ``torch.nn.utils.clip_grad_norm_``. After each training experience it publishes two metrics
    through the strategy's evaluator, so they land in ``results.json["experiences"][i]["eval"]``
    and in the loggers: ``GradNorm_Mean/train_phase/ExpNNN`` (mean norm before clipping) and
    ``GradNorm_ClippedFraction/train_phase/ExpNNN`` (share of steps that were clipped).

    Args:
        max_norm (float): the largest gradient norm allowed.
        norm_type (float): the p of the p-norm (``2.0``: Euclidean; ``inf`` works too).
    """

    stateless = True  # nothing to checkpoint: the norms are reset at each experience

    def __init__(self, max_norm: float = 5.0, norm_type: float = 2.0) -> None:
        super().__init__()
        if max_norm <= 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)
        self.norms: list[float] = []

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.norms = []

    def after_backward(self, strategy: Any, **kwargs: Any) -> None:
        params = [p for p in strategy.model.parameters() if p.grad is not None]
        if params:
            norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm, norm_type=self.norm_type)
            self.norms.append(float(norm))

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if not self.norms:
            return
        exp = int(strategy.experience.current_experience)
        norms = torch.tensor(self.norms)
        values = {
            "GradNorm_Mean": float(norms.mean()),
            "GradNorm_ClippedFraction": float((norms > self.max_norm).float().mean()),
        }
        for name, value in values.items():
            strategy.evaluator.publish_metric_value(
                MetricValue(
                    self, f"{name}/train_phase/Exp{exp:03d}", value, strategy.clock.train_iterations
                )
            )
