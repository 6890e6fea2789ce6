"""The old-vs-new operating point of a grown classifier: one offset ``b`` added to every new class's
logit, chosen without test labels, and the whole old/new trade-off as ``b`` sweeps.

Pure functions. A calibration objective is registered by a decorator in ``CALIBRATION_OBJECTIVES``
and sees only :class:`CalibrationData`: held-out KNOWN images with their labels (never trained on)
and the UNLABELED discovery images (all of them, and the pooled ones). Nothing here reads a test
label.

How the new-class side is estimated without labels: the discovery experience is a mixture of known
images (share ``pi``, unknown) and novel ones. For any offset, the share of ALL discovery images
routed to a new class is ``pi * R_known + (1 - pi) * R_novel``. ``R_known`` is measured on the
held-out known images, class-balanced (the known images of a discovery experience are taken to be
balanced, as the test set is and as ``CIFAR100KnownNovelLT`` holds them back); ``pi`` is estimated
by the mixture-proportion estimator of Blanchard, Lee and Scott (JMLR 2010; Scott, AISTATS 2015:
the smallest ratio of the two empirical distribution functions over the known-like end of the
margin); so ``R_novel`` follows. Routing estimated on the pooled images alone (the previous
estimate, still the fallback when only the pool is given) rates the easiest novel images only: the
pool is by construction what the gate found most novel, and it overrated routing ~2x.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CALIBRATION_OBJECTIVES",
    "CalibrationData",
    "calibrate_offset",
    "class_balanced_weights",
    "estimate_at",
    "known_share",
    "mixture_known_share",
    "old_new_margins",
    "offset_candidates",
    "register_calibration",
    "tradeoff_curve",
]


@dataclass
class CalibrationData:
    """What an operating point may be chosen from.

    Args:
        known_margins: ``[n]`` best new logit minus best old logit of held-out known images.
        known_old_correct: ``[n]`` whether the argmax over the OLD logits is the true class.
        known_labels: ``[n]`` their classes (for class-balanced weights).
        novel_margins: ``[m]`` the same margin of the pooled (likely novel) discovery images.
        novel_confidence: an unlabeled estimate of the accuracy of the new rows on the images they
            receive (the mean, over the pooled images, of the top softmax probability among the new
            classes).
        discovery_margins: ``[d]`` the margin of EVERY discovery image (known and novel mixed,
            unlabeled); empty: routing is estimated on the pooled images alone.
        reference_old_acc: class-balanced accuracy of the model BEFORE the update (the base
            model) on the same held-out known images; what an old-class budget is counted from
            (None: the updated model's own old accuracy when nothing is routed new).
    """

    known_margins: torch.Tensor
    known_old_correct: torch.Tensor
    known_labels: torch.Tensor
    novel_margins: torch.Tensor
    novel_confidence: float
    discovery_margins: torch.Tensor | None = None
    reference_old_acc: float | None = None


Objective = Callable[..., float]
CALIBRATION_OBJECTIVES: dict[str, Objective] = {}


def register_calibration(name: str) -> Callable[[Objective], Objective]:
    """Registers ``f(data: CalibrationData, **options) -> offset`` under ``name``."""

    def wrap(fn: Objective) -> Objective:
        CALIBRATION_OBJECTIVES[name] = fn
        return fn

    return wrap


def old_new_margins(logits: torch.Tensor, num_old: int) -> torch.Tensor:
    """Best new-class logit minus best old-class logit of each row: the decision an offset on the
    new classes moves (positive: routed to a new class)."""
    return logits[:, num_old:].amax(1) - logits[:, :num_old].amax(1)


def class_balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """``[n]`` weights summing to 1 with every class's images weighing the same in total.

    The held-out known images follow the long-tailed training distribution (a head class holds
    ~10x the images of a tail class) while the test set is balanced: unweighted, a rate or an
    accuracy on them would be a head-class rate.
    """
    labels = labels.long().flatten()
    if labels.numel() == 0:
        return torch.empty(0, dtype=torch.float64)
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse].double()
    return weights / weights.sum()


def offset_candidates(*margins: torch.Tensor, num: int = 512) -> torch.Tensor:
    """``num`` offsets spanning every decision the margins allow (quantiles of ``-margins``, plus
    one beyond each end: nothing new / everything new)."""
    values = torch.cat([m.detach().double().flatten() for m in margins])
    if values.numel() == 0:
        return torch.zeros(1, dtype=torch.float64)
    q = torch.quantile(-values, torch.linspace(0, 1, num - 2, dtype=torch.float64))
    return torch.cat([q[:1] - 1.0, q, q[-1:] + 1.0])


def _old_accuracy(data: CalibrationData, offsets: torch.Tensor) -> torch.Tensor:
    """Class-balanced accuracy of the held-out known images at each offset."""
    weights = class_balanced_weights(data.known_labels)
    kept = data.known_margins.double()[None, :] + offsets[:, None] <= 0
    return (kept & data.known_old_correct.bool()[None, :]).double() @ weights


def _routed_share(
    margins: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Share of ``margins`` routed to a new class at each offset (weighted when ``weights``)."""
    routed = (margins.double()[None, :] + offsets[:, None] > 0).double()
    return routed.mean(1) if weights is None else routed @ weights


def _known_new_rate(data: CalibrationData, offsets: torch.Tensor) -> torch.Tensor:
    """Class-balanced share of held-out known images routed to a new class at each offset."""
    return _routed_share(data.known_margins, offsets, class_balanced_weights(data.known_labels))


def known_share(
    known_margins: torch.Tensor,
    mixed_margins: torch.Tensor,
    known_weights: torch.Tensor | None = None,
    min_mass: float = 0.1,
) -> float:
    """The share ``pi`` of known images in an unlabeled mixture, from margins alone.

    Mixture-proportion estimation (Blanchard, Lee and Scott, JMLR 2010): with ``F_mix = pi * F_known
    + (1 - pi) * F_novel`` the distribution functions of the margins, ``pi <= F_mix(t) / F_known(t)``
    for every ``t``; the smallest ratio over thresholds where the known images hold at least
    ``min_mass`` of their mass (their known-like, low-margin end, where few novel images lie)
    estimates it. Exact when some low margins are reached by known images only.

    Args:
        known_margins: ``[n]`` margins of labelled known images (held out).
        mixed_margins: ``[d]`` margins of the unlabeled mixture.
        known_weights: ``[n]`` weights of the known images (default: equal), e.g.
            :func:`class_balanced_weights` when the mixture's known part is class-balanced.
        min_mass: smallest known mass below a threshold that is trusted (noise control).

    Returns:
        float: the estimate in ``[0, 1]`` (0 when either side is empty).
    """
    known = known_margins.double().flatten()
    mixed = mixed_margins.double().flatten().sort().values
    if known.numel() == 0 or mixed.numel() == 0:
        return 0.0
    weights = torch.ones_like(known) if known_weights is None else known_weights.double()
    order = known.argsort()
    known, f_known = known[order], torch.cumsum(weights[order], 0) / weights.sum()
    trusted = f_known >= min_mass
    f_mixed = torch.searchsorted(mixed, known[trusted], right=True).double() / mixed.numel()
    return float((f_mixed / f_known[trusted]).min().clamp(0.0, 1.0))


def mixture_known_share(data: CalibrationData) -> float | None:
    """:func:`known_share` of the discovery mixture in ``data``, the held-out known images weighted
    class-balanced (module docstring); None without discovery margins or held-out images."""
    mixed = data.discovery_margins
    if mixed is None or not mixed.numel() or not data.known_margins.numel():
        return None
    return known_share(data.known_margins, mixed, class_balanced_weights(data.known_labels))


def _novel_routing(data: CalibrationData, offsets: torch.Tensor) -> torch.Tensor:
    """Estimated share of novel images routed to a new class at each offset (module docstring)."""
    pi = mixture_known_share(data)
    if pi is not None and pi < 1.0:
        r_mixed = _routed_share(data.discovery_margins, offsets)
        r_known = _known_new_rate(data, offsets)
        return ((r_mixed - pi * r_known) / (1.0 - pi)).clamp(0.0, 1.0)
    if data.novel_margins.numel():
        return _routed_share(data.novel_margins, offsets)
    return torch.zeros_like(offsets)


def _estimates(data: CalibrationData, offsets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Estimated old accuracy, new accuracy and their HM at each offset (see :func:`hm_offset`)."""
    old = _old_accuracy(data, offsets)
    routed = _novel_routing(data, offsets)
    new = routed * float(data.novel_confidence)
    hm = torch.where(old + new > 0, 2 * old * new / (old + new).clamp_min(1e-12), 0.0)
    return old, new, hm


@register_calibration("known_false_novel_rate")
def rate_offset(data: CalibrationData, rate: float = 0.1) -> float:
    """The offset at which a class-balanced share ``rate`` of held-out known images is predicted
    as a new class (a bias correction in the spirit of BiC, fitted on known data)."""
    offsets = offset_candidates(data.known_margins)
    share = _known_new_rate(data, offsets)
    return float(offsets[int(torch.argmin((share - rate).abs()))])


def _all_candidates(data: CalibrationData) -> torch.Tensor:
    """Every decision the held-out, pooled and (when given) all discovery margins allow."""
    mixed = data.discovery_margins if data.discovery_margins is not None else torch.empty(0)
    return offset_candidates(data.known_margins, data.novel_margins, mixed)


def _best_closest_to_zero(offsets: torch.Tensor, score: torch.Tensor) -> float:
    """The offset of the highest ``score``; ties go to the offset closest to 0 (the trained head's
    own decision)."""
    best = torch.nonzero(score >= score.max() - 1e-12).flatten()
    return float(offsets[best[torch.argmin(offsets[best].abs())]])


@register_calibration("hm")
def hm_offset(data: CalibrationData) -> float:
    """The offset maximising the harmonic mean of the estimated old and new accuracy.

    Old accuracy at ``b``: class-balanced share of held-out known images that stay on an old class
    and are right there. New accuracy at ``b``: the estimated share of novel discovery images
    routed to a new class (mixture-corrected over all discovery images, module docstring; the
    pooled images' share without them) times ``novel_confidence`` (no label is available on that
    side). Ties go to the offset closest to 0 (the trained head's own decision).
    """
    offsets = _all_candidates(data)
    return _best_closest_to_zero(offsets, _estimates(data, offsets)[2])


@register_calibration("hm_within_old_budget")
def budget_offset(data: CalibrationData, max_old_drop: float = 0.08) -> float:
    """The offset maximising the estimated harmonic mean (as :func:`hm_offset`) among those that
    keep the held-out known images' old accuracy within ``max_old_drop`` of the base model's
    (``reference_old_acc``); when no offset keeps it, the one that loses the least.

    Why: at an 80 % known test prior the harmonic-mean optimum sends many uncertain known images
    to a new class, and all-class accuracy falls below the base model's. A researcher states the
    old-class accuracy they are willing to trade for discovery; it is measured on labeled held-out
    known images, so the constraint needs no test label.
    """
    offsets = _all_candidates(data)
    old, _, hm = _estimates(data, offsets)
    reference = data.reference_old_acc
    if reference is None:
        reference = float(old[0])  # the first candidate routes nothing new
    allowed = old >= reference - max_old_drop - 1e-12
    if not bool(allowed.any()):
        return float(offsets[int(torch.argmax(old))])
    return _best_closest_to_zero(offsets, torch.where(allowed, hm, torch.full_like(hm, -1.0)))


def estimate_at(data: CalibrationData, offset: float) -> dict[str, float]:
    """The label-free validation estimate at ``offset``: class-balanced old accuracy on the held-out
    known images, estimated new accuracy on the discovery images (see :func:`hm_offset`) and their
    harmonic mean. Settings are compared by this number, never by a test accuracy."""
    old, new, hm = (
        float(v[0]) for v in _estimates(data, torch.tensor([float(offset)], dtype=torch.float64))
    )
    return {"offset": float(offset), "old_acc": old, "new_acc": new, "hm": hm}


def calibrate_offset(data: CalibrationData, objective: str, **options: float) -> float:
    """The offset chosen by the registered ``objective`` (0.0 without held-out known images);
    each objective receives the ``options`` its signature names (``rate``, ``max_old_drop``...)."""
    if objective not in CALIBRATION_OBJECTIVES:
        raise ValueError(
            f"calibration_objective must be one of {sorted(CALIBRATION_OBJECTIVES)}, "
            f"got {objective!r}"
        )
    if data.known_margins.numel() == 0:
        return 0.0
    fn = CALIBRATION_OBJECTIVES[objective]
    names = inspect.signature(fn).parameters
    return fn(data, **{k: v for k, v in options.items() if k in names})


def _area(olds: np.ndarray, news: np.ndarray) -> float:
    """Area under the upper envelope of (old, new) points, closed at (0, max new) and (max old, 0)."""
    order = np.lexsort((-news, olds))
    xs, ys = olds[order], news[order]
    envelope = np.maximum.accumulate(ys[::-1])[::-1]  # best new accuracy at old >= x
    xs = np.concatenate([[0.0], xs, [xs[-1]]])
    ys = np.concatenate([[envelope[0]], envelope, [0.0]])
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


def tradeoff_curve(
    y: np.ndarray,
    logits: np.ndarray,
    num_known: int,
    mapping: dict[int, int],
    num: int = 101,
) -> dict[str, list[float] | float]:
    """Task-agnostic old and new accuracy of a test set as the new classes' offset sweeps.

    For each ``delta`` (added to every new column of ``logits``, from "nothing new" to "everything
    new"), the prediction is the argmax; a new id counts as right when ``mapping`` maps it to the
    true class. The area under new-vs-old accuracy (old on the x axis; the upper envelope of the
    points, closed at both axes, by trapezoids) summarises the trade-off independently of the
    chosen operating point: 1 for a perfect head, 0 for one whose new ids are never right.

    Args:
        y: ``[N]`` true labels (known classes are ``< num_known``).
        logits: ``[N, C]`` final logits, ``C > num_known``.
        num_known: number of known classes (columns before the new ones).
        mapping: discovered id -> true class.
        num: number of offsets.

    Returns:
        dict: ``offsets``, ``old_acc``, ``new_acc`` (lists) and ``auc``.
    """
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y)).long()
    margins = old_new_margins(logits, num_known)
    deltas = offset_candidates(margins, num=num)
    old_pred = logits[:, :num_known].argmax(1)
    new_ids = logits[:, num_known:].argmax(1) + num_known
    table = torch.full((logits.shape[1],), -1, dtype=torch.long)
    for cluster, cls in mapping.items():
        if 0 <= int(cluster) < table.numel():
            table[int(cluster)] = int(cls)
    new_pred = table[new_ids]
    known = y < num_known
    olds, news = [], []
    for d in deltas:
        route_new = margins + d > 0
        pred = torch.where(route_new, new_pred, old_pred)
        olds.append(float((pred[known] == y[known]).double().mean()) if known.any() else 0.0)
        news.append(float((pred[~known] == y[~known]).double().mean()) if (~known).any() else 0.0)
    auc = _area(np.asarray(olds), np.asarray(news))
    return {
        "offsets": [float(d) for d in deltas],
        "old_acc": olds,
        "new_acc": news,
        "auc": auc,
    }
