"""train_config.py as a user meets it: dry run, run folders, and one-line errors with exit code 2.

``cli`` runs ``train_config.main`` in-process (same code path, no 6 s process start per case);
``cli_process`` is the real interpreter, kept for the dry run: the command a user types, from a
cold start (imports, exit code of the process)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import SYNTHETIC_CONFIG

pytestmark = pytest.mark.slow


def _one_line_error(proc, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_dry_run_prints_streams_and_builds_everything(cli_process, tmp_path):
    proc = cli_process(str(SYNTHETIC_CONFIG), "--dry-run", "--work-dir", str(tmp_path / "wd"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["scenario"] == "SyntheticStream"
    assert [e["classes"] for e in out["train_stream"]] == [[0, 1], [2, 3], [4, 5]]
    assert all(e["size"] == 48 for e in out["train_stream"])
    assert [e["size"] for e in out["test_stream"]] == [16, 16, 16]
    assert out["model"]["type"] == "MMClassifier" and out["model"]["num_params"] > 1000
    assert out["strategy"] == "Naive" and out["plugins"] == []
    assert not (tmp_path / "wd").exists(), "a dry run writes nothing"


def test_config_folder_alias_of_the_original_demo(cli, tmp_path):
    # users of the original demo type `config/demo.py`
    proc = cli("config/synthetic/naive_resnet8_1ep_synthetic.py", "--dry-run")
    assert proc.returncode == 0, proc.stderr


def test_cuda_without_cuda_is_a_one_line_error(cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = cli(str(SYNTHETIC_CONFIG), "--device", "cuda", "--dry-run")
    _one_line_error(proc, "CUDA is not available", "--device cpu")


@pytest.mark.parametrize(
    ("option", "needles"),
    [
        ("cl_strategy.type=Naiv", ("cl_strategy.type", "'Naiv'", "'Naive'")),
        ("cl_strategy.optimizer.type=SDG", ("cl_strategy.optimizer.type", "'SGD'")),
        ("cl_strategy.loss.type=CrossEntropyLos", ("cl_strategy.loss.type", "'CrossEntropyLoss'")),
        ("cl_strategy.train_epochs=two", ("cl_strategy.train_epochs",)),
        ("scenario.num_classes=x", ("scenario.num_classes",)),
        ("model.head.num_classes=50", ("model.head.num_classes", "50")),
        ("metrics.3.num_classes=7", ("metrics[3].num_classes", "7")),
        ("scenario.nonsense_key=1", ("scenario", "nonsense_key")),
        ("cl_strategy.optimizer.lrr=0.1", ("cl_strategy.optimizer", "lrr")),
        ("eval_streams=[known]", ("eval_streams", "known")),
    ],
)
def test_config_mistakes_name_the_key(cli, tmp_path, option, needles):
    proc = cli(str(SYNTHETIC_CONFIG), "--dry-run", "--cfg-options", option)
    _one_line_error(proc, *needles)


def test_an_amp_the_cpu_cannot_honour_is_refused_before_anything_is_written(cli, tmp_path):
    work = tmp_path / "wd"
    proc = cli(str(SYNTHETIC_CONFIG), "--work-dir", str(work), "--cfg-options", "runtime.amp=fp16")
    _one_line_error(proc, "runtime.amp", "'fp16'")
    assert not work.exists()


def test_unknown_plugin_names_its_index(cli, tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text(
        f"_base_ = ['{SYNTHETIC_CONFIG}']\n"
        "cl_strategy = dict(plugins=[dict(type='LwFPlugin'), dict(type='LwfPlugin')])\n"
    )
    _one_line_error(cli(str(cfg), "--dry-run"), "cl_strategy.plugins[1].type", "'LwFPlugin'")


def test_missing_config_file_and_missing_data(cli, tmp_path):
    _one_line_error(cli(str(tmp_path / "nope.py")), "nope.py", "not found")
    bad = tmp_path / "cifar.py"
    bad.write_text(
        f"_base_ = ['{SYNTHETIC_CONFIG}']\n"
        "scenario = dict(_delete_=True, type='CIFAR100ClassIncremental', "
        f"dataset_root='{tmp_path / 'no_data'}')\nmodel = dict(head=dict(num_classes=20))\n"
        "metrics = []\n"
    )
    proc = cli(str(bad), "--dry-run", env={"AVALANCHE_EXT_DATA": "", "CIFAR100_ROOT": ""})
    # the shipped archive may still be found beside the project; a corrupt root is an error anyway
    assert proc.returncode in (0, 2)
    if proc.returncode == 2:
        _one_line_error(proc, "no_data")


def test_unwritable_work_dir(cli, tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        work = blocker / "sub"
    else:  # pragma: no cover - non-root CI
        work = tmp_path / "ro"
        work.mkdir(mode=0o500)
    proc = cli(str(SYNTHETIC_CONFIG), "--work-dir", str(work))
    _one_line_error(proc, "work_dir", str(work))


def test_runs_write_new_folders_and_a_failed_run_destroys_nothing(cli, tmp_path):
    work = tmp_path / "wd"
    first = cli(str(SYNTHETIC_CONFIG), "--work-dir", str(work))
    assert first.returncode == 0, first.stderr
    run1 = json.loads(first.stdout)["run_dir"]
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    for name in ("config.py", "results.json", "report.md", "report.html"):
        assert (work / "latest" / name).is_file()
    assert list((work / "latest").glob("*.log")), "TextLogger writes into the run folder"
    assert (work / "latest" / "checkpoints" / "latest.pth").is_file()

    failed = cli(
        str(SYNTHETIC_CONFIG), "--work-dir", str(work), "--cfg-options", "cl_strategy.type=Nope"
    )
    assert failed.returncode == 2
    after = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    assert after == before, "a failing run must not touch earlier results"

    second = cli(str(SYNTHETIC_CONFIG), "--work-dir", str(work), "--seed", "1")
    assert second.returncode == 0, second.stderr
    run2 = json.loads(second.stdout)["run_dir"]
    assert run1 != run2
    assert (work / "latest").resolve().name == os.path.basename(run2)
    assert json.loads(open(os.path.join(run1, "results.json")).read())["seed"] == 0
    assert json.loads(open(os.path.join(run2, "results.json")).read())["seed"] == 1


def test_debug_shows_the_traceback(cli):
    proc = cli(
        str(SYNTHETIC_CONFIG), "--dry-run", "--debug", "--cfg-options", "cl_strategy.type=Naiv"
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
