"""The GML loss and the two-temperature ensemble: hand-computed values and their limits."""

import avalanche_ext  # noqa: F401  (stack fixes first)

# isort: split
import math

import pytest
import torch
import torch.nn.functional as F

from avalanche_ext.losses.gml import GMLLoss, gml_ensemble_logits, gml_loss
from avalanche_ext.registry import LOSSES, build


def test_gml_hand_computed():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([0, 0, 1])
    p0 = (math.exp(2) / (math.exp(2) + 1) + 0.5) / 2  # class 0: mean of its two probabilities
    p1 = 0.5
    expected = -(math.log(p0) + math.log(p1)) / 2
    assert gml_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_one_image_per_class_is_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 5, generator=gen)
    target = torch.tensor([3, 0, 4, 1, 2])
    assert gml_loss(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item())


def test_identical_images_give_class_averaged_cross_entropy_and_jensen_bounds_it():
    gen = torch.Generator().manual_seed(1)
    row0, row1 = torch.randn(1, 3, generator=gen), torch.randn(1, 3, generator=gen)
    logits = torch.cat([row0.repeat(4, 1), row1])  # class 0 four times the same, class 1 once
    target = torch.tensor([0, 0, 0, 0, 1])
    per = F.cross_entropy(logits, target, reduction="none")
    class_avg = (per[:4].mean() + per[4]) / 2
    assert gml_loss(logits, target).item() == pytest.approx(class_avg.item(), rel=1e-6)
    varied = torch.randn(8, 3, generator=gen)
    t = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    per = F.cross_entropy(varied, t, reduction="none")
    bound = torch.stack([per[t == c].mean() for c in range(3)]).mean()
    assert gml_loss(varied, t).item() <= bound.item() + 1e-6  # -log mean p <= mean -log p


def test_limits_perfect_prediction_extreme_logits_and_tau():
    target = torch.tensor([0, 1, 1])
    perfect = 50.0 * F.one_hot(target, 3).float()
    assert gml_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    extreme = torch.tensor([[-1000.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    value = gml_loss(extreme.requires_grad_(), target)
    value.backward()
    assert math.isfinite(value.item()) and torch.isfinite(extreme.grad).all()
    logits = torch.randn(3, 3, generator=torch.Generator().manual_seed(2))
    counts = torch.tensor([100.0, 10.0, 1.0])
    shifted = logits + torch.log(counts / counts.sum())
    assert gml_loss(logits, target, counts, tau=1.0).item() == pytest.approx(
        gml_loss(shifted, target).item(), rel=1e-6
    )
    uniform = torch.tensor([7.0, 7.0, 7.0])
    assert gml_loss(logits, target, uniform, tau=1.0).item() == pytest.approx(
        gml_loss(logits, target).item(), rel=1e-6
    )


def test_ensemble_of_identical_classifiers_with_equal_temperatures_is_one_classifier():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    one = gml_ensemble_logits(logits, logits.clone(), 1.0, 1.0)
    assert torch.allclose(one.softmax(1), logits.softmax(1), atol=1e-6)
    two = gml_ensemble_logits(logits, logits.clone(), 2.0, 2.0)
    assert torch.allclose(two, F.log_softmax(logits / 2.0, 1), atol=1e-6)
    assert torch.equal(two.argmax(1), logits.argmax(1))


def test_ensemble_hand_computed_mixture():
    new, old = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    mixed = gml_ensemble_logits(new, old, t_new=1.0, t_old=2.0).exp()
    a = torch.tensor([2.0, 0.0]).softmax(0)
    b = torch.tensor([0.0, 1.0]).softmax(0)
    assert torch.allclose(mixed[0], (a + b) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="temperatures"):
        gml_ensemble_logits(new, old, t_new=0.0)


def test_gml_loss_is_registered_and_takes_counts_when_adjusted():
    loss = build(LOSSES, dict(type="GMLLoss", tau=1.0), key="cl_strategy.loss")
    assert isinstance(loss, GMLLoss)
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 2])
    with pytest.raises(RuntimeError, match="class counts"):
        loss(logits, target)
    loss.set_class_counts([5, 3, 1])
    counts = torch.tensor([5.0, 3.0, 1.0])
    assert loss(logits, target).item() == pytest.approx(
        gml_loss(logits, target, counts, 1.0).item(), rel=1e-6
    )
