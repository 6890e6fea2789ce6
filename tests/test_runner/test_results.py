"""results.json against what Avalanche's evaluation plugin logged for the same run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from avalanche_ext.runner import run

pytestmark = pytest.mark.slow
MESSAGES: list[str] = []  # the run's progress lines


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from avalanche_ext.config import load_config
    from tests.conftest import SYNTHETIC_CONFIG

    cfg = load_config(SYNTHETIC_CONFIG, {"cl_strategy.train_epochs": 2})
    work = tmp_path_factory.mktemp("results")
    results = run(
        cfg, work_dir=str(work), config_path=str(SYNTHETIC_CONFIG), progress=MESSAGES.append
    )
    return results, Path(results["run_dir"])


def test_the_runner_runs_the_batched_data_path(finished_run):
    assert [m for m in MESSAGES if m.startswith("data path")] == [
        "data path (train): batched on cpu: BatchedPipeline(RandomHorizontalFlip(p=0.5) -> "
        "ToTensor; channels_last)",
        "data path (eval): batched on cpu: BatchedPipeline(ToTensor; channels_last)",
    ]


def _logged_values(log_path: Path) -> list[dict[str, float]]:
    """The metric values TextLogger printed, one dict per evaluation phase."""
    phases, current = [], None
    for line in log_path.read_text().splitlines():
        if line.startswith("-- >> Start of eval phase"):
            current = {}
            phases.append(current)
        elif line.startswith("-- >> Start of training phase"):
            current = None
        m = re.match(r"^\t(\S+) = (-?[0-9.]+)$", line)
        if m and current is not None:
            current[m.group(1)] = float(m.group(2))
    return phases


def test_schema_and_plain_json(finished_run):
    results, run_dir = finished_run
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["seed"] == 0 and on_disk["device"] == "cpu"
    assert on_disk["precision"] == "float32"  # runtime.amp 'auto' is float32 on the CPU
    assert "| precision | float32 |" in (run_dir / "report.md").read_text()
    assert {"torch", "avalanche", "mmpretrain"} <= set(on_disk["versions"])
    assert len(on_disk["experiences"]) == 3
    for i, exp in enumerate(on_disk["experiences"]):
        assert exp["index"] == i and exp["classes"] == [2 * i, 2 * i + 1]
        assert exp["train_time_s"] > 0 and exp["train_images_per_s"] > 0
        assert all(isinstance(v, (float, list)) for v in exp["eval"].values())
    matrix = on_disk["accuracy_matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert isinstance(on_disk["confusion_matrix"][0][0], int)
    json.dumps(on_disk, allow_nan=False)  # no NaN anywhere
    assert (run_dir / on_disk["artifacts"]["report_html"]).is_file()


def test_metric_values_equal_what_avalanche_logged(finished_run):
    results, run_dir = finished_run
    log = next(run_dir.glob("*.log"))
    # each experience ends with one eval phase over the test stream
    logged = _logged_values(log)
    assert len(logged) == len(results["experiences"])
    for exp, printed in zip(results["experiences"], logged):
        for name, value in printed.items():
            assert name in exp["eval"], name
            # the log prints 4 decimals: at most half a unit of the last digit (plus float noise;
            # losses on classes not trained yet are ~1e4 with the MASKED_LOGIT padding)
            assert exp["eval"][name] == pytest.approx(value, abs=5e-5 * (1 + 1e-6)), name


def test_accuracy_matrix_and_forgetting_match_avalanche(finished_run):
    results, _ = finished_run
    matrix = results["accuracy_matrix"]
    for i, exp in enumerate(results["experiences"]):
        for j in range(3):
            assert matrix[i][j] == exp["eval"][f"Top1_Acc_Exp/eval_phase/test_stream/Exp{j:03d}"]
    last = results["experiences"][-1]["eval"]
    assert results["final"]["stream_accuracy"] == last["Top1_Acc_Stream/eval_phase/test_stream"]
    assert results["final"]["stream_forgetting"] == last["StreamForgetting/eval_phase/test_stream"]
    # the report's summary uses Avalanche's definition: mean over j < T-1 of R[j][j] - R[T-1][j]
    assert results["streaming"]["average_forgetting"] == pytest.approx(
        last["StreamForgetting/eval_phase/test_stream"]
    )
    for j in range(2):
        assert last[f"ExperienceForgetting/eval_phase/test_stream/Exp{j:03d}"] == pytest.approx(
            matrix[j][j] - matrix[2][j]
        )
    assert results["streaming"]["average_accuracy"] == pytest.approx(sum(matrix[2]) / 3)


def test_confusion_matrix_and_per_class_accuracy_match_avalanche(finished_run):
    results, _ = finished_run
    avalanche_cm = results["experiences"][-1]["eval"][
        "ConfusionMatrix_Stream/eval_phase/test_stream"
    ]
    assert results["confusion_matrix"] == [[int(v) for v in row] for row in avalanche_cm]
    cm = results["confusion_matrix"]
    for c, acc in enumerate(results["per_class_accuracy"]):
        assert acc == pytest.approx(cm[c][c] / sum(cm[c]))
    total = sum(map(sum, cm))
    assert sum(cm[c][c] for c in range(6)) / total == pytest.approx(
        results["final"]["stream_accuracy"]
    )
    assert not any(isinstance(v, float) and math.isnan(v) for v in results["per_class_accuracy"])
