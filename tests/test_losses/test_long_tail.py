"""Long-tail losses against hand-computed values and their limits (uniform counts, zero margin, ...)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import avalanche_ext  # noqa: F401  (import fixes first)
from avalanche_ext.builders import build_criterion
from avalanche_ext.losses.long_tail import (
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    EqualizedFocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    ReducedFocalLoss,
    balanced_softmax_loss,
    class_prior,
    effective_number_weights,
    equalized_focal_loss,
    ldam_loss,
    ldam_margins,
    logit_adjusted_loss,
    posthoc_logit_adjustment,
    reduced_focal_loss,
)

torch.manual_seed(0)
LOGITS = torch.randn(8, 5)
TARGET = torch.tensor([0, 1, 2, 3, 4, 0, 4, 2])


def test_effective_number_weights_hand_computed():
    # beta = 0.5: (1 - .5) / (1 - .5^1) = 1, (1 - .5) / (1 - .5^2) = 2/3; normalised to sum 2
    assert effective_number_weights([1, 2], 0.5).tolist() == pytest.approx([1.2, 0.8])
    assert effective_number_weights([5, 500, 50], 0.0).tolist() == pytest.approx([1.0, 1.0, 1.0])
    # beta -> 1: inverse frequency (1/n normalised): n = [1, 3] -> [1.5, 0.5]
    assert effective_number_weights([1, 3], 1 - 1e-9).tolist() == pytest.approx(
        [1.5, 0.5], rel=1e-4
    )


def test_class_prior_pads_missing_classes_with_one_image():
    assert class_prior([3, 1], num_classes=4).tolist() == pytest.approx([0.5, 1 / 6, 1 / 6, 1 / 6])


def test_balanced_softmax_hand_computed_and_uniform_limit():
    logits = torch.zeros(2, 2)
    # z + log n = [0, log 3]: p(0) = 1/4, p(1) = 3/4
    loss = balanced_softmax_loss(logits, torch.tensor([0, 1]), [1, 3], reduction="none")
    assert loss.tolist() == pytest.approx([math.log(4), -math.log(0.75)])
    ce = F.cross_entropy(LOGITS, TARGET)
    assert balanced_softmax_loss(LOGITS, TARGET, [7] * 5).item() == pytest.approx(
        ce.item(), abs=1e-6
    )


def test_logit_adjustment_limits():
    counts = [100, 50, 20, 5, 1]
    ce = F.cross_entropy(LOGITS, TARGET).item()
    assert logit_adjusted_loss(LOGITS, TARGET, counts, tau=0.0).item() == pytest.approx(ce)
    bs = balanced_softmax_loss(LOGITS, TARGET, counts).item()
    assert logit_adjusted_loss(LOGITS, TARGET, counts, tau=1.0).item() == pytest.approx(bs)
    # tau = 2 on [0, 0] with prior [1/4, 3/4]: z = [2 log 1/4, 2 log 3/4]; p(0) = 1/16 / (1/16 + 9/16)
    two = logit_adjusted_loss(torch.zeros(1, 2), torch.tensor([0]), [1, 3], tau=2.0)
    assert two.item() == pytest.approx(math.log(10))


def test_posthoc_adjustment_subtracts_the_log_prior():
    out = posthoc_logit_adjustment(torch.zeros(1, 2), [1, 3], tau=1.0)
    assert out.flatten().tolist() == pytest.approx([math.log(4), -math.log(0.75)])
    assert torch.equal(posthoc_logit_adjustment(LOGITS, [2] * 5, 0.0), LOGITS)


def test_ldam_margins_and_loss_hand_computed():
    # n^-1/4 = [1, 1/2] -> scaled so the largest is 0.5
    margins = ldam_margins([1, 16], 0.5)
    assert margins.tolist() == pytest.approx([0.5, 0.25])
    logits, target = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    # [1 - 0.5, 0] -> CE = log(1 + e^-0.5)
    assert ldam_loss(logits, target, margins).item() == pytest.approx(math.log(1 + math.exp(-0.5)))
    # s = 2: [1, 0] -> log(1 + e^-1)
    assert ldam_loss(logits, target, margins, scale=2.0).item() == pytest.approx(
        math.log(1 + math.exp(-1))
    )


def test_ldam_zero_margin_unit_scale_is_ce_and_weights_follow_torch():
    ce = F.cross_entropy(LOGITS, TARGET).item()
    assert ldam_loss(LOGITS, TARGET, torch.zeros(5), 1.0).item() == pytest.approx(ce)
    loss = LDAMLoss(max_margin=0.0, scale=1.0)
    loss.set_class_counts([500, 100, 50, 10, 5])
    assert loss(LOGITS, TARGET).item() == pytest.approx(ce)
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    loss.set_class_weight(weight)
    assert loss(LOGITS, TARGET).item() == pytest.approx(
        F.cross_entropy(LOGITS, TARGET, weight=weight).item()
    )


def test_ldam_gives_rarer_classes_larger_margins_in_the_module():
    loss = LDAMLoss(max_margin=0.5)
    loss.set_class_counts([625, 1])  # n^-1/4 = [1/5, 1]
    assert loss.margins.tolist() == pytest.approx([0.1, 0.5])


def test_reduced_focal_hand_computed_and_threshold_one_is_ce():
    logits = torch.tensor([[math.log(0.9), math.log(0.1)]] * 2)
    loss = reduced_focal_loss(logits, torch.tensor([0, 1]), 2.0, 0.5, reduction="none")
    # p_t = 0.9 >= 0.5: (0.1^2 / 0.5^2) * -log 0.9 = 0.04 * 0.1053605; p_t = 0.1 < 0.5: -log 0.1
    assert loss.tolist() == pytest.approx([0.04 * -math.log(0.9), -math.log(0.1)])
    ce = F.cross_entropy(LOGITS, TARGET).item()
    assert reduced_focal_loss(LOGITS, TARGET, 2.0, 1.0).item() == pytest.approx(ce)
    # threshold 0.25: p_t = 0.9 -> (0.01 / 0.0625) * -log 0.9
    quarter = ReducedFocalLoss(gamma=2.0, threshold=0.25)(logits[:1], torch.tensor([0]))
    assert quarter.item() == pytest.approx(0.16 * -math.log(0.9))


def test_equalized_focal_hand_computed_and_focal_limit():
    from mmpretrain.models.losses.focal_loss import sigmoid_focal_loss  # noqa: PLC0415

    # one class, logit 0 (p = 0.5), g = 0: gamma = 2 + 8 = 10, weight 10 / 2 = 5
    one = equalized_focal_loss(torch.zeros(1, 1), torch.tensor([0]), torch.zeros(1), 2.0, 8.0)
    assert one.item() == pytest.approx(5 * 0.5**10 * math.log(2))
    # g = 1: the sigmoid focal loss (mmpretrain's, alpha 0.5) times 2, summed over classes
    efl = equalized_focal_loss(LOGITS, TARGET, torch.ones(5), 2.0, 8.0)
    onehot = F.one_hot(TARGET, 5).float()
    focal = sigmoid_focal_loss(LOGITS, onehot, gamma=2.0, alpha=0.5, reduction="sum") / len(TARGET)
    assert efl.item() == pytest.approx(2 * focal.item(), rel=1e-5)


def test_equalized_focal_collects_gradient_statistics():
    loss = EqualizedFocalLoss()
    logits = LOGITS.clone().requires_grad_(True)
    assert loss.gradient_ratio(5).tolist() == [1.0] * 5  # no statistics yet: plain focal
    loss(logits, TARGET).backward()
    onehot = F.one_hot(TARGET, 5).float()
    grad = logits.grad.abs()
    expected = ((grad * onehot).sum(0) / (grad * (1 - onehot)).sum(0)).clamp(0, 1)
    assert loss.gradient_ratio(5).tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert loss.gradient_ratio(7)[5:].tolist() == [1.0, 1.0]  # a grown head starts at g = 1


def test_class_balanced_hand_computed_and_beta_zero_is_the_base_loss():
    loss = ClassBalancedLoss(base_loss=dict(type="CrossEntropyLoss"), beta=0.5)
    loss.set_class_counts([1, 2])
    # weights [1.2, 0.8]; zero logits: every sample loss is log 2
    value = loss(torch.zeros(2, 2), torch.tensor([0, 0]))
    assert value.item() == pytest.approx(1.2 * math.log(2))
    # mmpretrain's CE and (sigmoid, per-element) focal loss, and a torch.nn loss
    for base in (
        dict(type="CrossEntropyLoss"),
        dict(type="FocalLoss"),
        dict(type="MultiMarginLoss"),
    ):
        plain = build_criterion(base)
        cb = ClassBalancedLoss(base_loss=base, beta=0.0)
        cb.set_class_counts([500, 100, 50, 10, 5])
        assert cb(LOGITS, TARGET).item() == pytest.approx(plain(LOGITS, TARGET).item(), rel=1e-5)


def test_losses_without_counts_say_how_to_get_them():
    with pytest.raises(RuntimeError, match="set_class_counts"):
        BalancedSoftmaxLoss()(LOGITS, TARGET)


def test_counts_shorter_than_the_head_are_padded():
    loss = LogitAdjustedLoss(tau=1.0)
    loss.set_class_counts([3, 1])  # a 4-row head: classes 2, 3 have no image yet -> count 1
    value = loss(torch.zeros(1, 4), torch.tensor([0]))
    assert value.item() == pytest.approx(-math.log(3 / 6))


@pytest.mark.parametrize(
    "cfg",
    [
        dict(type="BalancedSoftmaxLoss"),
        dict(type="LogitAdjustedLoss", tau=1.0),
        dict(type="LDAMLoss", max_margin=0.5, scale=1.0),
        dict(type="ReducedFocalLoss", threshold=0.5),
        dict(type="EqualizedFocalLoss"),
        dict(type="ClassBalancedLoss", base_loss=dict(type="FocalLoss"), beta=0.9999),
        dict(type="LabelSmoothLoss", label_smooth_val=0.1),
        dict(type="SeesawLoss", num_classes=5),
    ],
)
def test_every_loss_builds_from_config(cfg):
    loss = build_criterion(cfg)
    if hasattr(loss, "set_class_counts"):
        loss.set_class_counts([50, 20, 10, 5, 1])
    value = loss(LOGITS.clone().requires_grad_(True), TARGET)
    assert value.dim() == 0 and torch.isfinite(value)
