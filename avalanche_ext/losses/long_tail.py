"""Long-tail classification losses: the maths as pure functions, thin ``nn.Module`` wrappers in ``LOSSES``.

Losses that need the training class counts implement ``set_class_counts(counts)``; the strategy
builder then adds :class:`avalanche_ext.class_counts.ClassCountPlugin`, which passes them the counts
of the classes seen so far before each experience (configs never list counts).
Focal, label-smoothing and Seesaw losses are mmpretrain's own (``FocalLoss``, ``LabelSmoothLoss``,
``SeesawLoss``): nothing here re-implements them.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avalanche_ext.registry import LOSSES, build

__all__ = [
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "ClassCountsMixin",
    "EqualizedFocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "ReducedFocalLoss",
    "balanced_softmax_loss",
    "class_prior",
    "effective_number_weights",
    "equalized_focal_loss",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_loss",
    "posthoc_logit_adjustment",
    "reduced_focal_loss",
]

Counts = torch.Tensor | Sequence[int]


def _counts(counts: Counts, num_classes: int | None = None, device=None) -> torch.Tensor:
    """Counts as a float tensor of length ``num_classes`` (zero-padded; at least one per class).

    A class without a training image yet (a head pre-sized for later experiences, or a count list
    shorter than the logits) counts as one image: every formula below stays finite, and such a
    class gets the largest margin / smallest prior, which is what a tail class gets.
    """
    values = torch.as_tensor(counts, dtype=torch.float64, device=device).flatten()
    if num_classes is not None and values.numel() < num_classes:
        values = torch.cat([values, values.new_zeros(num_classes - values.numel())])
    elif num_classes is not None:
        values = values[:num_classes]
    return values.clamp_min(1.0)


def class_prior(counts: Counts, num_classes: int | None = None) -> torch.Tensor:
    """Training label distribution ``pi_c = n_c / sum_k n_k`` (float64).

    Args:
        counts: training images per class.
        num_classes: pad (or cut) to this many classes; missing classes count one image.
    """
    values = _counts(counts, num_classes)
    return values / values.sum()


def effective_number_weights(
    counts: Counts, beta: float = 0.9999, num_classes: int | None = None
) -> torch.Tensor:
    """Class-balanced weights of Cui et al. (CVPR 2019): ``w_c ∝ (1 - beta) / (1 - beta ** n_c)``.

    ``(1 - beta ** n) / (1 - beta)`` is the effective number of samples; the weights are normalised
    to sum to the number of classes (so ``beta = 0`` gives all ones and ``beta -> 1`` inverse
    frequency).

    Args:
        counts: training images per class.
        beta: in ``[0, 1)``.
        num_classes: pad (or cut) to this many classes.
    """
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    values = _counts(counts, num_classes)
    weights = (1.0 - beta) / (1.0 - torch.pow(torch.full_like(values, beta), values))
    return (weights / weights.sum() * values.numel()).float()


def _log_prior(counts: Counts, logits: torch.Tensor) -> torch.Tensor:
    return class_prior(counts, logits.shape[1]).log().to(logits)


def logit_adjusted_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    counts: Counts,
    tau: float = 1.0,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Logit-adjusted cross-entropy (Menon et al., ICLR 2021): ``CE(z + tau * log(pi), y)``.

    Args:
        logits: ``[N, C]``.
        target: ``[N]`` class ids.
        counts: training images per class (the prior ``pi``).
        tau: adjustment strength; 0 is plain cross-entropy.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        label_smoothing: torch's label smoothing of the target (0: none).
    """
    return F.cross_entropy(
        logits + tau * _log_prior(counts, logits),
        target,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


def balanced_softmax_loss(
    logits: torch.Tensor, target: torch.Tensor, counts: Counts, reduction: str = "mean"
) -> torch.Tensor:
    """Balanced softmax (Ren et al., NeurIPS 2020): ``CE(z + log(n), y)``.

    Adding ``log n_c`` equals adding ``log pi_c`` (the constant ``log sum n`` cancels in the
    softmax), so this is :func:`logit_adjusted_loss` with ``tau = 1``; with equal counts it is CE.
    """
    return logit_adjusted_loss(logits, target, counts, tau=1.0, reduction=reduction)


def posthoc_logit_adjustment(
    logits: torch.Tensor, counts: Counts, tau: float = 1.0
) -> torch.Tensor:
    """Post-hoc logit adjustment at prediction time (Menon et al.): ``z - tau * log(pi)``."""
    return logits - tau * _log_prior(counts, logits)


def ldam_margins(counts: Counts, max_margin: float = 0.5, num_classes: int | None = None):
    """LDAM margins (Cao et al., NeurIPS 2019): ``m_c ∝ n_c ** (-1/4)``, the largest = ``max_margin``."""
    raw = _counts(counts, num_classes).pow(-0.25)
    return (raw * (max_margin / raw.max())).float()


def ldam_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    margins: torch.Tensor,
    scale: float = 1.0,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Label-distribution-aware margin loss: ``CE(s * (z - m_y * onehot(y)), y; weight)``.

    The true class's logit is lowered by its margin before the softmax; ``weight`` (DRW's
    re-weighting) is torch's class weight, so the mean is over the weights of the batch, as in
    the authors' code. Margin 0 and ``scale = 1`` is cross-entropy.

    Args:
        logits: ``[N, C]``.
        target: ``[N]``.
        margins: ``[C]`` per-class margins (:func:`ldam_margins`).
        scale: ``s``; the paper's 30 goes with a cosine classifier, 1 with a plain linear head.
        weight: ``[C]`` class weights or None.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
    """
    shift = torch.zeros_like(logits)
    shift.scatter_(1, target.view(-1, 1), margins.to(logits)[target].view(-1, 1))
    w = None if weight is None else weight.to(logits)
    return F.cross_entropy(scale * (logits - shift), target, weight=w, reduction=reduction)


def reduced_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    threshold: float = 0.5,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Reduced focal loss (Sergievskiy & Ponamarev, 2019), on the softmax probability ``p_t``.

    ``-log p_t`` while ``p_t < threshold`` (hard samples keep the full cross-entropy), then
    ``-((1 - p_t) ** gamma / threshold ** gamma) * log p_t``: easy samples are down-weighted as in
    focal loss. The weight is continuous at ``p_t = threshold`` only for ``threshold = 0.5``
    (``(0.5/0.5)^gamma = 1``), as in the paper. ``threshold = 1`` is cross-entropy. The source
    documents' runs used thresholds 0.25-0.5 (0.5 best on CIFAR-100-LT).

    Args:
        logits: ``[N, C]``.
        target: ``[N]``.
        gamma: focusing parameter.
        threshold: ``p_t`` above which samples are down-weighted, in ``(0, 1]``.
        weight: ``[C]`` class weights multiplying each sample's loss, or None.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
    """
    log_pt = F.log_softmax(logits, dim=1).gather(1, target.view(-1, 1)).squeeze(1)
    pt = log_pt.exp()
    factor = torch.where(
        pt < threshold, torch.ones_like(pt), (1.0 - pt).pow(gamma) / threshold**gamma
    )
    loss = -factor * log_pt
    if weight is not None:
        loss = loss * weight.to(logits)[target]
    return _reduce(loss, reduction)


