"""The ``results.json["discovery"]`` block: old/new/all accuracy under stated conventions, cluster
quality beside its chance level, gate quality, and the no-discovery floor.

Evaluation only: true labels come from the scenario's hidden labels, given by the runner.

Conventions (``CONVENTIONS``):

* ``frost_task_agnostic`` (primary; FRoST, Roy et al. ECCV 2022): each discovered class id is
  mapped to a true novel class ONCE, by a Hungarian matching of the ids given to the novel
  TRAINING samples of the discovery experience against their true classes (the joint head's own
  ids after the update when the update recorded them, else the clustering's). The joint head is then
  scored on the test set of all classes with no matching at test time: an old image must get its
  own id, a novel image must get the id mapped to its class; a novel image predicted as an old
  class (or an unmapped id) is wrong.
* ``gcd_v2_all_hungarian`` (GCD, Vaze et al. CVPR 2022, "v2"): one Hungarian matching of predicted
  ids to true classes over all test samples together; old/new/all read off that mapping.
* ``new_ids_only_hungarian``: old images by plain accuracy; novel images predicted among the NEW
  ids only (argmax of the new logits: a model that never predicts a new id gains nothing from the
  old ones) and matched by a Hungarian matching on the novel subset (UNO's task-aware evaluation).
* ``frost_task_aware`` (FRoST's task-aware numbers): each test image is told whether it is old or
  novel: an old image is scored by the argmax over the OLD logits, a novel one by the argmax over
  the NEW logits mapped by the same training matching as the primary convention. It is the
  all-class accuracy a perfect old-vs-new router would give with this head, so the gap to the
  primary number is what routing costs (``routing_auroc`` beside it: ROC AUC of the test margin
  ``max new logit - max old logit``, novel images positive).

Every convention also reports ``hm``, the harmonic mean of its old and new accuracy (FRoST reports
it beside all-class accuracy; it is 0 for a model that never predicts a new class, however high its
all-class accuracy). Chance levels are per convention: a task-agnostic prediction chooses among all
classes (1 / C for old and new alike), a task-aware one among the old (1 / C_old) or the new
(1 / C_new) ones. ``tradeoff`` sweeps the old-vs-new offset over the test logits (old and new
accuracy at each offset, and the area under that curve): it shows the whole trade-off, while the
operating point itself was chosen without test labels (``avalanche_ext.operating_point``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score

from avalanche_ext.clustering import k_range_edge
from avalanche_ext.losses.discovery import harmonic_mean
from avalanche_ext.metrics.clustering import cluster_accuracy, hungarian_match, old_new_all_accuracy
from avalanche_ext.metrics.gate import gate_metrics, score_histogram
from avalanche_ext.ncd_state import MASKED_LOGIT
from avalanche_ext.operating_point import tradeoff_curve

__all__ = [
    "CLUSTER_ACC_CONVENTION",
    "CONVENTIONS",
    "PRIMARY",
    "cluster_quality",
    "cluster_to_class_mapping",
    "discovery_headline",
    "discovery_summary",
    "experience_summary",
    "frost_task_agnostic",
    "frost_task_aware",
    "map_predictions",
    "new_ids_only_hungarian",
    "permutation_chance",
    "routing_auroc",
    "chance_levels",
]

PRIMARY = "frost_task_agnostic"
CONVENTIONS = {
    "frost_task_agnostic": (
        "FRoST (Roy et al., ECCV 2022) task-agnostic: discovered ids mapped to novel classes once, "
        "by a Hungarian matching on the novel TRAINING samples' ids (the updated head's own, else "
        "the clusters'); the joint head scored on "
        "all test classes with no matching at test time (novel predicted as old = wrong)"
    ),
    "gcd_v2_all_hungarian": (
        "GCD (Vaze et al., CVPR 2022) v2: one Hungarian matching of predicted ids to true classes "
        "over all test samples, old and new together"
    ),
    "new_ids_only_hungarian": (
        "old: plain accuracy; novel: argmax over the NEW ids only, Hungarian-matched on the novel "
        "subset (task-aware, UNO-style)"
    ),
    "frost_task_aware": (
        "FRoST task-aware: old images by the argmax over the old logits, novel images by the "
        "argmax over the new logits mapped by the training matching (a perfect old-vs-new router)"
    ),
}
TRANSDUCTIVE_CONVENTION = (
    "Hungarian accuracy of the joint head's own class (argmax over the new rows) of every truly "
    "novel discovery image after the update, the transductive clustering accuracy NCD papers "
    "report; beside it, cluster_acc is the k-means assignment the update started from"
)
CLUSTER_ACC_CONVENTION = (
    "Hungarian accuracy of the k-means cluster assignment (before the update) of ALL truly novel samples of the discovery "
    "experiences (each sample's novel cluster, pooled or not), one matching over all "
    "experiences; a novel sample the clustering gave to a known class (semi-supervised k-means) "
    "or to no cluster counts as wrong (acc_assigned: the accuracy over the assigned ones alone); "
    "permutation chance = the same accuracy of the assignment randomly permuted (same cluster "
    "sizes), mean of 20 draws; NMI / ARI with the unassigned samples as one more cluster"
)


def _array(values: Any, dtype: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).ravel()


def _clean(value: Any) -> Any:
    """NaN / inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def _known_set(known_classes: int | Iterable[int]) -> np.ndarray:
    if isinstance(known_classes, (int, np.integer)):
        return np.arange(int(known_classes))
    return _array(list(known_classes), np.int64)


