"""The long-tail papers' learning-rate recipe as one scheduler: linear warm-up, then step decay.

Registered in ``SCHEDULERS`` as ``WarmupMultiStepLR``; a config loads it with
``custom_imports = dict(imports=['avalanche_ext.lr_warmup'])`` (``configs/_base_/schedules/longtail_200e.py``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from avalanche_ext.registry import SCHEDULERS

__all__ = ["WarmupMultiStepLR", "warmup_multistep_factor"]


def warmup_multistep_factor(
    step: int, warmup_steps: int, milestones: Sequence[int], gamma: float
) -> float:
    """Learning-rate factor at (0-based) step ``step``.

    ``(step + 1) / warmup_steps`` during the warm-up (LDAM's ``lr * epoch / 5`` with 1-based
    epochs), then ``gamma ** k`` after ``k`` milestones (a milestone ``m`` applies from step ``m``).
    """
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warm * gamma ** bisect.bisect_right(sorted(milestones), step)


@SCHEDULERS.register_module()
class WarmupMultiStepLR(LambdaLR):
    """Linear warm-up for ``warmup_epochs`` steps, then multiply by ``gamma`` at each milestone.

    Args:
        optimizer: given by the runner.
        milestones: steps (epochs, when stepped per epoch) at which the rate drops (160, 180).
        gamma: drop factor (0.1).
        warmup_epochs: warm-up length in steps (5).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Sequence[int] = (160, 180),
        gamma: float = 0.1,
        warmup_epochs: int = 5,
    ):
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.warmup_epochs = int(warmup_epochs)
        super().__init__(
            optimizer,
            lambda step: warmup_multistep_factor(
                step, self.warmup_epochs, self.milestones, self.gamma
            ),
        )
