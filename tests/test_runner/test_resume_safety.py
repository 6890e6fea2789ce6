"""``--resume`` on a damaged run folder falls back to the newest checkpoint that loads and says
which, or refuses naming the file; a config that differs from the run's saved ``config.py`` is
refused naming the difference unless ``--resume-with-changes`` is passed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from avalanche_ext.resume_config import config_changes
from tests.conftest import SYNTHETIC_CONFIG, TINY_OPTIONS, run_main

S = str(SYNTHETIC_CONFIG)
TINY = TINY_OPTIONS
COMPARED = ("accuracy_matrix", "final", "per_class_accuracy", "confusion_matrix")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished three-experience run (checkpoints experience_1..3.pth and latest.pth)."""
    work = tmp_path_factory.mktemp("finished")
    proc = run_main(S, "--work-dir", str(work), "--cfg-options", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return next(p for p in work.iterdir() if p.is_dir() and not p.is_symlink())


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "work" / finished.name))


def _flip_a_byte_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_good_one(finished, copy):
    ckpts = copy / "checkpoints"
    _flip_a_byte_in_the_middle(ckpts / "experience_3.pth")  # loads, but fails its CRC check
    data = (ckpts / "latest.pth").read_bytes()
    (ckpts / "latest.pth").write_bytes(data[: len(data) // 3])  # truncated
    (copy / "results.json").unlink()
    proc = run_main(S, "--resume", str(copy), "--cfg-options", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    note = next(line for line in proc.stderr.splitlines() if "instead" in line)
    assert f"{ckpts / 'experience_3.pth'} is corrupt" in note
    assert note.endswith(f"resuming from {ckpts / 'experience_2.pth'} instead")
    assert "resumed from experience 2 of 3" in proc.stderr
    full, resumed = _results(finished), _results(copy)
    for key in COMPARED:
        assert resumed[key] == full[key], key


def test_no_checkpoint_that_loads_is_one_error_line_naming_the_newest(copy):
    for path in (copy / "checkpoints").iterdir():
        path.write_bytes(b"not a checkpoint")
    proc = run_main(S, "--resume", str(copy), "--cfg-options", *TINY)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert str(copy / "checkpoints" / "experience_3.pth") in errors[0]


def test_a_changed_config_is_refused_unless_asked_for(copy):
    before = (copy / "config.py").read_text()
    changed = [*TINY, "cl_strategy.optimizer.lr=0.5", "cl_strategy.train_epochs=2"]
    proc = run_main(S, "--resume", str(copy), "--cfg-options", *changed)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "cl_strategy.optimizer.lr: 0.05 -> 0.5" in errors[0]
    assert "cl_strategy.train_epochs: 1 -> 2" in errors[0]
    assert "--resume-with-changes" in errors[0]
    assert (copy / "config.py").read_text() == before

    proc = run_main(S, "--resume", str(copy), "--resume-with-changes", "--cfg-options", *changed)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming with changes: cl_strategy.optimizer.lr: 0.05 -> 0.5" in proc.stderr
    assert (copy / "config_before_resume_1.py").read_text() == before
    assert "lr=0.5" in (copy / "config.py").read_text()
    # The run's config is now the changed one: resuming with it again needs no flag.
    proc = run_main(S, "--resume", str(copy), "--cfg-options", *changed)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_where_the_run_is_written_is_not_a_change(copy, tmp_path):
    options = [*TINY, f"work_dir={tmp_path / 'elsewhere'}", "checkpoint_config.interval=2"]
    proc = run_main(S, "--resume", str(copy), "--cfg-options", *options)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_config_changes_names_dotted_keys_and_list_items():
    saved = {"a": {"b": 1, "c": [1, 2]}, "d": [dict(type="X", k=1)]}
    current = {"a": {"b": 2, "c": [1, 2, 3]}, "d": [dict(type="X", k=2)], "e": 0}
    assert config_changes(saved, current) == [
        "a.b: 1 -> 2",
        "a.c: [1, 2] -> [1, 2, 3]",
        "d[0].k: 1 -> 2",
        "e: '<absent>' -> 0",
    ]


def test_a_newest_run_without_checkpoints_is_named_not_replaced_by_an_older_one(copy):
    newer = copy.parent / "29991231_235959"
    newer.mkdir()
    (newer / "config.py").write_text((copy / "config.py").read_text())  # killed before its first
    proc = run_main(S, "--work-dir", str(copy.parent), "--resume", "--cfg-options", *TINY)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert f"the newest run {newer} stopped before its first checkpoint" in errors[0]
