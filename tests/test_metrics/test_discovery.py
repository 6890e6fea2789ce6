"""Tests of discovery_summary: old/new/all accuracy under each convention, cluster quality and gate
metrics on hand-computed examples, the no-discovery floor, aggregation over discovery experiences,
and None (never NaN) when undefined.
"""

import json

import numpy as np
import pytest
import torch

from avalanche_ext.metrics.discovery import CONVENTIONS, discovery_summary, experience_summary
from avalanche_ext.ncd_state import MASKED_LOGIT

Y_ALL = [0, 0, 1, 1, 2, 2, 3, 3]  # classes 0, 1 known; 2, 3 novel
P_ALL = [0, 1, 1, 1, 5, 5, 4, 0]  # novel classes predicted under cluster ids 5, 4 (and old 0)
ENTRY = {
    "experience": 1,
    "true_labels": torch.tensor([0, 2, 2, 3, 1, 3]),
    "pool_indices": torch.tensor([1, 2, 3, 4]),
    "all_scores": torch.tensor([0.1, 0.9, 0.8, 0.3, 0.7, 0.2]),
    "threshold": 0.25,
    "pseudo_labels": torch.tensor([-1, 5, 5, 4, 4, -1]),
    "triggered": True,
    "reason": "4 pooled >= trigger_size 2",
}


def logits_of(predictions: list[int], width: int = 6) -> torch.Tensor:
    """Logits whose argmax is ``predictions``; sample 7 (predicted old 0) has new id 4 second."""
    logits = torch.zeros(len(predictions), width)
    logits[torch.arange(len(predictions)), torch.tensor(predictions)] = 10.0
    logits[7, 4] = 5.0
    return logits


def test_hand_computed_summary():
    out = discovery_summary(
        Y_ALL, P_ALL, [0, 1], [ENTRY], {"histogram_bins": 2}, logits_all=logits_of(P_ALL)
    )
    conventions = out["conventions"]
    # FRoST: mapping from the novel TRAINING samples' pseudo-labels: (5, 2), (5, 2), (4, 3)
    # -> 5->2, 4->3. Mapped test predictions [0, 1, 1, 1, 2, 2, 3, 0]: old 3/4 (the 0 predicted
    # as 1), new 3/4 (the 3 predicted as old 0 is wrong), all 6/8.
    assert out["convention"] == "frost_task_agnostic"
    frost = (out["old_acc"], out["new_acc"], out["all_acc"])
    assert frost == (0.75, 0.75, 0.75)
    assert conventions["frost_task_agnostic"] == dict(
        zip(("old_acc", "new_acc", "all_acc", "hm"), (*frost, 0.75))
    )
    assert out["hm"] == 0.75  # the headline: harmonic mean of old 3/4 and new 3/4
    # GCD v2: one matching over all test samples: 0->0 (1), 1->1 (2), 5->2 (2), 4->3 (1) = 6 of 8
    v2 = conventions["gcd_v2_all_hungarian"]
    assert (v2["old_acc"], v2["new_acc"], v2["all_acc"]) == (0.75, 0.75, 0.75)
    # new ids only: the novel samples' argmax over columns 2..5 is [5, 5, 4, 4] -> 1.0 after a
    # matching on the novel subset; old by plain accuracy 3/4; all (3 + 4) / 8
    ids = conventions["new_ids_only_hungarian"]
    assert (ids["old_acc"], ids["new_acc"], ids["all_acc"]) == (0.75, 1.0, 0.875)
    # FRoST task-aware: old images by the old columns (3/4), novel ones by the new columns with
    # the training mapping 5->2, 4->3: [5, 5, 4, 4] -> all right, sample 7 included (its new
    # logit 4 is second to old 0): routing cost it in the primary number, not here
    aware = conventions["frost_task_aware"]
    assert (aware["old_acc"], aware["new_acc"], aware["all_acc"]) == (0.75, 1.0, 0.875)
    assert aware["hm"] == pytest.approx(2 * 0.75 * 1.0 / 1.75)
    # chance per convention: task-agnostic picks among all 4 classes, task-aware among 2 and 2
    assert out["chance"] == out["chance_by_convention"]["frost_task_agnostic"]
    assert out["chance"]["new_acc"] == 0.25 and out["chance"]["old_acc"] == 0.25
    assert out["chance_by_convention"]["frost_task_aware"]["new_acc"] == 0.5
    # margins max new - max old: known -10 (x4); novel 10, 10, 10, -5: every pair ordered right
    assert out["routing_auroc"] == 1.0
    assert set(out["convention_texts"]) == set(CONVENTIONS)
    # 3 of the 4 novel test images got a new id; no known one did
    assert out["novel_predicted_new"] == 0.75 and out["known_predicted_new"] == 0.0
    assert out["mapped_ids"] == 2 and out["unmapped_predictions"] == 0.0
    assert out["triggered"] is True and out["reason"] == "4 pooled >= trigger_size 2"
    # task-agnostic chance: a random prediction among all 4 classes (was 1/2 for old and new,
    # the task-aware levels, although the primary convention chooses among every class)
    assert out["chance"] == {"old_acc": 0.25, "new_acc": 0.25, "all_acc": 0.25, "hm": 0.25}
    gate = out["gate"]
    # pooled {1, 2, 3, 4}; novel {1, 2, 3, 5}: precision 3/4, recall 3/4
    assert (gate["precision"], gate["recall"]) == (0.75, 0.75)
    # AUROC: novel scores {.9, .8, .3, .2} vs known {.1, .7}: 6 of 8 pairs ordered right
    assert gate["auroc"] == pytest.approx(0.75)
    assert gate["threshold"] == 0.25 and gate["num_pooled"] == 4 and gate["num_novel"] == 4
    # edges over [0.1, 0.9] in 2 bins; known {.1, .7}, novel {.9, .8, .3, .2}
    assert gate["histogram"] == {
        "bins": pytest.approx([0.1, 0.5, 0.9]),
        "known": [1, 1],
        "novel": [2, 2],
    }
    # no cluster_of_all: the pseudo-labels of the novel samples that have one: 1, 2, 3 with
    # pseudo 5, 5, 4 for true 2, 2, 3 -> all right, but the 4th novel sample got no cluster and
    # counts as wrong: 3 / 4 over ALL novel samples (1.0 over the assigned ones)
    assert out["cluster_acc"] == 0.75 and out["num_clustered"] == 3
    assert out["clusters"]["all_novel"]["coverage"] == 0.75
    assert out["clusters"]["all_novel"]["acc_assigned"] == 1.0
    assert out["per_experience"][0]["cluster_acc"] == 0.75
    assert out["per_experience"][0]["gate"]["precision"] == 0.75
    assert out["per_experience"][0]["triggered"] is True
    assert out["floor"] is None
    json.dumps(out, allow_nan=False)


