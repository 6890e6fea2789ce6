"""Each test reproduces a measurement defect named in issue 8 and shows that it is fixed: numbers that
made "nothing discovered" look like a result.
"""

import numpy as np
import pytest
import torch

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.metrics.clustering import cluster_accuracy
from avalanche_ext.metrics.discovery import (
    cluster_quality,
    cluster_to_class_mapping,
    discovery_summary,
    frost_task_agnostic,
    map_predictions,
    new_ids_only_hungarian,
    permutation_chance,
)
from avalanche_ext.ncd_state import MASKED_LOGIT
from avalanche_ext.run_results import without_foreign_forgetting

KNOWN = 4  # classes 0..3 known, 4..7 novel


def base_model_outputs():
    """10 test images per class. The base model is right on old classes and sends every novel
    class to one old id (class 4 -> 0, 5 -> 1, ...) for 6 of its 10 images, the others to old 3;
    its logits have 4 real columns, padded with MASKED_LOGIT to the 8 classes."""
    y = np.repeat(np.arange(8), 10)
    p = y.copy()
    for c in range(4, 8):
        idx = np.nonzero(y == c)[0]
        p[idx[:6]] = c - 4
        p[idx[6:]] = 3
    logits = torch.full((80, 8), MASKED_LOGIT)
    logits[:, :4] = 0.0
    logits[torch.arange(80), torch.from_numpy(p)] = 5.0
    return y, p, logits


def test_a_model_that_never_predicts_a_new_id_gets_new_acc_zero():
    y, p, logits = base_model_outputs()
    novel = y >= KNOWN
    # the removed 'novel' convention: joint-argmax predictions (old ids!) Hungarian-matched on the
    # novel subset alone; here it matches 0 -> 4, 1 -> 5, 2 -> 6 (6 images each) and 3 -> 7 (all
    # 10 of class 7): 28 / 40 = 0.7 (the audit measured 0.2475 on a real base model)
    assert cluster_accuracy(y[novel], p[novel]) == pytest.approx(0.7)
    assert frost_task_agnostic(y, p, KNOWN, mapping={})["new_acc"] == 0.0
    # the padded columns of classes the model does not have are not new ids
    assert new_ids_only_hungarian(y, p, logits, KNOWN, KNOWN)["new_acc"] == 0.0
    assert new_ids_only_hungarian(y, p, None, KNOWN, KNOWN)["new_acc"] == 0.0
    out = discovery_summary(y, p, KNOWN, [], logits_all=logits)
    assert out["new_acc"] == 0.0 and out["conventions"]["new_ids_only_hungarian"]["new_acc"] == 0.0
    assert out["novel_predicted_new"] == 0.0


def test_the_frost_mapping_comes_from_the_training_clusters_not_the_test_set():
    """Training clusters: id 8 = class 4, id 9 = class 5. At test time the model swaps them. A
    test-time matching (GCD v2) forgives the swap; FRoST's mapping, fixed before testing, does not."""
    train_entry = {
        "experience": 1,
        "true_labels": np.array([4, 4, 4, 5, 5, 5, 0]),
        "cluster_of_all": np.array([8, 8, 8, 9, 9, 9, 8]),  # the known sample is ignored
    }
    assert cluster_to_class_mapping(
        train_entry["cluster_of_all"], train_entry["true_labels"], 4
    ) == {
        8: 4,
        9: 5,
    }
    y = np.array([0, 1, 4, 4, 5, 5])
    p = np.array([0, 1, 9, 9, 8, 8])  # swapped at test time
    out = discovery_summary(y, p, KNOWN, [train_entry])
    assert out["conventions"]["frost_task_agnostic"]["new_acc"] == 0.0
    assert out["conventions"]["gcd_v2_all_hungarian"]["new_acc"] == 1.0
    assert out["new_acc"] == 0.0  # the primary convention


def test_a_novel_image_predicted_as_an_old_id_is_wrong():
    y = np.array([4, 4, 4, 0])
    p = np.array([0, 0, 0, 1])  # all novel images under old id 0; the old image under id 1
    assert map_predictions(np.array([0, 8, 9]), {8: 4}, KNOWN).tolist() == [0, 4, -1]
    frost = frost_task_agnostic(y, p, KNOWN, mapping={8: 4})
    assert (frost["old_acc"], frost["new_acc"]) == (0.0, 0.0)
    # a single matching over all test samples maps 0 -> 4 and 1 -> 0: everything "right"
    out = discovery_summary(y, p, KNOWN, [])
    assert out["conventions"]["gcd_v2_all_hungarian"] == {
        "old_acc": 1.0,
        "new_acc": 1.0,
        "all_acc": 1.0,
        "hm": 1.0,
    }


