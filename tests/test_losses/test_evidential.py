"""Tests of the evidential (Dirichlet) loss and uncertainty against hand-computed values.

relu evidence keeps the arithmetic exact; Sensoy et al. 2018 eqs. 3-5.
"""

import math

import pytest
import torch
from torch.distributions import Dirichlet, kl_divergence

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.losses.evidential import (
    EvidentialLoss,
    dirichlet_kl_to_uniform,
    dirichlet_uncertainty,
)
from avalanche_ext.registry import LOSSES, build


def test_dirichlet_uncertainty():
    # relu([2, 0, -1]) = [2, 0, 0] -> alpha = [3, 1, 1], S = 5, u = K / S = 3 / 5
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    assert dirichlet_uncertainty(logits, evidence="relu").item() == pytest.approx(0.6)
    # softplus(0) = ln 2 -> alpha = 1 + ln2 = 1.693147 each, S = 3.386294, u = 2 / S = 0.590616
    assert dirichlet_uncertainty(torch.zeros(1, 2)).item() == pytest.approx(0.590616, abs=1e-6)


def test_mse_loss_without_kl():
    # alpha = [3, 1, 1], S = 5, p = [0.6, 0.2, 0.2], y = [1, 0, 0]
    # error: 0.4^2 + 0.2^2 + 0.2^2 = 0.24; variance: (0.24 + 0.16 + 0.16) / (S + 1) = 0.093333
    loss = EvidentialLoss(evidence="relu", kind="mse", annealing_step=10)  # epoch 0 -> no KL
    value = loss(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0]))
    assert value.item() == pytest.approx(0.24 + 0.56 / 6, abs=1e-6)


def test_log_and_digamma_losses():
    logits, label = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    # log: ln S - ln alpha_y = ln 5 - ln 3 = 0.510826
    log_loss = EvidentialLoss(evidence="relu", kind="log")(logits, label)
    assert log_loss.item() == pytest.approx(math.log(5 / 3), abs=1e-6)
    # digamma: psi(5) - psi(3) = 1/3 + 1/4 = 0.583333
    dg_loss = EvidentialLoss(evidence="relu", kind="digamma")(logits, label)
    assert dg_loss.item() == pytest.approx(7 / 12, abs=1e-5)


def test_kl_to_uniform_dirichlet():
    # KL(Dir(1, 2, 1) || Dir(1, 1, 1)) = lgamma(4) - lgamma(3) - sum lgamma(a) + (2-1)(psi(2) - psi(4))
    #   = ln 6 - ln 2 - 0 + (-(1/2 + 1/3)) = ln 3 - 5/6 = 0.265279
    kl = dirichlet_kl_to_uniform(torch.tensor([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0]]))
    assert kl.tolist() == pytest.approx([math.log(3) - 5 / 6, 0.0], abs=1e-6)
    alpha = torch.tensor([[0.5, 3.0, 7.0]])
    reference = kl_divergence(Dirichlet(alpha), Dirichlet(torch.ones(1, 3)))
    assert dirichlet_kl_to_uniform(alpha).item() == pytest.approx(reference.item(), rel=1e-5)


def test_kl_term_is_annealed_by_epoch():
    # alpha = relu([2, 1, 0]) + 1 = [3, 2, 1], S = 6, p = [1/2, 1/3, 1/6], y = [1, 0, 0]
    # mse: 1/4 + 1/9 + 1/36 = 0.388889; variance (1/4 + 2/9 + 5/36) / 7 = 0.087302 -> 0.476190
    # alpha~ = y + (1 - y) alpha = [1, 2, 1] -> KL = ln 3 - 5/6 = 0.265279 (above)
    logits, label = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([0])
    data, kl = 0.476190, math.log(3) - 5 / 6
    loss = EvidentialLoss(evidence="relu", kind="mse", annealing_step=10)
    assert loss(logits, label).item() == pytest.approx(data, abs=1e-5)
    loss.set_epoch(5)  # coefficient 5 / 10
    assert loss.annealing_coef == 0.5
    assert loss(logits, label).item() == pytest.approx(data + 0.5 * kl, abs=1e-5)
    loss.set_epoch(20)  # capped at 1
    assert loss(logits, label).item() == pytest.approx(data + kl, abs=1e-5)
    assert EvidentialLoss(annealing_step=0).annealing_coef == 1.0


def test_weights_reductions_and_soft_labels():
    logits = torch.tensor([[2.0, 0.0, -1.0], [2.0, 0.0, -1.0]])
    loss = EvidentialLoss(evidence="relu", kind="log", loss_weight=2.0)
    per_sample = loss(logits, torch.tensor([0, 0]), reduction_override="none")
    # 2 * ln(5/3) each
    assert per_sample.tolist() == pytest.approx([2 * math.log(5 / 3)] * 2, abs=1e-6)
    weighted = loss(logits, torch.tensor([0, 0]), weight=torch.tensor([1.0, 0.0]), avg_factor=1.0)
    assert weighted.item() == pytest.approx(2 * math.log(5 / 3), abs=1e-6)
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert loss(logits, one_hot).item() == pytest.approx(loss(logits, torch.tensor([0, 0])).item())


def test_usable_as_a_strategy_criterion_and_from_the_registry():
    criterion = build(LOSSES, dict(type="EvidentialLoss", kind="mse", annealing_step=5))
    assert isinstance(criterion, EvidentialLoss)
    logits = torch.randn(8, 4, requires_grad=True)
    value = criterion(logits, torch.randint(0, 4, (8,)))
    assert value.dim() == 0
    value.backward()
    assert torch.isfinite(logits.grad).all()


def test_rejects_unknown_options():
    with pytest.raises(ValueError, match="evidence"):
        EvidentialLoss(evidence="sigmoid")
    with pytest.raises(ValueError, match="kind"):
        EvidentialLoss(kind="ce")
