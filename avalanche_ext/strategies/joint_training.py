"""Avalanche's JointTraining under the runner's one-experience-at-a-time loop.

Avalanche's ``JointTraining`` must be trained once, on the whole stream (it raises
``AlreadyTrainedError`` otherwise) and adapts the model to the experiences it is given; the runner
hands strategies one experience at a time, so the head only grew to the first experience's classes
("Target 2 is out of bounds"). Decision: at the first ``train`` call this strategy trains jointly on
the entire training stream (``experience.origin_stream``), growing the head to every class; later
calls train nothing. Each row of the accuracy matrix is then the same offline upper bound.
"""

from __future__ import annotations

import inspect

from avalanche.training.supervised import JointTraining as _AvalancheJointTraining

from avalanche_ext.registry import STRATEGIES

__all__ = ["JointTraining"]


@STRATEGIES.register_module()
class JointTraining(_AvalancheJointTraining):
    """Avalanche's ``JointTraining`` (same arguments), trained on the whole stream once."""

    def train(self, experiences, eval_streams=None, **kwargs):
        if self._is_fitted:
            return self.evaluator.get_last_metrics()
        stream = getattr(experiences, "_origin_stream", None)
        if stream is not None:
            experiences = list(stream)
        return super().train(experiences, eval_streams, **kwargs)


JointTraining.__init__.__signature__ = inspect.signature(_AvalancheJointTraining.__init__)
