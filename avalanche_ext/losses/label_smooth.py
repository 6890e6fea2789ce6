"""mmpretrain's ``LabelSmoothLoss``, fixed for a classifier that grows.

mmpretrain's loss remembers the number of classes of its first call and asserts it forever after
(``num_classes should equal to cls_score.shape[1]``): a head that grows from 80 to 100 classes, or
evaluation logits padded to the scenario's classes, then crash. Registered under the same name in
our ``LOSSES`` (looked up before mmpretrain's), so configs naming ``LabelSmoothLoss`` get this one.
"""

from __future__ import annotations

from mmpretrain.models.losses import LabelSmoothLoss as _MMPretrainLabelSmoothLoss

from avalanche_ext.registry import LOSSES

__all__ = ["LabelSmoothLoss"]


@LOSSES.register_module(name="LabelSmoothLoss")
class LabelSmoothLoss(_MMPretrainLabelSmoothLoss):
    """mmpretrain's label smoothing loss whose number of classes follows the logits of each call
    (unless ``num_classes`` is given). Arguments are mmpretrain's (``label_smooth_val``, ``mode``,
    ``loss_weight`` ...).

    Args:
        num_classes (int | None): fixed number of classes (None: the logits' width, every call).
        **kwargs: mmpretrain's ``LabelSmoothLoss`` arguments.
    """

    def __init__(self, num_classes: int | None = None, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        self._fixed_num_classes = num_classes

    def forward(self, cls_score, label, *args, **kwargs):
        if self._fixed_num_classes is None:
            self.num_classes = cls_score.shape[1]
        return super().forward(cls_score, label, *args, **kwargs)
