"""The original project's demo config, kept verbatim in tests/fixtures/seed_demo_clear10.py (its
OpenMMLab helper variables ``img_norm_cfg`` and ``batch_size`` included), runs from a folder that
holds a generated CLEAR tree at the config's own relative ``dataset_root``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_main
from tools.make_clear_tree import make_clear_tree

pytestmark = pytest.mark.slow
DEMO = REPO / "tests" / "fixtures" / "seed_demo_clear10.py"


@pytest.fixture
def demo_folder(tmp_path) -> Path:
    """A folder with the verbatim config and ``dataset/CLEAR-10-PUBLIC/`` (11 classes, 2 buckets,
    one training and one test image per class and bucket)."""
    make_clear_tree(
        tmp_path / "dataset" / "CLEAR-10-PUBLIC",
        num_classes=11,
        num_buckets=2,
        per_class=1,
        test_per_class=1,
    )
    shutil.copy(DEMO, tmp_path / "demo.py")
    return tmp_path


def test_the_original_demo_config_runs_verbatim(demo_folder):
    # One epoch instead of 70 (the only change, on the command line): a minute of CPU otherwise.
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(demo_folder), "WANDB_SILENT": "true"}
    done = run_main(
        "demo.py", "--cfg-options", "cl_strategy.train_epochs=1", cwd=demo_folder, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (demo_folder / "work_dirs" / "demo").glob("2*")  # InteractiveLogger prints too
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and len(results["accuracy_matrix"]) == 2
    assert results["scenario"]["type"] == "CLEAR" and results["scenario"]["num_classes"] == 11
    dumped = (run_dir / "config.py").read_text()
    assert "img_norm_cfg" not in dumped and "batch_size" not in dumped  # helpers live in the keys
    assert "mean=[\n" in dumped or "0.485" in dumped
