"""Deferred re-weighting (DRW, Cao et al. 2019): class-balanced loss weights from epoch E on.

Pairs with ``LDAMLoss`` (LDAM-DRW), ``ReducedFocalLoss`` or mmpretrain's ``CrossEntropyLoss``
(``class_weight``); a loss that would ignore the weights is refused.
"""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

from avalanche_ext.errors import ConfigError
from avalanche_ext.losses.long_tail import effective_number_weights
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.registry import PLUGINS
from avalanche_ext.sampling import deferred_epoch

__all__ = ["DRWPlugin"]


@PLUGINS.register_module()
class DRWPlugin(SupervisedPlugin):
    """Switches the loss to class-balanced weights (effective number, ``beta``) at ``start_epoch``.

    Before the switch the loss is unweighted (the features learn from every sample equally);
    from it on, class ``c`` weighs ``(1 - beta) / (1 - beta ** n_c)`` (normalised to sum to the
    number of classes), with ``n_c`` the counts of the classes seen so far (``strategy.ncd.class_counts``).
    Each experience starts unweighted again.

    Args:
        start_epoch: the switch epoch (160 of 200 in the paper) or a fraction of the experience's
            epochs in ``(0, 1)`` (0.8: the paper's point at any budget; a CPU run of a few epochs
            with ``start_epoch=160`` would never switch).
        beta: effective-number hyper-parameter (0.9999).
    """

    stateless = True  # nothing to checkpoint: the weights follow from the epoch and the counts

    needs_class_counts = True

    def __init__(self, start_epoch: int | float = 160, beta: float = 0.9999):
        super().__init__()
        try:
            deferred_epoch(start_epoch, 1, "start_epoch")
        except ValueError as err:
            raise ConfigError(f"cl_strategy.plugins.{err}") from None
        if not 0 <= beta < 1:
            raise ConfigError(f"cl_strategy.plugins.beta: must be in [0, 1), got {beta}")
        self.start_epoch = start_epoch
        self.beta = beta
        self.active = False

    def before_training_epoch(self, strategy, **kwargs):
        epoch = int(strategy.clock.train_exp_epochs)
        on = epoch >= deferred_epoch(self.start_epoch, int(strategy.train_epochs))
        weights = (
            effective_number_weights(discovery_state(strategy).class_counts, self.beta)
            if on
            else None
        )
        _set_weight(strategy._criterion, weights)
        self.active = on


def _set_weight(criterion, weights) -> None:
    if getattr(criterion, "accepts_class_weight", False):
        criterion.set_class_weight(weights)
    elif hasattr(criterion, "class_weight") and not hasattr(criterion, "accepts_class_weight"):
        # mmpretrain's CrossEntropyLoss (a list of floats)
        criterion.class_weight = None if weights is None else weights.tolist()
    else:
        raise ConfigError(
            f"cl_strategy.loss: DRWPlugin needs a loss with class weights; "
            f"{type(criterion).__name__} has none"
        )