# ---------------------------------------------------------------------------- pure pieces
def cluster_to_class_mapping(
    cluster_ids: Any, true_labels: Any, known_classes: int | Iterable[int]
) -> dict[int, int]:
    """Discovered id -> true novel class, by a Hungarian matching on novel training samples.

    Args:
        cluster_ids: ``[N]`` discovered class id of each training sample (``-1``: none).
        true_labels: ``[N]`` their true classes.
        known_classes: the known class ids (int ``K``: ``0..K-1``).

    Returns:
        dict: discovered id -> true class, for the ids the matching pairs.
    """
    c = _array(cluster_ids, np.int64)
    y = _array(true_labels, np.int64)
    chosen = (c >= 0) & ~np.isin(y, _known_set(known_classes))
    if not chosen.any():
        return {}
    # hungarian_match(y_true, y_pred) -> {pred id: true id}
    return {int(k): int(v) for k, v in hungarian_match(y[chosen], c[chosen]).items()}


def map_predictions(
    predictions: Any, mapping: Mapping[int, int], known_classes: int | Iterable[int]
) -> np.ndarray:
    """Old ids kept, discovered ids replaced by their mapped class, other ids -> ``-1`` (wrong)."""
    p = _array(predictions, np.int64)
    known = _known_set(known_classes)
    out = np.where(np.isin(p, known), p, -1)
    for src, dst in mapping.items():
        out[p == src] = dst
    return out


def frost_task_agnostic(
    y_true: Any, predictions: Any, known_classes: int | Iterable[int], mapping: Mapping[int, int]
) -> dict[str, Any]:
    """Old/new/all accuracy of mapped joint-head predictions (see :data:`CONVENTIONS`)."""
    y = _array(y_true, np.int64)
    known = _known_set(known_classes)
    correct = map_predictions(predictions, mapping, known) == y
    old = np.isin(y, known)
    return {
        "old_acc": float(correct[old].mean()) if old.any() else None,
        "new_acc": float(correct[~old].mean()) if (~old).any() else None,
        "all_acc": float(correct.mean()) if y.size else None,
    }


def new_ids_only_hungarian(
    y_true: Any, predictions: Any, logits: Any, known_classes: int | Iterable[int], num_known: int
) -> dict[str, Any]:
    """Old images by plain accuracy; novel images by the argmax over new ids only, matched within
    the novel subset. With no new id in ``logits`` the novel accuracy is 0 (nothing discovered)."""
    y = _array(y_true, np.int64)
    p = _array(predictions, np.int64)
    known = _known_set(known_classes)
    old = np.isin(y, known)
    old_correct = int((p[old] == y[old]).sum())
    new_correct = 0
    # Columns of classes the model has not grown (padded with MASKED_LOGIT) are not new ids.
    columns = _new_columns(logits, num_known)
    if columns is not None and (~old).any():
        new_logits = torch.as_tensor(logits)[torch.from_numpy(~old)][:, columns]
        choice = new_logits.argmax(1).numpy()
        acc = cluster_accuracy(y[~old], choice)
        new_correct = round(acc * int((~old).sum()))
    n_old, n_new = int(old.sum()), int((~old).sum())
    return {
        "old_acc": old_correct / n_old if n_old else None,
        "new_acc": new_correct / n_new if n_new else None,
        "all_acc": (old_correct + new_correct) / y.size if y.size else None,
    }