def test_the_no_discovery_baseline_is_scored_under_every_convention_with_one_mapping():
    floor = [0, 1, 1, 1, 0, 1, 1, 0]  # the base model: old ids only
    out = discovery_summary(Y_ALL, P_ALL, [0, 1], [ENTRY], floor={"predictions": floor})
    assert out["floor"]["frost_task_agnostic"] == {
        "old_acc": 0.75,
        "new_acc": 0.0,
        "all_acc": 0.375,
        "hm": 0.0,  # a model that never predicts a new id
    }
    assert out["floor"]["new_ids_only_hungarian"]["new_acc"] == 0.0  # no logits: no new id
    # no logits, but only old ids predicted: the old-column argmax, no novel image right
    assert out["floor"]["frost_task_aware"] == {
        "old_acc": 0.75,
        "new_acc": 0.0,
        "all_acc": 0.375,
        "hm": 0.0,
    }
    assert set(out["floor"]) == set(CONVENTIONS)


def test_task_aware_scores_of_the_base_model_and_routing_need_grown_new_columns():
    floor = [0, 1, 1, 1, 0, 1, 1, 0]
    width2 = logits_of(floor, width=6)[:, :2]  # the base model: two (old) columns only
    out = discovery_summary(
        Y_ALL,
        P_ALL,
        [0, 1],
        [ENTRY],
        logits_all=width2,
        floor={"predictions": floor, "logits": width2},
    )
    assert out["floor"]["frost_task_aware"] == {
        "old_acc": 0.75,
        "new_acc": 0.0,
        "all_acc": 0.375,
        "hm": 0.0,
    }
    assert out["routing_auroc"] is None  # nothing grown: no new-vs-old margin to rank
    # padded columns (MASKED_LOGIT) are not grown classes either
    padded = torch.cat([width2, torch.full((8, 4), MASKED_LOGIT)], 1)
    out = discovery_summary(Y_ALL, P_ALL, [0, 1], [ENTRY], logits_all=padded)
    assert out["conventions"]["frost_task_aware"]["new_acc"] == 0.0
    assert out["routing_auroc"] is None


def test_cluster_of_all_is_preferred_over_the_pseudo_labels():
    entry = {**ENTRY, "cluster_of_all": torch.tensor([4, 5, 5, 4, 4, 5])}
    out = discovery_summary(Y_ALL, P_ALL, [0, 1], [entry])
    # novel samples 1, 2, 3, 5: (2, 5), (2, 5), (3, 4), (3, 5) -> 5->2, 4->3: 3 of 4
    assert out["cluster_acc"] == 0.75 and out["num_clustered"] == 4
    assert out["clusters"]["all_novel"]["coverage"] == 1.0
    # the pooled-only number is still reported beside it (pseudo-labels of pooled novel samples)
    assert out["clusters"]["pooled_novel"]["acc"] == 1.0
    assert out["clusters"]["pooled_novel"]["num_samples"] == 3


