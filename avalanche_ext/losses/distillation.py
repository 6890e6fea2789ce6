"""Knowledge-distillation losses between a student and a frozen teacher (logits or features).

Pure functions on tensors, shared by the LwF and dual-teacher plugins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kd_loss", "feature_distillation_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Hinton's distillation loss ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``.

    The ``T^2`` factor keeps the gradient scale independent of the temperature (Hinton et al. 2015).
    When the teacher has fewer outputs than the student (the student's head has grown), only the
    student's first ``C_old = teacher_logits.shape[1]`` columns are distilled: class ids are stable,
    so column ``j`` means the same class in both models. The teacher is detached.

    Args:
        student_logits (Tensor): ``[N, C_student]`` logits of the model being trained.
        teacher_logits (Tensor): ``[N, C_old]`` logits of the teacher, ``C_old <= C_student``.
        temperature (float): softmax temperature ``T > 0``.
        reduction (str): ``'mean'`` (sum over classes, mean over samples: KL's ``batchmean``),
            ``'sum'`` (sum over samples) or ``'none'`` (one value per sample, shape ``[N]``).

    Returns:
        Tensor: a scalar, or ``[N]`` with ``reduction='none'``.

    Raises:
        ValueError: shapes do not fit, the temperature is not positive or the reduction is unknown.
    """
    _check_reduction(reduction)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.dim() != 2 or teacher_logits.dim() != 2:
        raise ValueError(
            f"expected [N, C] logits, got student {tuple(student_logits.shape)} and "
            f"teacher {tuple(teacher_logits.shape)}"
        )
    num_old = teacher_logits.shape[1]
    if student_logits.shape[0] != teacher_logits.shape[0] or student_logits.shape[1] < num_old:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} cannot be distilled from teacher logits "
            f"{tuple(teacher_logits.shape)}: same batch and at least as many classes needed"
        )
    log_p_student = F.log_softmax(student_logits[:, :num_old] / temperature, dim=1)
    log_p_teacher = F.log_softmax(
        teacher_logits.detach().to(log_p_student.dtype) / temperature, dim=1
    )
    # KL(p_t || p_s) = sum_j p_t,j (log p_t,j - log p_s,j); log_target avoids log(0) when p_t -> 0.
    per_sample = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(1)
    return (temperature**2) * _reduce(per_sample, reduction)


def feature_distillation_loss(
    student_feats: torch.Tensor,
    teacher_feats: torch.Tensor,
    kind: str = "l2",
    reduction: str = "mean",
) -> torch.Tensor:
    """Distance between student and (detached) teacher feature vectors, one value per sample.

    Args:
        student_feats (Tensor): ``[N, D]`` (or ``[N, ...]``, flattened) student features.
        teacher_feats (Tensor): teacher features of the same shape.
        kind (str): ``'l2'``: squared Euclidean distance ``||s - t||^2`` per sample;
            ``'cosine'``: ``1 - cos(s, t)`` per sample (in ``[0, 2]``, scale-free).
        reduction (str): ``'mean'`` over samples, ``'sum'`` or ``'none'`` (shape ``[N]``).

    Returns:
        Tensor: a scalar, or ``[N]`` with ``reduction='none'``.

    Raises:
        ValueError: shapes differ, or ``kind`` / ``reduction`` is unknown.
    """
    _check_reduction(reduction)
    if student_feats.shape != teacher_feats.shape:
        raise ValueError(
            f"feature shapes differ: student {tuple(student_feats.shape)}, "
            f"teacher {tuple(teacher_feats.shape)}"
        )
    student = student_feats.flatten(1)
    teacher = teacher_feats.detach().flatten(1).to(student.dtype)
    if kind == "l2":
        per_sample = (student - teacher).pow(2).sum(1)
    elif kind == "cosine":
        per_sample = 1.0 - F.cosine_similarity(student, teacher, dim=1)
    else:
        raise ValueError(f"kind must be 'l2' or 'cosine', got {kind!r}")
    return _reduce(per_sample, reduction)
