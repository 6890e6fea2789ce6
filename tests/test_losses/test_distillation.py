"""Tests of the knowledge-distillation losses against hand-computed values.

Each expected number is derived in a comment next to it.
"""

import math

import pytest
import torch

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.losses.distillation import feature_distillation_loss, kd_loss

LN3 = math.log(3.0)


def test_kd_loss_temperature_one_matches_hand_computed_kl():
    # teacher [ln3, 0] -> p_t = [3/4, 1/4]; student [0, 0] -> p_s = [1/2, 1/2]
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.304099 - 0.173287 = 0.130812; T^2 = 1
    loss = kd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]]), temperature=1.0)
    assert loss.item() == pytest.approx(0.130812, abs=1e-6)


def test_kd_loss_includes_t_squared_factor():
    # T = 2: teacher/T = [ln3 / 2, 0] -> p_t = [sqrt3, 1] / (sqrt3 + 1) = [0.633975, 0.366025]
    # KL = 0.633975 ln(1.267949) + 0.366025 ln(0.732051) = 0.150513 - 0.114173 = 0.036341
    # loss = T^2 * KL = 4 * 0.036341 = 0.145363
    loss = kd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]]), temperature=2.0)
    assert loss.item() == pytest.approx(0.145363, abs=1e-5)


def test_kd_loss_distills_only_the_teachers_columns():
    # The student's third (new) column is ignored: same value as with two columns.
    loss = kd_loss(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[LN3, 0.0]]), temperature=1.0)
    assert loss.item() == pytest.approx(0.130812, abs=1e-6)


def test_kd_loss_reductions():
    # sample 1: KL 0.130812 (above); sample 2: student == teacher -> 0
    student = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    teacher = torch.tensor([[LN3, 0.0], [1.0, 2.0]])
    per_sample = kd_loss(student, teacher, temperature=1.0, reduction="none")
    assert per_sample.tolist() == pytest.approx([0.130812, 0.0], abs=1e-6)
    # batchmean: (0.130812 + 0) / 2 = 0.065406
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(0.065406, abs=1e-6)
    assert kd_loss(student, teacher, 1.0, reduction="sum").item() == pytest.approx(
        0.130812, abs=1e-6
    )


def test_kd_loss_gradient_reaches_student_only():
    student = torch.zeros(1, 3, requires_grad=True)
    teacher = torch.tensor([[LN3, 0.0]], requires_grad=True)
    kd_loss(student, teacher, temperature=1.0).backward()
    # d KL / d z_s = (p_s - p_t) / T on the distilled columns: [1/2 - 3/4, 1/2 - 1/4] = [-1/4, 1/4]
    assert student.grad[0].tolist() == pytest.approx([-0.25, 0.25, 0.0])
    assert teacher.grad is None


def test_kd_loss_rejects_a_wider_teacher_and_bad_arguments():
    with pytest.raises(ValueError, match="at least as many classes"):
        kd_loss(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.zeros(2, 2), torch.zeros(2, 2), temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        kd_loss(torch.zeros(2, 2), torch.zeros(2, 2), reduction="batchmean")


def test_feature_distillation_l2_and_cosine():
    # l2: ||[1, 2] - [0, 0]||^2 = 1 + 4 = 5; ||[1, 1] - [1, 1]||^2 = 0 -> mean 2.5
    student = torch.tensor([[1.0, 2.0], [1.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert feature_distillation_loss(student, teacher, "l2").item() == pytest.approx(2.5)
    # cosine: [1, 0] vs [0, 1] -> 1 - 0 = 1; [1, 0] vs [2, 0] -> 1 - 1 = 0
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    per_sample = feature_distillation_loss(student, teacher, "cosine", reduction="none")
    assert per_sample.tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    with pytest.raises(ValueError, match="kind"):
        feature_distillation_loss(student, teacher, "l1")
    with pytest.raises(ValueError, match="shapes differ"):
        feature_distillation_loss(student, teacher[:, :1])
