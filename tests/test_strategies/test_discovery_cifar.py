"""The flagship discovery config on a small real CIFAR-100 subset (80 images per class, so 80 / 8
per head / tail class, 4 + 2 epochs): the update must trigger, discover (novel test images mapped
to their class: new accuracy above 0, where the base model scores exactly 0), keep the old classes
(at most 5 points lost), and cluster far above chance.

Measured at this scale (one thread, as under `make test`'s workers: 75 s): old 0.094 (base 0.099),
new 0.0125, all-class 0.078 against 0.079 for the base model alone, cluster accuracy 0.21 (chance
0.096), gate AUROC 0.53. So "beats no update on all-class accuracy" is NOT asserted here (at 120
images per class and 5 + 3 epochs it did not hold either: 0.106 vs 0.110); at full scale the
flagship gains 0.001 (benchmarks/RESULTS.md). The test prior (80 % known) makes a 10 % known false-novel rate
cost about as much as the new classes bring when features are this weak."""

from __future__ import annotations

import pytest

from avalanche_ext.config import load_config
from avalanche_ext.runner import run

pytestmark = pytest.mark.slow

FLAGSHIP = "configs/ncd/dualteacher-replay_resnet14_cpu-11e_cifar100-80+20lt.py"


def test_update_triggers_discovers_and_keeps_old_classes_on_real_cifar(tmp_path):
    cfg = load_config(
        FLAGSHIP,
        {
            "scenario.train_subset": 80,
            "scenario.test_subset": 20,
            "cl_strategy.train_epochs": [4, 2],
            "cl_strategy.plugins.0.trigger_size": 100,
            "loggers": [],
        },
    )
    messages: list[str] = []
    results = run(cfg, work_dir=str(tmp_path), progress=messages.append)
    d = results["discovery"]
    assert d["triggered"] is True, d["reason"]
    assert any("discovery on experience 2" in m for m in messages)
    floor = d["floor"]["frost_task_agnostic"]
    assert floor["new_acc"] == 0.0, "the base model never predicts a new id"
    assert d["new_acc"] > 0.0, "some novel test images get the id mapped to their class"
    assert d["old_acc"] >= floor["old_acc"] - 0.05, (d["old_acc"], floor["old_acc"])
    assert d["cluster_acc"] > d["cluster_chance"]
