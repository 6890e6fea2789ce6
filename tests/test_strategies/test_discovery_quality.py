"""Discovery quality where the answer is known: configs/ncd/dualteacher_resnet8_synthetic-8+4.py
(8 labeled generated classes, then 4 novel ones arriving unlabeled) run end to end, once per module.

The thresholds are the issue's "near 1 / high / within a few points"; the lead measured AUROC 1.0,
cluster accuracy 1.0, old accuracy 0.956 -> 0.969, new 1.0 on this config. A run that did not
trigger must say so (progress line, reason, results.json).
"""

import json
import re
from pathlib import Path

import pytest

from avalanche_ext.config import load_config
from avalanche_ext.runner import run

CONFIG = "configs/ncd/dualteacher_resnet8_synthetic-8+4.py"
NUM_KNOWN = 8

pytestmark = pytest.mark.filterwarnings(
    "ignore:No loggers specified", "ignore:ConfidenceGatedPoolPlugin"
)


def _run(repo: Path, work_dir: Path, options: dict | None = None) -> tuple[dict, list[str]]:
    lines: list[str] = []
    results = run(
        load_config(repo / CONFIG, options), work_dir=str(work_dir), progress=lines.append
    )
    return results, lines


@pytest.fixture(scope="module")
def discovered(tmp_path_factory):
    repo = Path(__file__).resolve().parents[2]
    return _run(repo, tmp_path_factory.mktemp("discovered"))


@pytest.fixture(scope="module")
def not_triggered(tmp_path_factory):
    """The discovery experience has 300 samples: a trigger size of 1000 can never be reached."""
    repo = Path(__file__).resolve().parents[2]
    options = {"cl_strategy.plugins.0.trigger_size": 1000, "cl_strategy.train_epochs": 1}
    return _run(repo, tmp_path_factory.mktemp("not_triggered"), options)


# ----------------------------------------------------------------------------- discovery happens
def test_the_gate_separates_novel_from_known(discovered):
    gate = discovered[0]["discovery"]["gate"]
    assert gate["auroc"] >= 0.95
    assert gate["precision"] >= 0.9 and gate["recall"] >= 0.9


def test_the_clusters_are_the_novel_classes(discovered):
    d = discovered[0]["discovery"]
    assert d["cluster_acc"] >= 0.9
    assert d["num_clustered"] == 240  # every novel discovery sample (4 x 60), not only pooled ones
    assert d["cluster_acc"] > d["cluster_chance"] + 0.5


def test_the_update_learns_the_new_classes_and_keeps_the_old(discovered):
    d = discovered[0]["discovery"]
    assert d["convention"] == "frost_task_agnostic" and d["triggered"] is True
    assert d["new_acc"] >= 0.85
    assert d["novel_predicted_new"] >= 0.85  # novel test images given a new id
    floor = d["floor"]["frost_task_agnostic"]
    assert floor["new_acc"] == 0.0  # the base model alone discovers nothing
    assert d["old_acc"] >= floor["old_acc"] - 0.05
    assert d["all_acc"] > floor["all_acc"] + 0.2


def test_a_progress_line_and_results_json_report_the_trigger(discovered):
    results, lines = discovered
    assert any(
        re.fullmatch(r"discovery on experience 2: \d+ pooled >= trigger_size 50", x) for x in lines
    )
    on_disk = json.loads((Path(results["run_dir"]) / "results.json").read_text())
    assert on_disk["discovery"]["triggered"] is True
    assert on_disk["discovery"]["new_acc"] == results["discovery"]["new_acc"]


def test_the_accuracy_matrix_maps_discovered_ids_first(discovered):
    """Test experience 0 holds the known classes, experience 1 the novel ones. Discovered ids are
    cluster numbers: the matrix scores them after FRoST's mapping, so its last row is the primary
    convention's old / new accuracy, and the row before the update is the floor."""
    results = discovered[0]
    d = results["discovery"]
    matrix = results["accuracy_matrix"]
    assert len(matrix) == 2
    assert matrix[0] == pytest.approx([d["floor"]["frost_task_agnostic"]["old_acc"], 0.0])
    assert matrix[1] == pytest.approx([d["old_acc"], d["new_acc"]])
    per_class = results["per_class_accuracy"]
    assert sum(per_class[NUM_KNOWN:]) / 4 == pytest.approx(d["new_acc"])  # 20 test images each
    assert "mapped" in results["prediction_mapping"]


# ----------------------------------------------------------------------------- nothing triggered
def test_a_run_that_did_not_trigger_says_so(not_triggered):
    results, lines = not_triggered
    d = results["discovery"]
    assert d["triggered"] is False
    assert re.fullmatch(r"update not triggered: \d+ pooled < trigger_size 1000", d["reason"])
    assert "not triggered" in d["reason"]
    assert f"discovery on experience 2: {d['reason']}" in lines
    on_disk = json.loads((Path(results["run_dir"]) / "results.json").read_text())
    assert on_disk["discovery"]["triggered"] is False
    assert on_disk["discovery"]["reason"] == d["reason"]
    # nothing was discovered: the numbers are the floor's, and no new id was ever predicted
    assert d["new_acc"] == 0.0 and d["novel_predicted_new"] == 0.0
    assert d["conventions"] == d["floor"]
    assert d["per_experience"][0]["num_discovered"] == 0