def _new_columns(logits: Any, num_known: int) -> torch.Tensor | None:
    """The grown (real) new-class columns of ``logits`` (padded MASKED_LOGIT columns dropped)."""
    if logits is None:
        return None
    t = torch.as_tensor(logits).float()
    if t.ndim != 2 or t.shape[1] <= num_known or t.shape[0] == 0:
        return None
    real = t[:, num_known:].amax(0) > MASKED_LOGIT / 2
    return torch.nonzero(real).flatten() + num_known if bool(real.any()) else None


def frost_task_aware(
    y_true: Any,
    logits: Any,
    known_classes: int | Iterable[int],
    num_known: int,
    mapping: Mapping[int, int],
    predictions: Any = None,
) -> dict[str, Any]:
    """Old/new/all accuracy when each image is told its side (see :data:`CONVENTIONS`).

    Args:
        y_true: ``[N]`` true labels.
        logits: ``[N, C]`` joint-head logits.
        known_classes: the known class ids.
        num_known: old logit columns (``0..num_known-1``).
        mapping: discovered id -> true class (from :func:`cluster_to_class_mapping`).
        predictions: ``[N]`` argmax predictions, used only without ``logits``: when every one is
            an old id (a model without new rows, e.g. the floor) they are the old-column argmax
            and no novel image can be right. Otherwise, without logits, all None.
    """
    y = _array(y_true, np.int64)
    known = _known_set(known_classes)
    columns = None
    if logits is not None:
        t = torch.as_tensor(logits).float()
        old_choice = t[:, :num_known].argmax(1).numpy()
        columns = _new_columns(t, num_known)
    elif predictions is not None and np.isin(_array(predictions, np.int64), known).all():
        old_choice = _array(predictions, np.int64)  # no new row: the argmax is over old columns
    else:
        old_choice = None
    if old_choice is None or y.size == 0:
        return {"old_acc": None, "new_acc": None, "all_acc": None}
    old = np.isin(y, known)
    correct = np.zeros(y.size, dtype=bool)
    correct[old] = old_choice[old] == y[old]
    if columns is not None and (~old).any():
        choice = columns[t[:, columns].argmax(1)].numpy()
        mapped = np.array([mapping.get(int(c), -1) for c in choice])
        correct[~old] = mapped[~old] == y[~old]
    return {
        "old_acc": float(correct[old].mean()) if old.any() else None,
        "new_acc": float(correct[~old].mean()) if (~old).any() else None,
        "all_acc": float(correct.mean()),
    }


def routing_auroc(y_true: Any, logits: Any, known_classes: int | Iterable[int], num_known: int):
    """ROC AUC of ``max new logit - max old logit`` for novel (positive) vs known test images;
    None without a grown new column or without both kinds of image."""
    y = _array(y_true, np.int64)
    columns = _new_columns(logits, num_known)
    novel = ~np.isin(y, _known_set(known_classes))
    if columns is None or novel.all() or not novel.any():
        return None
    t = torch.as_tensor(logits).float()
    margin = t[:, columns].amax(1) - t[:, :num_known].amax(1)
    return float(roc_auc_score(novel, margin.numpy()))


def permutation_chance(y_true: Any, assigned: Any, draws: int = 20, seed: int = 0) -> float | None:
    """Mean Hungarian accuracy of ``assigned`` randomly permuted over the samples (cluster sizes
    kept): what an assignment unrelated to the classes scores at this sample size."""
    y = _array(y_true, np.int64)
    a = _array(assigned, np.int64)
    if y.size == 0:
        return None
    rng = np.random.default_rng(seed)
    return float(np.mean([cluster_accuracy(y, rng.permutation(a)) for _ in range(draws)]))


