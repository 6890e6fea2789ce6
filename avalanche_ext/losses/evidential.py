"""Evidential deep learning (Sensoy et al., NeurIPS 2018): Dirichlet losses and uncertainty.

Logits become non-negative evidence ``e``; ``alpha = e + 1`` parametrises a Dirichlet over classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from avalanche_ext.registry import LOSSES

__all__ = [
    "EVIDENCE_FUNCTIONS",
    "EvidentialLoss",
    "dirichlet_uncertainty",
    "dirichlet_kl_to_uniform",
]


def _exp_evidence(logits: torch.Tensor) -> torch.Tensor:
    # Clamped so that a large logit cannot overflow to inf evidence.
    return torch.exp(logits.clamp(-10.0, 10.0))


EVIDENCE_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "softplus": F.softplus,
    "exp": _exp_evidence,
}


def _evidence(logits: torch.Tensor, evidence: str) -> torch.Tensor:
    try:
        return EVIDENCE_FUNCTIONS[evidence](logits)
    except KeyError:
        raise ValueError(
            f"evidence must be one of {sorted(EVIDENCE_FUNCTIONS)}, got {evidence!r}"
        ) from None


def dirichlet_uncertainty(logits: torch.Tensor, evidence: str = "softplus") -> torch.Tensor:
    """Subjective-logic uncertainty mass ``u = K / S`` of the Dirichlet each row of logits defines.

    ``S = sum_j (e_j + 1)``: ``u = 1`` with no evidence at all, ``u -> 0`` as evidence grows.

    Args:
        logits (Tensor): ``[N, K]`` raw network outputs.
        evidence (str): the map logits -> evidence, one of ``'relu'``, ``'softplus'``, ``'exp'``.

    Returns:
        Tensor: ``[N]`` uncertainties in ``(0, 1]``.
    """
    alpha = _evidence(logits, evidence) + 1.0
    return logits.shape[1] / alpha.sum(1)


def dirichlet_kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """``KL(Dir(alpha) || Dir(1, ..., 1))`` per row (Sensoy et al. 2018, eq. 5 regulariser).

    Args:
        alpha (Tensor): ``[N, K]`` Dirichlet concentrations, all ``> 0``.

    Returns:
        Tensor: ``[N]`` non-negative divergences (0 when ``alpha`` is all ones).
    """
    num_classes = alpha.shape[1]
    strength = alpha.sum(1)
    return (
        torch.lgamma(strength)
        - torch.lgamma(alpha.new_tensor(float(num_classes)))
        - torch.lgamma(alpha).sum(1)
        + ((alpha - 1.0) * (torch.digamma(alpha) - torch.digamma(strength)[:, None])).sum(1)
    )


@LOSSES.register_module()
class EvidentialLoss(nn.Module):
    """Evidential classification loss: a Dirichlet data term plus an annealed KL regulariser.

    Per sample, with one-hot (or soft) target ``y``, ``alpha = evidence(logits) + 1``,
    ``S = sum_j alpha_j`` and ``p = alpha / S``:

    * ``kind='mse'`` (eq. 5): ``sum_j (y_j - p_j)^2 + p_j (1 - p_j) / (S + 1)``;
    * ``kind='log'`` (eq. 3, type-II maximum likelihood): ``sum_j y_j (log S - log alpha_j)``;
    * ``kind='digamma'`` (eq. 4, Bayes risk of cross-entropy): ``sum_j y_j (psi(S) - psi(alpha_j))``;

    plus ``lambda_t * KL(Dir(alpha~) || Dir(1))`` where ``alpha~ = y + (1 - y) * alpha`` keeps only
    the misleading evidence and ``lambda_t = min(1, epoch / annealing_step)``. The epoch is an
    internal counter set by :meth:`set_epoch` (a plugin or the runner calls it each epoch), so the
    module can be passed straight to an Avalanche strategy as ``criterion`` (``loss(logits, y)``).
    The call signature follows mmpretrain's losses (``cls_score, label, weight, avg_factor,
    reduction_override``).

    Args:
        loss_weight (float): multiplies the whole loss.
        evidence (str): logits -> evidence map: ``'relu'``, ``'softplus'`` or ``'exp'``.
        kind (str): data term, ``'mse'``, ``'log'`` or ``'digamma'``.
        annealing_step (int): epochs over which the KL weight ramps linearly from 0 to 1;
            0 applies the full KL term from the start.
        reduction (str): ``'mean'``, ``'sum'`` or ``'none'`` over samples.
    """

    KINDS = ("mse", "log", "digamma")

    def __init__(
        self,
        loss_weight: float = 1.0,
        evidence: str = "softplus",
        kind: str = "mse",
        annealing_step: int = 10,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if evidence not in EVIDENCE_FUNCTIONS:
            raise ValueError(
                f"evidence must be one of {sorted(EVIDENCE_FUNCTIONS)}, got {evidence!r}"
            )
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        if annealing_step < 0:
            raise ValueError(f"annealing_step must be >= 0, got {annealing_step}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.loss_weight = loss_weight
        self.evidence = evidence
        self.kind = kind
        self.annealing_step = annealing_step
        self.reduction = reduction
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch the KL annealing coefficient is computed from.

        Args:
            epoch (int): training epoch, counted from 0.
        """
        self.epoch = int(epoch)

    @property
    def annealing_coef(self) -> float:
        """float: the current KL weight ``min(1, epoch / annealing_step)``."""
        if self.annealing_step == 0:
            return 1.0
        return min(1.0, self.epoch / self.annealing_step)

    def forward(
        self,
        cls_score: torch.Tensor,
        label: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Computes the loss.

        Args:
            cls_score (Tensor): ``[N, K]`` logits.
            label (Tensor): ``[N]`` class ids or ``[N, K]`` one-hot / soft targets.
            weight (Tensor | None): optional ``[N]`` per-sample weights.
            avg_factor (float | None): divide the summed loss by this instead of ``N``
                (only with the ``'mean'`` reduction).
            reduction_override (str | None): overrides ``reduction`` for this call.
            **kwargs: ignored (mmpretrain heads pass extra keys).

        Returns:
            Tensor: scalar, or ``[N]`` with the ``'none'`` reduction.
        """
        reduction = reduction_override or self.reduction
        num_classes = cls_score.shape[1]
        if label.dim() == 1:
            target = F.one_hot(label.long(), num_classes).to(cls_score.dtype)
        else:
            target = label.to(cls_score.dtype)
        alpha = _evidence(cls_score, self.evidence) + 1.0
        strength = alpha.sum(1, keepdim=True)
        if self.kind == "mse":
            prob = alpha / strength
            data = ((target - prob) ** 2 + prob * (1.0 - prob) / (strength + 1.0)).sum(1)
        elif self.kind == "log":
            data = (target * (torch.log(strength) - torch.log(alpha))).sum(1)
        else:
            data = (target * (torch.digamma(strength) - torch.digamma(alpha))).sum(1)
        loss = data
        coef = self.annealing_coef
        if coef > 0:
            alpha_misleading = target + (1.0 - target) * alpha
            loss = loss + coef * dirichlet_kl_to_uniform(alpha_misleading)
        if weight is not None:
            loss = loss * weight.to(loss.dtype)
        if reduction == "mean":
            loss = loss.sum() / avg_factor if avg_factor is not None else loss.mean()
        elif reduction == "sum":
            loss = loss.sum()
        elif reduction != "none":
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, evidence={self.evidence!r}, "
            f"annealing_step={self.annealing_step}, loss_weight={self.loss_weight}"
        )