def test_permutation_chance_at_a_small_sample_size_is_far_above_one_over_k():
    """130 samples of 20 balanced classes: a random assignment already scores ~0.2 after the
    Hungarian matching (the audit: 0.23), four times 1 / k = 0.05."""
    y = np.arange(130) % 20
    chance = permutation_chance(y, y)  # same cluster sizes, assignment unrelated to the classes
    assert chance > 4 * (1 / 20)
    quality = cluster_quality(y, y)
    assert quality["acc"] == 1.0 and quality["chance"] == chance and quality["num_samples"] == 130
    assert quality["nmi"] == pytest.approx(1.0) and quality["ari"] == pytest.approx(1.0)
    # with many samples per class the chance level falls towards 1 / k
    big = np.arange(20_000) % 20
    assert permutation_chance(big, big, draws=3) < 0.07


def test_cluster_accuracy_is_over_all_novel_samples_not_only_the_pooled_ones():
    """8 novel samples (4 of class 4, 4 of class 5) and 2 known ones. The gate pooled 4 novel
    samples, clustered perfectly; the nearest-cluster assignment of the other novel samples is
    wrong for 3 of them."""
    entry = {
        "experience": 1,
        "true_labels": np.array([4, 4, 4, 4, 5, 5, 5, 5, 0, 1]),
        "pool_indices": np.array([0, 1, 4, 5]),
        "pseudo_labels": np.array([8, 8, -1, -1, 9, 9, -1, -1, -1, -1]),
        "cluster_of_all": np.array([8, 8, 9, 9, 9, 9, 8, 9, 8, 9]),
    }
    out = discovery_summary([0, 4], [0, 8], KNOWN, [entry])
    # all novel: class 4 -> [8, 8, 9, 9], class 5 -> [9, 9, 8, 9]: best 8->4 (2) + 9->5 (3) = 5 / 8
    assert out["cluster_acc"] == pytest.approx(5 / 8) and out["num_clustered"] == 8
    assert out["clusters"]["pooled_novel"]["acc"] == 1.0  # the flattering number, beside it
    assert out["clusters"]["pooled_novel"]["num_samples"] == 4


def test_forgetting_of_the_extra_eval_streams_is_dropped():
    metrics = {
        "Top1_Acc_Stream/eval_phase/test_stream/Task000": 0.5,
        "Top1_Acc_Stream/eval_phase/known_test_stream/Task000": 0.6,
        "StreamForgetting/eval_phase/test_stream": 0.1,
        "StreamForgetting/eval_phase/known_test_stream": 0.7,
        "ExperienceForgetting/eval_phase/test_stream/Task000/Exp000": 0.2,
        "ExperienceForgetting/eval_phase/all_test_stream/Task000/Exp000": 0.9,
    }
    kept = without_foreign_forgetting(metrics, "test")
    assert kept == {
        "Top1_Acc_Stream/eval_phase/test_stream/Task000": 0.5,
        "Top1_Acc_Stream/eval_phase/known_test_stream/Task000": 0.6,
        "StreamForgetting/eval_phase/test_stream": 0.1,
        "ExperienceForgetting/eval_phase/test_stream/Task000/Exp000": 0.2,
    }


def test_novel_samples_absorbed_by_known_classes_count_against_cluster_accuracy():
    """Semi-supervised k-means gave 57 % of the novel images of the flagship to known classes; the
    accuracy over the 43 % left (0.424) was reported as the cluster accuracy of ALL novel samples.
    Now a novel sample without a novel cluster is wrong, and the assigned-only figure is beside it."""
    from avalanche_ext.metrics.discovery import all_novel_quality

    y = np.array([80, 80, 81, 81, 82, 82, 83, 83])
    assigned = np.array([90, 90, 91, 91, -1, -1, -1, -1])  # half absorbed by known classes
    q = all_novel_quality(y, assigned)
    assert q["acc_assigned"] == 1.0 and q["coverage"] == 0.5
    assert q["acc"] == 0.5 and q["num_samples"] == 8 and q["num_assigned"] == 4
    everyone = all_novel_quality(y, np.array([90, 90, 91, 91, 92, 92, 93, 93]))
    assert everyone["acc"] == 1.0 and everyone["coverage"] == 1.0