def test_aggregates_experiences_with_one_matching():
    second = {
        "experience": 2,
        "true_labels": np.array([3, 2, 0]),
        "pool_indices": [0, 1, 2],
        "all_scores": np.array([0.6, 0.6, 0.6]),
        "threshold": 0.5,
        "pseudo_labels": [5, 4, 4],  # swaps the ids of experience 1: cluster 5 is now class 3
    }
    out = discovery_summary(Y_ALL, P_ALL, [0, 1], [ENTRY, second])
    # clustered: (2,5), (2,5), (3,4) from exp 1 and (3,5), (2,4) from exp 2: best one-to-one
    # matching 5->2, 4->3 gets 3 of the 5 clustered right; 6 novel samples in all (one of exp 1
    # got no cluster and counts as wrong): 3 / 6
    assert out["cluster_acc"] == pytest.approx(3 / 6) and out["num_clustered"] == 5
    assert out["clusters"]["all_novel"]["acc_assigned"] == pytest.approx(3 / 5)
    assert [e["cluster_acc"] for e in out["per_experience"]] == [0.75, 1.0]
    assert out["gate"]["threshold"] == 0.5  # the last discovery experience's
    assert out["gate"]["num_pooled"] == 7 and out["gate"]["precision"] == pytest.approx(5 / 7)


def test_undefined_values_are_none_never_nan():
    out = discovery_summary([0, 1], [0, 1], [0, 1], [], None)
    assert out["new_acc"] is None and out["old_acc"] == 1.0
    assert out["cluster_acc"] is None and out["gate"]["precision"] is None
    assert out["gate"]["histogram"] is None and out["per_experience"] == []
    assert out["triggered"] is None and "no discovery experience" in out["reason"]
    assert out["novel_predicted_new"] is None
    partial = {
        "experience": 1,
        "true_labels": [2, 3],
        "pool_indices": [],
        "all_scores": [float("nan"), 0.5],
        "threshold": float("nan"),
    }
    out = discovery_summary([2], [2], [0, 1], [partial])
    gate = out["gate"]
    assert gate["precision"] is None and gate["recall"] == 0.0 and gate["auroc"] is None
    assert gate["threshold"] is None and gate["histogram"] is None and out["cluster_acc"] is None
    json.dumps(out, allow_nan=False)
    single = experience_summary({"true_labels": [0, 2]}, 2)
    assert single["num_novel"] == 1 and single["gate"]["precision"] is None


def test_the_updated_heads_own_ids_give_the_transductive_accuracy_and_the_mapping():
    # the head after the update relabels the training samples: novel samples 1, 2 (class 2) get
    # id 4, samples 3, 5 (class 3) id 5: the opposite of the k-means ids 5 / 4
    entry = dict(ENTRY, head_of_all=torch.tensor([0, 4, 4, 5, 1, 5]), k_source="given")
    entry["num_discovered"] = 2
    p = [0, 1, 1, 1, 4, 4, 5, 0]  # the test predictions use the head's ids
    out = discovery_summary(Y_ALL, p, [0, 1], [entry])
    assert out["transductive_acc"] == 1.0  # the head's ids match the classes exactly
    assert out["cluster_acc"] == pytest.approx(0.75)  # k-means: sample 5 (class 3) was missed
    # the mapping comes from the head's ids (4 -> 2, 5 -> 3): new accuracy 3 of 4, not 0
    assert out["new_acc"] == 0.75 and out["hm"] == 0.75
    assert out["k_source"] == "given" and out["num_discovered"] == 2
    # without the head's ids the k-means mapping (5 -> 2, 4 -> 3) scores these predictions 0
    plain = discovery_summary(Y_ALL, p, [0, 1], [ENTRY])
    assert plain["new_acc"] == 0.0 and plain["transductive_acc"] is None


def test_summary_sweeps_the_operating_point_on_the_test_logits():
    out = discovery_summary(Y_ALL, P_ALL, [0, 1], [ENTRY], logits_all=logits_of(P_ALL))
    curve = out["tradeoff"]
    assert len(curve["old_acc"]) == len(curve["new_acc"]) == len(curve["offsets"])
    # nothing routed new: old 3/4 (the 0 predicted 1), new 0; the chosen point lies on the curve
    assert (curve["old_acc"][0], curve["new_acc"][0]) == (0.75, 0.0)
    assert any(
        o == out["old_acc"] and n == out["new_acc"]
        for o, n in zip(curve["old_acc"], curve["new_acc"])
    )
    assert 0.0 < curve["auc"] <= 1.0
    # no new column: no curve
    assert discovery_summary(Y_ALL, [0, 1, 1, 1, 0, 1, 1, 0], [0, 1], [ENTRY])["tradeoff"] is None


def test_discovery_headline_replaces_the_raw_id_accuracy():
    from avalanche_ext.metrics.discovery import discovery_headline

    summary = discovery_summary(Y_ALL, P_ALL, [0, 1], [ENTRY])
    final = discovery_headline({"stream_accuracy": 0.375, "stream_forgetting": None}, summary)
    assert final["stream_accuracy"] == summary["all_acc"] == 0.75
    assert final["stream_accuracy_raw_ids"] == 0.375 and final["hm"] == summary["hm"]
