"""Post-hoc logit adjustment (Menon et al., ICLR 2021): subtract ``tau * log(prior)`` at evaluation."""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

from avalanche_ext.losses.long_tail import posthoc_logit_adjustment
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.registry import PLUGINS

__all__ = ["PosthocLogitAdjustmentPlugin"]


@PLUGINS.register_module()
class PosthocLogitAdjustmentPlugin(SupervisedPlugin):
    """Shifts every evaluation logit by ``-tau * log(pi_c)`` (``pi``: training label distribution
    of the classes seen so far), so the argmax targets the balanced error. Training is untouched.

    It changes ``strategy.mb_output`` in ``after_eval_forward``; the metrics and the runner's
    per-class accuracy see the adjusted logits. Classes without a training image count one.

    Args:
        tau: adjustment strength (1.0; 0 leaves the logits alone).
    """

    stateless = True  # nothing to checkpoint: the adjustment follows from the class counts

    needs_class_counts = True

    def __init__(self, tau: float = 1.0):
        super().__init__()
        self.tau = tau

    def after_eval_forward(self, strategy, **kwargs):
        counts = discovery_state(strategy).class_counts
        if counts is None or self.tau == 0:
            return  # evaluated before any training: no prior yet
        strategy.mb_output = posthoc_logit_adjustment(strategy.mb_output, counts, self.tau)