def equalized_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gradient_ratio: torch.Tensor,
    gamma_b: float = 2.0,
    scale: float = 8.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Equalized focal loss (Li et al., CVPR 2022), sigmoid form, summed over classes.

    Class ``j`` focuses with ``gamma_j = gamma_b + scale * (1 - g_j)`` and is weighted by
    ``gamma_j / gamma_b``, where ``g_j`` in ``[0, 1]`` is the accumulated ratio of positive to
    negative gradient of class ``j`` (rare classes: small ``g``, less focusing and a larger
    weight). With ``g = 1`` everywhere it is the sigmoid focal loss with ``gamma_b`` (alpha 0.5
    and a factor 2: mmpretrain's ``sigmoid_focal_loss(alpha=0.5)`` times two).

    Args:
        logits: ``[N, C]``.
        target: ``[N]``.
        gradient_ratio: ``[C]`` the ``g_j``.
        gamma_b: the base focusing parameter.
        scale: ``s`` of the category-relevant focusing factor.
        reduction: per sample (summed over classes) ``'mean'``, ``'sum'`` or ``'none'``.
    """
    onehot = F.one_hot(target, logits.shape[1]).to(logits)
    gamma = gamma_b + scale * (1.0 - gradient_ratio.to(logits).clamp(0.0, 1.0))
    p = logits.sigmoid()
    pt = p * onehot + (1.0 - p) * (1.0 - onehot)
    bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    loss = (gamma / gamma_b) * (1.0 - pt).pow(gamma) * bce
    return _reduce(loss.sum(1), reduction)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class ClassCountsMixin:
    """A loss that needs the training class counts: ``set_class_counts(counts)`` stores them.

    :class:`avalanche_ext.class_counts.ClassCountPlugin` calls it before every training experience
    with the counts of the classes seen so far; tests and scripts may call it directly.
    ``set_class_weight(w)`` (or None) is how deferred re-weighting switches class weights on.
    """

    class_counts: torch.Tensor | None = None
    class_weight: torch.Tensor | None = None
    accepts_class_weight = False  # True where forward uses ``class_weight`` (DRW checks it)

    def set_class_counts(self, counts: Counts) -> None:
        self.class_counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
        self._counts_changed()

    def set_class_weight(self, weight: Counts | None) -> None:
        self.class_weight = None if weight is None else torch.as_tensor(weight).float()

    def _counts_changed(self) -> None:
        """Recompute what depends on the counts (margins, weights)."""

    def _require_counts(self) -> torch.Tensor:
        if self.class_counts is None:
            raise RuntimeError(
                f"{type(self).__name__} needs the training class counts: built through the "
                "strategy builder they arrive before each experience; otherwise call "
                "set_class_counts(counts) first"
            )
        return self.class_counts


@LOSSES.register_module()
class BalancedSoftmaxLoss(ClassCountsMixin, nn.Module):
    """Balanced softmax cross-entropy (BSCE, Ren et al. 2020); counts arrive automatically.

    Args:
        loss_weight: multiplies the loss.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * balanced_softmax_loss(logits, target, self._require_counts())


@LOSSES.register_module()
class LogitAdjustedLoss(ClassCountsMixin, nn.Module):
    """Logit-adjusted cross-entropy (Menon et al. 2021); counts arrive automatically.

    Args:
        tau: adjustment strength (1.0 in the paper; 0 is plain cross-entropy).
        label_smoothing: label smoothing of the target (0: none).
        loss_weight: multiplies the loss.
    """

    def __init__(self, tau: float = 1.0, label_smoothing: float = 0.0, loss_weight: float = 1.0):
        super().__init__()
        self.tau = tau
        self.label_smoothing = float(label_smoothing)
        self.loss_weight = loss_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        counts = self._require_counts()
        return self.loss_weight * logit_adjusted_loss(
            logits, target, counts, self.tau, label_smoothing=self.label_smoothing
        )


@LOSSES.register_module()
class LDAMLoss(ClassCountsMixin, nn.Module):
    """LDAM loss (Cao et al. 2019); pair it with ``DRWPlugin`` for LDAM-DRW.

    Args:
        max_margin: margin of the rarest class (0.5 in the paper).
        scale: ``s`` multiplying the logits: 30 in the paper, whose ResNet-32 ends in a cosine
            classifier; 1 for the plain ``LinearClsHead`` of the shipped configs (the logits of a
            linear head are already unnormalised).
        loss_weight: multiplies the loss.
    """

    accepts_class_weight = True

    def __init__(self, max_margin: float = 0.5, scale: float = 1.0, loss_weight: float = 1.0):
        super().__init__()
        self.max_margin = max_margin
        self.scale = scale
        self.loss_weight = loss_weight
        self.margins: torch.Tensor | None = None

    def _counts_changed(self) -> None:
        self.margins = ldam_margins(self.class_counts, self.max_margin)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        counts = self._require_counts()
        margins = ldam_margins(counts, self.max_margin, logits.shape[1])
        return self.loss_weight * ldam_loss(
            logits, target, margins, self.scale, _fit(self.class_weight, logits.shape[1])
        )


def _fit(weight: torch.Tensor | None, num_classes: int) -> torch.Tensor | None:
    """Class weights padded with ones (or cut) to the width of the logits."""
    if weight is None or weight.numel() == num_classes:
        return weight
    if weight.numel() > num_classes:
        return weight[:num_classes]
    return torch.cat([weight, weight.new_ones(num_classes - weight.numel())])


@LOSSES.register_module()
class ReducedFocalLoss(ClassCountsMixin, nn.Module):
    """Reduced focal loss (REFL) with a threshold; see :func:`reduced_focal_loss`.

    Args:
        gamma: focusing parameter (2.0).
        threshold: ``p_t`` above which samples are down-weighted (0.5; the source documents
            tried 0.25-0.5).
        loss_weight: multiplies the loss.
    """

    accepts_class_weight = True

    def __init__(self, gamma: float = 2.0, threshold: float = 0.5, loss_weight: float = 1.0):
        super().__init__()
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.gamma = gamma
        self.threshold = threshold
        self.loss_weight = loss_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = _fit(self.class_weight, logits.shape[1])
        loss = reduced_focal_loss(logits, target, self.gamma, self.threshold, weight)
        return self.loss_weight * loss


@LOSSES.register_module()
class EqualizedFocalLoss(nn.Module):
    """Equalized focal loss (EFL) with the paper's online gradient statistics.

    A backward hook on the logits accumulates, per class, the magnitude of the positive and of
    the negative gradient; ``g_j = clamp(pos_j / neg_j, 0, 1)`` drives the next forward
    (:func:`equalized_focal_loss`). The statistics start at ``g = 1`` (plain focal loss) and grow
    with the head when the number of classes grows.

    Args:
        gamma_b: base focusing parameter (2.0).
        scale: ``s`` of the category-relevant factor (8.0).
        loss_weight: multiplies the loss.
    """

    def __init__(self, gamma_b: float = 2.0, scale: float = 8.0, loss_weight: float = 1.0):
        super().__init__()
        self.gamma_b = gamma_b
        self.scale = scale
        self.loss_weight = loss_weight
        self.register_buffer("pos_grad", torch.zeros(0))
        self.register_buffer("neg_grad", torch.zeros(0))

    def gradient_ratio(self, num_classes: int) -> torch.Tensor:
        """``g_j`` for the first ``num_classes`` classes (1 for classes without statistics)."""
        self._grow(num_classes)
        ratio = self.pos_grad / (self.neg_grad + 1e-10)
        seen = self.neg_grad > 0
        return torch.where(seen, ratio.clamp(0.0, 1.0), torch.ones_like(ratio))[:num_classes]

    def _grow(self, num_classes: int) -> None:
        extra = num_classes - self.pos_grad.numel()
        if extra > 0:
            self.pos_grad = torch.cat([self.pos_grad, self.pos_grad.new_zeros(extra)])
            self.neg_grad = torch.cat([self.neg_grad, self.neg_grad.new_zeros(extra)])

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ratio = self.gradient_ratio(logits.shape[1]).to(logits)
        if logits.requires_grad:
            onehot = F.one_hot(target, logits.shape[1]).to(logits)

            def collect(grad: torch.Tensor) -> None:
                magnitude = grad.detach().abs()
                self.pos_grad[: logits.shape[1]] += (magnitude * onehot).sum(0).to(self.pos_grad)
                self.neg_grad[: logits.shape[1]] += (
                    (magnitude * (1 - onehot)).sum(0).to(self.neg_grad)
                )

            logits.register_hook(collect)
        loss = equalized_focal_loss(logits, target, ratio, self.gamma_b, self.scale)
        return self.loss_weight * loss


def _per_sample(base: nn.Module, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The base loss without reduction: mmpretrain losses (``reduction_override``), torch.nn
    losses (``reduction``) and ours (``reduction`` argument of the pure functions) alike."""
    params = inspect.signature(base.forward).parameters
    if "reduction_override" in params:
        return base(logits, target, reduction_override="none")
    if hasattr(base, "reduction"):
        saved, base.reduction = base.reduction, "none"
        try:
            return base(logits, target)
        finally:
            base.reduction = saved
    raise TypeError(
        f"cl_strategy.loss.base_loss: {type(base).__name__} cannot return per-sample losses "
        "(no reduction_override or reduction)"
    )


@LOSSES.register_module()
class ClassBalancedLoss(ClassCountsMixin, nn.Module):
    """Class-balanced loss (Cui et al. 2019): any base loss, each sample weighted by
    :func:`effective_number_weights` of its class, averaged over the batch.

    Args:
        base_loss: the loss dict to re-weight (mmpretrain's ``CrossEntropyLoss``, ``FocalLoss``
            (sigmoid), ``torch.nn`` losses, ...); it must be able to return per-sample losses.
        beta: effective-number hyper-parameter (0.9999 for CIFAR in the paper; 0 is the base loss).
        loss_weight: multiplies the loss.
    """

    def __init__(
        self,
        base_loss: dict | None = None,
        beta: float = 0.9999,
        loss_weight: float = 1.0,
    ):
        super().__init__()
        self.base = build(
            LOSSES,
            dict(base_loss or {"type": "CrossEntropyLoss"}),
            key="cl_strategy.loss.base_loss",
        )
        if not 0 <= beta < 1:
            raise ValueError(f"cl_strategy.loss.beta: must be in [0, 1), got {beta}")
        self.beta = beta
        self.loss_weight = loss_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = effective_number_weights(self._require_counts(), self.beta, logits.shape[1])
        per = _per_sample(self.base, logits, target)
        sample_w = weights.to(logits)[target].view(-1, *([1] * (per.dim() - 1)))
        return self.loss_weight * (per * sample_w).mean()
