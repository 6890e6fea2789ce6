"""Our LabelSmoothLoss wrapper: mmpretrain's crashes when the classifier grows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models.losses import LabelSmoothLoss as MMPretrainLabelSmoothLoss

from avalanche_ext.builders import build_criterion


def test_mmpretrain_label_smoothing_breaks_on_a_growing_head():
    loss = MMPretrainLabelSmoothLoss(label_smooth_val=0.1, mode="original")
    loss(torch.randn(4, 80), torch.randint(0, 80, (4,)))
    with pytest.raises(AssertionError, match="num_classes"):
        loss(torch.randn(4, 100), torch.randint(0, 100, (4,)))


def test_ours_follows_the_logits_and_equals_torch_label_smoothing():
    loss = build_criterion(dict(type="LabelSmoothLoss", label_smooth_val=0.1, mode="original"))
    for width in (80, 100):
        logits, y = torch.randn(6, width), torch.randint(0, width, (6,))
        expected = F.cross_entropy(logits, y, label_smoothing=0.1)
        assert torch.allclose(loss(logits, y), expected, atol=1e-5)
