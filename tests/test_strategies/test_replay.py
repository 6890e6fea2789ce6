"""The checkpointable ReplayPlugin: Avalanche's reservoir rule and adaptive split, stored as indices;
a run resumed after experience 1 ends with the uninterrupted run's numbers."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from avalanche_ext.config import load_config
from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import PLUGINS, resolve_type
from avalanche_ext.runner import run
from strategies.replay import IndexedBuffer, ReplayPlugin, group_lengths, reservoir_merge
from tests.conftest import SYNTHETIC_CONFIG


def test_group_lengths_split_the_remainder_over_the_first_groups():
    assert group_lengths(10, 3) == [4, 3, 3]
    assert group_lengths(2000, 80) == [25] * 80
    assert group_lengths(5, 0) == []


def test_reservoir_keeps_the_highest_random_weights():
    torch.manual_seed(0)
    expected_w = torch.rand(4)
    torch.manual_seed(0)
    empty = {"exp": torch.zeros(0, dtype=torch.long), "idx": torch.zeros(0, dtype=torch.long)}
    group = reservoir_merge({**empty, "w": torch.zeros(0)}, 3, torch.tensor([10, 11, 12, 13]), 2)
    top = expected_w.argsort(descending=True)[:2]
    assert group["idx"].tolist() == (top + 10).tolist()
    assert group["exp"].tolist() == [3, 3]
    assert torch.equal(group["w"], expected_w[top])


class _Data:
    def __init__(self, targets):
        self.targets = targets


def _exp(k, targets):
    return SimpleNamespace(current_experience=k, dataset=_Data(targets), _origin_stream=None)


def test_class_balanced_memory_splits_over_seen_classes_and_skips_hidden_labels():
    buf = IndexedBuffer(6)
    buf.post_adapt(None, _exp(0, [0, 1, 0, 1, 0, 1, 0, 1]))
    assert {c: len(g["idx"]) for c, g in buf.groups.items()} == {0: 3, 1: 3}
    buf.post_adapt(None, _exp(1, [2, 2, 2, -1, -1, 2]))
    assert {c: len(g["idx"]) for c, g in buf.groups.items()} == {0: 2, 1: 2, 2: 2}
    assert set(buf.groups[2]["idx"].tolist()) <= {0, 1, 2, 5}  # never a hidden (-1) sample
    assert set(buf.groups[0]["idx"].tolist()) <= {0, 2, 4, 6}
    state = buf.state_dict()
    data = io.BytesIO()
    torch.save(state, data)
    data.seek(0)
    again = IndexedBuffer(6)
    again.load_state_dict(torch.load(data, weights_only=True))
    assert all(torch.equal(again.groups[c]["idx"], buf.groups[c]["idx"]) for c in buf.groups)
    with pytest.raises(ConfigError, match="replay buffer"):
        IndexedBuffer(7).load_state_dict(state)


def test_experience_balanced_policy_and_config_resolution():
    buf = IndexedBuffer(5, "ExperienceBalancedBuffer")
    buf.post_adapt(None, _exp(0, [0, 1, 0, 1, 0, 1]))
    buf.post_adapt(None, _exp(1, [2, 3, 2, 3]))
    assert [len(buf.groups[k]["idx"]) for k in sorted(buf.groups)] == [3, 2]
    assert resolve_type(PLUGINS, "ReplayPlugin") is ReplayPlugin
    assert ReplayPlugin(mem_size=4).storage_policy.policy == "ClassBalancedBuffer"
    with pytest.raises(ConfigError, match="storage_policy"):
        ReplayPlugin(mem_size=4, storage_policy="ParametricBuffer")


DEMO_SHAPED = {
    # the demo's plugin pair (replay + our LwF) on the synthetic stream
    "cl_strategy.plugins": [
        dict(type="ReplayPlugin", mem_size=12),
        dict(type="LwFPlugin", alpha=1.0, temperature=2.0),
    ],
    "loggers": [],
}
COMPARED = ("accuracy_matrix", "final", "per_class_accuracy", "confusion_matrix")


@pytest.mark.slow
def test_demo_shaped_run_resumed_after_experience_1_matches(tmp_path):
    full = run(load_config(SYNTHETIC_CONFIG, DEMO_SHAPED), work_dir=str(tmp_path / "full"))
    # The state a run killed after experience 1 leaves behind: its checkpoint, nothing else.
    killed = tmp_path / "killed" / "run"
    (killed / "checkpoints").mkdir(parents=True)
    src = Path(full["run_dir"]) / "checkpoints"
    shutil.copy(src / "experience_1.pth", killed / "checkpoints" / "latest.pth")
    payload = torch.load(killed / "checkpoints" / "latest.pth", weights_only=True)
    memory = payload["plugins"]["ReplayPlugin"]
    assert sum(len(g["idx"]) for g in memory["groups"].values()) == 12
    resumed = run(
        load_config(SYNTHETIC_CONFIG, DEMO_SHAPED), work_dir=str(killed.parent), resume=True
    )
    for key in COMPARED:
        assert resumed[key] == full[key], key
    for a, b in zip(full["experiences"], resumed["experiences"]):
        for name, value in a["eval"].items():
            if not name.startswith(("Time", "CPU", "Disk")):
                assert b["eval"][name] == value, name
