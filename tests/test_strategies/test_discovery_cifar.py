"""The flagship discovery config on a small real CIFAR-100 subset: the update must trigger and
beat no update (the floor) on all-class accuracy under FRoST's task-agnostic convention."""

from __future__ import annotations

import pytest

from avalanche_ext.config import load_config
from avalanche_ext.runner import run

pytestmark = pytest.mark.slow

FLAGSHIP = "configs/ncd/dualteacher-replay_resnet20_cpu-8e_cifar100-80+20lt.py"


def test_update_triggers_and_beats_no_update_on_real_cifar(tmp_path):
    cfg = load_config(
        FLAGSHIP,
        {
            "scenario.train_subset": 60,
            "scenario.test_subset": 20,
            "cl_strategy.train_epochs": [3, 3],
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
    assert d["novel_predicted_new"] > 0.3, "the update learned to choose novel classes"
    assert d["all_acc"] > floor["all_acc"], (d["all_acc"], floor["all_acc"])
    assert d["cluster_acc"] > d["cluster_chance"]
