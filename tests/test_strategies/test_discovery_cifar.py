"""The flagship discovery recipe on a small real CIFAR-100 subset: it must trigger, discover, and
beat the base model alone (no update) on all-class accuracy (FRoST's task-agnostic convention).

The subset is the classic NCD shape (CIFAR-10's 5 known + 5 novel, here on CIFAR-100 classes):
the first 5 classes known (balanced, 375 base images each: a 5-class step tail would leave two
37-image tail classes and test the tail, not discovery), the last 5 novel, their 2,500 images
unlabeled with 625 held-back known ones, 100 test images per class; 12 + 3 epochs; k = 5. Every
other setting is the flagship config's (the novel-head update, the HM operating point).

Why not the 80 + 20 split here: at a test-sized subset its features are too weak to route novel
images (80 images per class, 4 + 2 epochs: all-class 0.078 with the update against 0.079
without), and at the full 80 + 20 scale the update's gain is a fraction of a point
(benchmarks/RESULTS.md): with 80 % of the test images known, routing images to new classes pays
only when known and novel separate well. Half the test images are novel here.

Measured with the shipped recipe (one thread, AMD EPYC, seeds 0 1 2): HM 0.391 / 0.384 / 0.390
against 0 for the base model alone, new 0.336 / 0.318 / 0.310, all-class 0.401 / 0.401 / 0.417
against 0.374 / 0.371 / 0.382 (gain +0.027 / +0.030 / +0.035), old 0.466 / 0.484 / 0.524 against
0.748 / 0.742 / 0.764. Without the known-class exemplars (which lift routing on the real 80 + 20
stream, benchmarks/RESULTS.md, but not here: routing AUROC 0.742 / 0.711 / 0.734 with them, 0.756
/ 0.729 / 0.736 without): HM 0.416 / 0.375 / 0.363, all-class gain +0.048 / +0.042 / +0.030. The
all-class bound (+0.02) sits below every one of these gains and about two standard errors above
the floor at 1,000 test images. With half the test images novel, the HM operating point trades old
accuracy for new: the old-class bound here is a sanity bound (30 points), not the flagship's
target. The previous recipe (head-only update, 10 % known false-novel rate) scored new
0.146-0.160 and old 0.700-0.710 on seeds 0 1 2. The other bounds sit well inside every measured
value."""

from __future__ import annotations

import pytest

from avalanche_ext.config import load_config
from avalanche_ext.runner import run

pytestmark = pytest.mark.slow

FLAGSHIP = "configs/ncd/ncd_resnet14_cpu-24e_cifar100-80+20lt.py"
SUBSET = {
    "model.head.num_classes": 5,
    "scenario.num_known": 5,
    "scenario.num_novel": 5,
    "scenario.imbalance_type": "none",
    "scenario.test_subset": 100,
    "cl_strategy.train_epochs": [12, 3],
    "cl_strategy.plugins.0.trigger_size": 50,
    "cl_strategy.plugins.0.score_kwargs.k": 5,
    "cl_strategy.plugins.1.num_clusters": 5,
    "metrics": [dict(type="accuracy_metrics", experience=True, stream=True)],
    "loggers": [],
}


def test_update_triggers_and_beats_no_update_on_real_cifar(tmp_path):
    cfg = load_config(FLAGSHIP, SUBSET)
    messages: list[str] = []
    results = run(cfg, work_dir=str(tmp_path), progress=messages.append)
    d = results["discovery"]
    assert d["triggered"] is True, d["reason"]
    assert any("discovery on experience 2" in m for m in messages)
    floor = d["floor"]["frost_task_agnostic"]
    assert floor["new_acc"] == 0.0, "the base model never predicts a new id"
    # the heart of it: discovering the novel classes raises all-class accuracy
    assert d["all_acc"] >= floor["all_acc"] + 0.02, (d["all_acc"], floor["all_acc"])
    # and the harmonic mean of old and new accuracy, FRoST's headline (the floor's is 0)
    assert floor["hm"] == 0.0 and d["hm"] >= 0.30, d["hm"]
    assert d["new_acc"] >= 0.25, d["new_acc"]
    # the operating point serves HM: with half the test images novel it trades old accuracy for new
    assert d["old_acc"] >= floor["old_acc"] - 0.30, (d["old_acc"], floor["old_acc"])
    assert d["transductive_acc"] >= 1.5 * d["transductive_chance"], d["transductive_acc"]
    assert d["cluster_acc"] >= 1.5 * d["cluster_chance"], (d["cluster_acc"], d["cluster_chance"])
    assert d["gate"]["auroc"] >= 0.65, d["gate"]["auroc"]