def cluster_quality(y_true: Any, assigned: Any) -> dict[str, Any]:
    """Hungarian accuracy, NMI, ARI and permutation chance of a cluster assignment."""
    y = _array(y_true, np.int64)
    a = _array(assigned, np.int64)
    if y.size == 0:
        return {"acc": None, "nmi": None, "ari": None, "chance": None, "num_samples": 0}
    return {
        "acc": cluster_accuracy(y, a),
        "nmi": float(normalized_mutual_info_score(y, a)),
        "ari": float(adjusted_rand_score(y, a)),
        "chance": permutation_chance(y, a),
        "num_samples": int(y.size),
    }


def all_novel_quality(y_novel: Any, assigned: Any) -> dict[str, Any]:
    """Cluster quality over ALL novel samples, where ``assigned < 0`` means the sample got no novel
    cluster (semi-supervised k-means gave it to a known class): it counts as wrong, a discovery miss
    rather than a sample to leave out.

    Args:
        y_novel: ``[N]`` true classes of every novel sample.
        assigned: ``[N]`` their novel cluster ids, ``-1`` where none.

    Returns:
        dict: ``acc`` (Hungarian-correct / N), ``acc_assigned`` (correct / assigned), ``chance``
        (permutation chance on the same footing), ``nmi`` / ``ari`` (the unassigned samples as one
        more cluster), ``coverage`` (assigned / N), ``num_samples`` (N), ``num_assigned``.
    """
    y = _array(y_novel, np.int64)
    a = _array(assigned, np.int64)
    if y.size == 0:
        return {
            **cluster_quality([], []),
            "coverage": None,
            "acc_assigned": None,
            "num_assigned": 0,
        }
    ok = a >= 0
    coverage = float(ok.mean())
    # accuracy and chance of the assigned ones (the unassigned cannot be matched to a class);
    # NMI / ARI over every sample, -1 being one more cluster
    acc = cluster_accuracy(y[ok], a[ok]) if ok.any() else None
    chance = permutation_chance(y[ok], a[ok])
    return {
        "acc": None if acc is None else acc * coverage,
        "acc_assigned": acc,
        "nmi": float(normalized_mutual_info_score(y, a)),
        "ari": float(adjusted_rand_score(y, a)),
        "chance": None if chance is None else chance * coverage,
        "num_samples": int(y.size),
        "num_assigned": int(ok.sum()),
        "coverage": coverage,
    }


# ---------------------------------------------------------------------------- per experience
def _pieces(entry: Mapping[str, Any], known: np.ndarray) -> dict[str, Any]:
    """Per-sample arrays of one discovery experience (those its log entry allows)."""
    true = _array(entry["true_labels"], np.int64)
    out: dict[str, Any] = {"true": true, "is_novel": ~np.isin(true, known)}
    if entry.get("pool_indices") is not None:
        pooled = np.zeros(true.size, dtype=bool)
        pooled[_array(entry["pool_indices"], np.int64)] = True
        out["pooled"] = pooled
    scores = entry.get("all_scores")
    if scores is not None:
        scores = _array(scores, np.float64)
        out["scores"] = scores if scores.size == true.size and np.isfinite(scores).all() else None
    for key in ("pseudo_labels", "cluster_of_all", "head_of_all"):
        values = entry.get(key)
        if values is not None:
            values = _array(values, np.int64)
            out[key] = values if values.size == true.size else None
    threshold = entry.get("threshold")
    out["threshold"] = None if threshold is None else float(threshold)
    return out


def _assignment(p: Mapping[str, Any], head: bool = False) -> np.ndarray | None:
    """Each sample's discovered id: with ``head``, the updated joint head's own id when recorded;
    else the nearest-cluster assignment of all samples, else the pseudo-labels of the pooled ones."""
    if head and p.get("head_of_all") is not None:
        return p["head_of_all"]
    if p.get("cluster_of_all") is not None:
        return p["cluster_of_all"]
    return p.get("pseudo_labels")


def _k_range(last: Mapping[str, Any]) -> dict[str, Any]:
    """``k_range`` searched by an estimated k and whether the estimate sits on a censoring end."""
    searched = last.get("k_range")
    if searched is None or last.get("num_discovered") is None:
        return {"k_range": None, "k_range_edge": None}
    low, high = (int(v) for v in searched)
    return {
        "k_range": [low, high],
        "k_range_edge": k_range_edge(int(last["num_discovered"]), low, high),
    }


