"""Real-data smoke run: the demo config end to end on a few hundred CIFAR-100 images."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_demo_config_on_a_few_hundred_images(cli, tmp_path):
    proc = cli(
        "configs/demo.py",
        "--work-dir",
        str(tmp_path),
        "--cfg-options",
        "scenario.train_subset=4",
        "scenario.test_subset=2",
        "cl_strategy.train_epochs=1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "latest" / "results.json").read_text())
    # 80 known classes, then 20 new ones (4 images per class)
    assert [e["size"] for e in results["scenario"]["train_stream"]] == [320, 80]
    assert len(results["accuracy_matrix"]) == 2
    assert 0.0 <= results["final"]["stream_accuracy"] <= 1.0
    cm = results["experiences"][-1]["eval"]["ConfusionMatrix_Stream/eval_phase/test_stream"]
    assert len(cm) == 100, "confusion_matrix_metrics(save_image=True) works on our benchmark"
    for name in ("report_md", "report_html", "confusion_matrix_png", "accuracy_matrix_png"):
        assert (tmp_path / "latest" / results["artifacts"][name]).is_file()


def test_forgetting_with_extra_eval_streams_is_the_test_streams(cli, tmp_path):
    """Avalanche's forgetting keys experiences by index alone; the runner evaluates the scenario's
    extra streams (known/novel/all, each with an experience 0) before the test stream so the
    logged StreamForgetting is the test stream's own (R[0][0] - R[1][0])."""
    cfg = tmp_path / "c.py"
    cfg.write_text(
        "_base_ = ['" + str(__import__("pathlib").Path("configs/demo.py").resolve()) + "']\n"
        "eval_streams = None\n"
        "scenario = dict(train_subset=4, test_subset=4)\n"
        "cl_strategy = dict(train_epochs=1)\n"
    )
    proc = cli(str(cfg), "--work-dir", str(tmp_path / "wd"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "wd" / "latest" / "results.json").read_text())
    matrix = results["accuracy_matrix"]
    names = results["experiences"][-1]["eval"]
    assert "Top1_Acc_Stream/eval_phase/all_test_stream" in names
    assert results["final"]["stream_forgetting"] == pytest.approx(matrix[0][0] - matrix[1][0])
    assert results["streaming"]["average_forgetting"] == pytest.approx(matrix[0][0] - matrix[1][0])
