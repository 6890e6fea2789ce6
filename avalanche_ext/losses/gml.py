"""The GML loss and the two-temperature ensemble of "No One Left Behind: Improving the Worst
Categories in Long-Tailed Learning" (Du & Wu, CVPR 2023, arXiv 2303.03630), as pure functions.

The paper targets the geometric mean of the per-class recalls. Its log is the mean over classes of
``log r_c``; with the soft recall ``r_c ~ mean_{i: y_i = c} p_c(x_i)`` (the probability the model
gives class ``c`` on its own images) this becomes the loss below, computed over the classes present
in a minibatch. See docs/longtail.md for the formula and why each choice was made.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avalanche_ext.losses.long_tail import ClassCountsMixin, class_prior
from avalanche_ext.registry import LOSSES

__all__ = ["GMLLoss", "gml_ensemble_logits", "gml_loss"]


def gml_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    counts: torch.Tensor | None = None,
    tau: float = 0.0,
) -> torch.Tensor:
    """Geometric-mean loss: ``-(1/|C_B|) sum_{c in C_B} log( mean_{i in B: y_i = c} p_c(x_i) )``.

    ``C_B`` are the classes present in the batch, ``p = softmax(z + tau * log pi)`` (``tau = 0``:
    the plain softmax). Minimising it maximises the batch estimate of ``log GM`` of the soft
    per-class recalls: every present class weighs the same however many images it has, and inside
    a class the mean is over probabilities, not log-probabilities, so a class's loss is dominated
    by its well-classified images only as much as its recall is. By Jensen's inequality it is at
    most the class-averaged cross-entropy, with equality when each class has one image in the
    batch (or identical probabilities).

    Args:
        logits: ``[N, C]``.
        target: ``[N]``.
        counts: training images per class (the prior ``pi``); needed only for ``tau != 0``.
        tau: logit-adjustment strength inside the softmax.
    """
    if tau:
        if counts is None:
            raise ValueError("gml_loss: tau != 0 needs the class counts")
        logits = logits + tau * class_prior(counts, logits.shape[1]).log().to(logits)
    log_p = F.log_softmax(logits, dim=1).gather(1, target.view(-1, 1)).squeeze(1)  # [N]
    classes, group = torch.unique(target, return_inverse=True)
    k = len(classes)
    peak = torch.full((k,), -math.inf, dtype=log_p.dtype, device=log_p.device)
    peak = peak.scatter_reduce(0, group, log_p.detach(), reduce="amax")
    summed = torch.zeros(k, dtype=log_p.dtype, device=log_p.device)
    summed = summed.index_add(0, group, (log_p - peak[group]).exp())
    size = torch.bincount(group, minlength=k).to(log_p.dtype)
    log_mean = peak + summed.log() - size.log()  # log of each class's mean probability
    return -log_mean.mean()


def gml_ensemble_logits(
    new_logits: torch.Tensor,
    old_logits: torch.Tensor,
    t_new: float = 1.0,
    t_old: float = 1.0,
) -> torch.Tensor:
    """The ensemble of the re-trained and the original classifier: the log of the mean of their
    tempered softmax probabilities, ``log((softmax(z_new / t_new) + softmax(z_old / t_old)) / 2)``.

    Its softmax is that mean (a log-probability vector is its own log-softmax); with equal
    temperatures ``t`` and identical classifiers it is ``log_softmax(z / t)``: one classifier.

    Args:
        new_logits: ``[N, C]`` of the re-trained classifier.
        old_logits: ``[N, C]`` of the original classifier.
        t_new: temperature of the new classifier (the source document's "Temperature for New Model").
        t_old: temperature of the old one ("Temperature for Old Model").
    """
    if t_new <= 0 or t_old <= 0:
        raise ValueError(f"temperatures must be > 0, got t_new={t_new}, t_old={t_old}")
    mixed = torch.logaddexp(
        F.log_softmax(new_logits / t_new, dim=1), F.log_softmax(old_logits / t_old, dim=1)
    )
    return mixed - math.log(2.0)


@LOSSES.register_module()
class GMLLoss(ClassCountsMixin, nn.Module):
    """GML loss (Du & Wu, CVPR 2023; :func:`gml_loss`): classifier re-training with frozen
    features (``GMLRetrainingPlugin``) or as the loss of a full fine-tuning.

    Args:
        tau: logit adjustment inside the softmax (0: plain softmax, the default; the counts
            arrive automatically when it is not 0).
        loss_weight: multiplies the loss.
    """

    def __init__(self, tau: float = 0.0, loss_weight: float = 1.0):
        super().__init__()
        self.tau = float(tau)
        self.loss_weight = loss_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        counts = self._require_counts() if self.tau else None
        return self.loss_weight * gml_loss(logits, target, counts, self.tau)