def _gate(pieces: Sequence[dict[str, Any]], bins: int) -> dict[str, Any]:
    with_pool = [p for p in pieces if p.get("pooled") is not None]
    empty = {"precision": None, "recall": None, "auroc": None, "num_pooled": None}
    if not with_pool:
        return {**empty, "num_novel": None, "threshold": None, "histogram": None}
    pooled = np.concatenate([p["pooled"] for p in with_pool])
    novel = np.concatenate([p["is_novel"] for p in with_pool])
    have_scores = all(p.get("scores") is not None for p in with_pool)
    scores = np.concatenate([p["scores"] for p in with_pool]) if have_scores else None
    metrics = gate_metrics(pooled, novel, scores if have_scores else np.zeros(pooled.size))
    if not have_scores:
        metrics["auroc"] = None
    metrics["auroc_chance"] = 0.5
    metrics["novel_fraction"] = float(novel.mean()) if novel.size else None
    metrics["threshold"] = with_pool[-1]["threshold"]
    metrics["histogram"] = score_histogram(scores, novel, bins=bins) if have_scores else None
    return metrics


def _clusters(pieces: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Cluster quality over all novel samples and over the pooled novel ones."""
    true_all, pred_all, true_pool, pred_pool, true_head, pred_head = [], [], [], [], [], []
    for p in pieces:
        if p.get("head_of_all") is not None:
            true_head.append(p["true"][p["is_novel"]])
            pred_head.append(p["head_of_all"][p["is_novel"]])
        assigned = _assignment(p)
        if assigned is not None:
            chosen = p["is_novel"]
            true_all.append(p["true"][chosen])
            pred_all.append(assigned[chosen])
        pseudo = p.get("pseudo_labels")
        if pseudo is not None:
            chosen = p["is_novel"] & (pseudo >= 0)
            if p.get("pooled") is not None:
                chosen &= p["pooled"]
            true_pool.append(p["true"][chosen])
            pred_pool.append(pseudo[chosen])
    cat = np.concatenate
    whole = (
        all_novel_quality(cat(true_all), cat(pred_all)) if true_all else all_novel_quality([], [])
    )
    pool = cluster_quality(cat(true_pool), cat(pred_pool)) if true_pool else cluster_quality([], [])
    head = all_novel_quality(cat(true_head), cat(pred_head)) if true_head else None
    return {"all_novel": whole, "pooled_novel": pool, "head_all_novel": head}


def experience_summary(
    entry: Mapping[str, Any], known_classes: int | Iterable[int], bins: int = 20
) -> dict[str, Any]:
    """Gate and cluster metrics of one discovery experience, with its trigger decision."""
    pieces = _pieces(entry, _known_set(known_classes))
    clusters = _clusters([pieces])
    gate = _gate([pieces], bins)
    return _clean(
        {
            "experience": int(entry.get("experience", -1)),
            "triggered": entry.get("triggered"),
            "reason": entry.get("reason"),
            "num_samples": int(pieces["true"].size),
            "num_novel": int(pieces["is_novel"].sum()),
            "num_pooled": gate["num_pooled"],
            "topped_up": entry.get("topped_up"),
            "num_discovered": entry.get("num_discovered"),
            "cluster_acc": clusters["all_novel"]["acc"],
            "clusters": clusters,
            "gate": {k: v for k, v in gate.items() if k != "histogram"},
        }
    )


def training_mapping(
    discovery_log: Sequence[Mapping[str, Any]], known_classes: int | Iterable[int]
) -> dict[int, int]:
    """The FRoST mapping over all discovery experiences logged so far."""
    known = _known_set(known_classes)
    mapping: dict[int, int] = {}
    for entry in discovery_log:
        if entry.get("true_labels") is None:
            continue
        p = _pieces(entry, known)
        assigned = _assignment(p, head=True)
        if assigned is not None:
            mapping.update(cluster_to_class_mapping(assigned, p["true"], known))
    return mapping


def _with_hm(block: dict[str, Any]) -> dict[str, Any]:
    """The block with ``hm``: harmonic mean of its old and new accuracy."""
    return {**block, "hm": harmonic_mean(block.get("old_acc"), block.get("new_acc"))}


def _conventions(
    y: np.ndarray, p: np.ndarray, logits: Any, known: np.ndarray, mapping: Mapping[int, int]
) -> dict[str, dict[str, Any]]:
    num_known = int(known.max()) + 1 if known.size else 0
    v2 = old_new_all_accuracy(y, p, known, convention="all")
    novel = ~np.isin(y, known)
    mapped = map_predictions(p, mapping, known)
    blocks = {
        "frost_task_agnostic": frost_task_agnostic(y, p, known, mapping),
        "gcd_v2_all_hungarian": {k: v2[k] for k in ("old_acc", "new_acc", "all_acc")},
        "new_ids_only_hungarian": new_ids_only_hungarian(y, p, logits, known, num_known),
        "frost_task_aware": frost_task_aware(y, logits, known, num_known, mapping, p),
    }
    return {
        **{name: _with_hm(block) for name, block in blocks.items()},
        "_rates": {
            "routing_auroc": routing_auroc(y, logits, known, num_known),
            "novel_predicted_new": float((~np.isin(p[novel], known)).mean())
            if novel.any()
            else None,
            "known_predicted_new": float((~np.isin(p[~novel], known)).mean())
            if (~novel).any()
            else None,
            "mapped_ids": len(mapping),
            "unmapped_predictions": float((mapped == -1).mean()) if y.size else None,
        },
    }


def chance_levels(num_known: int, num_novel: int) -> dict[str, dict[str, float | None]]:
    """Accuracy of a uniformly random prediction under each convention: task-agnostic conventions
    choose among all ``C = num_known + num_novel`` classes, task-aware ones among the old or the new
    classes only (all-class chance is the test-prior-weighted mean; here classes are balanced)."""

    def inv(n: int) -> float | None:
        return 1.0 / n if n else None

    total = num_known + num_novel
    agnostic = {"old_acc": inv(total), "new_acc": inv(total), "all_acc": inv(total)}
    aware_all = (num_known * (inv(num_known) or 0) + num_novel * (inv(num_novel) or 0)) / total
    aware = {
        "old_acc": inv(num_known),
        "new_acc": inv(num_novel),
        "all_acc": aware_all if total else None,
    }
    blocks = {
        "frost_task_agnostic": agnostic,
        "gcd_v2_all_hungarian": agnostic,
        "new_ids_only_hungarian": aware,
        "frost_task_aware": aware,
    }
    return {name: _with_hm(block) for name, block in blocks.items()}


def _tradeoff(y: np.ndarray, logits: Any, known: np.ndarray, mapping: Mapping[int, int]):
    """The old/new trade-off curve of the test logits (None without grown new columns)."""
    num_known = int(known.max()) + 1 if known.size else 0
    columns = _new_columns(logits, num_known)
    if columns is None or y.size == 0:
        return None
    t = torch.as_tensor(logits).float()
    real = torch.cat([torch.arange(num_known), columns])
    remap = {int(c): j for j, c in enumerate(real.tolist())}
    local = {remap[int(k)]: v for k, v in mapping.items() if int(k) in remap}
    return tradeoff_curve(y, t[:, real].numpy(), num_known, local)


def discovery_headline(final: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """``results["final"]`` of a discovery run: discovered ids mean nothing by raw id equality, so
    the headline accuracy is the primary convention's all-class accuracy (mapped ids), with old,
    new and their harmonic mean beside it; the raw-id accuracy Avalanche computed is kept under
    ``stream_accuracy_raw_ids``."""
    return {
        **final,
        "stream_accuracy": summary.get("all_acc"),
        "stream_accuracy_raw_ids": final.get("stream_accuracy"),
        "old_acc": summary.get("old_acc"),
        "new_acc": summary.get("new_acc"),
        "hm": summary.get("hm"),
        "convention": summary.get("convention"),
    }


def discovery_summary(
    y_all: Any,
    p_all: Any,
    known_classes: int | Iterable[int],
    discovery_log: Sequence[Mapping[str, Any]] | None = None,
    options: Mapping[str, Any] | None = None,
    logits_all: Any = None,
    floor: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Novel-class-discovery results (see the module docstring for the conventions).

    Args:
        y_all: ``[N]`` true labels of the all-class test set.
        p_all: ``[N]`` final joint-head predictions.
        known_classes: the known (labeled) class ids.
        discovery_log: one dict per discovery experience with ``true_labels`` (required to score
            it) and any of ``experience``, ``pool_indices``, ``all_scores``, ``threshold``,
            ``pseudo_labels``, ``cluster_of_all``, ``triggered``, ``reason``, ``topped_up``,
            ``num_discovered``.
        options: ``cfg.discovery``: ``histogram_bins`` (20).
        logits_all: ``[N, C]`` final logits of the test set (for ``new_ids_only_hungarian``).
        floor: ``{"predictions", "logits"}`` of the model before the first discovery update (the
            no-discovery floor, scored under every convention with the same mapping).

    Returns:
        dict: ``old_acc``, ``new_acc``, ``all_acc``, ``hm`` (primary convention),
        ``convention``, ``cluster_acc`` (k-means of all novel discovery samples, before the update)
        with ``cluster_chance``, ``cluster_nmi``, ``cluster_ari``, ``transductive_acc`` (the
        updated head on the same samples) with ``transductive_chance``, ``num_discovered`` and
        ``k_source`` (given or estimated) with ``k_range`` (the range an estimate searched) and
        ``k_range_edge`` (``'lower'`` / ``'upper'`` when that range censored the estimate),
        ``triggered`` and ``reason`` (of the last discovery experience), ``conventions`` (every
        convention's old/new/all/hm), ``floor`` (same, base model), ``novel_predicted_new``
        (share of novel test images given a new id),
        ``routing_auroc`` (old-vs-new separation of the final head on the test set), ``chance``
        (primary convention) and ``chance_by_convention``, ``tradeoff`` (old/new accuracy as the
        offset sweeps, with its area), ``clusters``, ``gate`` and ``per_experience``. Undefined
        values are None, never NaN.
    """
    options = dict(options or {})
    bins = int(options.get("histogram_bins", 20))
    known = _known_set(known_classes)
    y, p = _array(y_all, np.int64), _array(p_all, np.int64)
    entries = [e for e in (discovery_log or []) if e.get("true_labels") is not None]
    pieces = [_pieces(e, known) for e in entries]
    mapping = training_mapping(entries, known)
    conventions = _conventions(y, p, logits_all, known, mapping)
    rates = conventions.pop("_rates")
    floor_block = None
    if floor is not None and floor.get("predictions") is not None:
        fp = _array(floor["predictions"], np.int64)
        floor_block = _conventions(y, fp, floor.get("logits"), known, mapping)
        floor_block.pop("_rates")
    clusters = _clusters(pieces)
    last = entries[-1] if entries else {}
    primary = conventions[PRIMARY]
    chance = chance_levels(int(known.size), int(np.unique(y[~np.isin(y, known)]).size))
    head = clusters.get("head_all_novel") or {}
    return _clean(
        {
            **primary,
            "convention": PRIMARY,
            "convention_text": CONVENTIONS[PRIMARY],
            "cluster_acc": clusters["all_novel"]["acc"],
            "cluster_chance": clusters["all_novel"]["chance"],
            "cluster_nmi": clusters["all_novel"]["nmi"],
            "cluster_ari": clusters["all_novel"]["ari"],
            "cluster_acc_convention": CLUSTER_ACC_CONVENTION,
            "num_clustered": clusters["all_novel"]["num_assigned"],
            "transductive_acc": head.get("acc"),
            "transductive_chance": head.get("chance"),
            "transductive_convention": TRANSDUCTIVE_CONVENTION,
            "num_discovered": last.get("num_discovered"),
            "k_source": last.get("k_source"),
            **_k_range(last),
            "new_bias_offset": last.get("new_bias_offset"),
            "operating_point": last.get("operating_point"),
            "triggered": last.get("triggered") if entries else None,
            "reason": last.get("reason") if entries else "no discovery experience was scored",
            "conventions": conventions,
            "convention_texts": CONVENTIONS,
            "floor": floor_block,
            **rates,
            "chance": chance[PRIMARY],
            "chance_by_convention": chance,
            "tradeoff": _tradeoff(y, logits_all, known, mapping),
            "clusters": clusters,
            "gate": _gate(pieces, bins),
            "per_experience": [experience_summary(e, known, bins) for e in entries],
        }
    )
