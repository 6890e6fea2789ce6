"""Plugin state in checkpoints is owned by name (the plugin's ``state_key``, default its class name),
as mmengine hooks own their checkpoint entries: a resume whose plugin list only gains a stateless
plugin works, one that loses a stateful plugin is refused with one ``error:`` line, and checkpoints
keyed by list position (``"0:ReplayPlugin"``) written before still resume to the same numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import train_config
from avalanche_ext.checkpointer import plugin_keys
from avalanche_ext.config import load_config
from avalanche_ext.run_record import _LEGACY_FIELDS
from avalanche_ext.runner import run
from tests.conftest import SYNTHETIC_CONFIG

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")
TINY = {
    "scenario.images_per_class": 6,
    "scenario.test_images_per_class": 2,
    "scenario.image_size": 8,
    "loggers": [],
}
REPLAY = dict(type="ReplayPlugin", mem_size=4)
COMPARED = ("accuracy_matrix", "final", "per_class_accuracy", "confusion_matrix")


def _cfg(plugins: list):
    return load_config(SYNTHETIC_CONFIG, {**TINY, "cl_strategy.plugins": plugins})


@pytest.fixture(scope="module")
def replay_run(tmp_path_factory) -> dict:
    """A finished three-experience run with a replay buffer (checkpointed after each experience)."""
    return run(_cfg([REPLAY]), work_dir=str(tmp_path_factory.mktemp("full")))


def _killed_after_first(results: dict, work: Path) -> Path:
    """What a run killed after experience 1 leaves: a run folder holding that checkpoint only."""
    run_dir = work / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    src = Path(results["run_dir"]) / "checkpoints" / "experience_1.pth"
    shutil.copy(src, run_dir / "checkpoints" / "latest.pth")
    return run_dir


def _same_numbers(a: dict, b: dict) -> None:
    for key in COMPARED:
        assert a[key] == b[key], key


def test_plugin_keys_are_names_with_a_suffix_only_for_repeats():
    class Named:
        state_key = "teacher"

    class Plain:
        pass

    plugins = [Plain(), Named(), Plain(), Plain()]
    assert plugin_keys(plugins) == ["Plain", "teacher", "Plain#2", "Plain#3"]


def test_a_stateless_plugin_added_still_resumes(replay_run, tmp_path):
    run_dir = _killed_after_first(replay_run, tmp_path)
    flip = dict(type="TestTimeFlipPlugin")
    resumed = run(_cfg([flip, REPLAY]), work_dir=str(tmp_path), resume=str(run_dir))
    assert resumed["status"] == "completed" and len(resumed["experiences"]) == 3
    # the first row comes from the checkpoint; the rest continue exactly as a run that had the
    # flip from the start (it only changes evaluation): the replay buffer moved one position down
    # the plugin list and was still restored into its owner
    assert resumed["accuracy_matrix"][0] == replay_run["accuracy_matrix"][0]
    flipped_full = run(_cfg([flip, REPLAY]), work_dir=str(tmp_path / "flipped"))
    assert resumed["accuracy_matrix"][1:] == flipped_full["accuracy_matrix"][1:]
    assert resumed["per_class_accuracy"] == flipped_full["per_class_accuracy"]


def test_a_stateful_plugin_removed_is_refused(replay_run, tmp_path, capsys):
    run_dir = _killed_after_first(replay_run, tmp_path)
    before = (run_dir / "checkpoints" / "latest.pth").read_bytes()
    leaf = tmp_path / "no_replay.py"
    tiny = "scenario = dict(images_per_class=6, test_images_per_class=2, image_size=8)\n"
    leaf.write_text(f"_base_ = [{str(SYNTHETIC_CONFIG)!r}]\n{tiny}loggers = []\n")
    code = train_config.main([str(leaf), "--resume", str(run_dir)])
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(errors) == 1, errors
    assert "holds the state of plugin ReplayPlugin" in errors[0]
    assert sorted(p.name for p in run_dir.rglob("*") if p.is_file()) == ["latest.pth"]
    assert (run_dir / "checkpoints" / "latest.pth").read_bytes() == before


def _to_positional(payload: dict) -> dict:
    """The layout checkpoints had before plugin keys and the run record: plugin states keyed by
    list position, the record's run-only fields inside ``results`` under underscore names."""
    old = {k: v for k, v in payload.items() if k not in ("run_record", "configured_plugin_keys")}
    old["plugins"] = {
        f"{i}:{key.split('#')[0]}": state
        for i, (key, state) in enumerate(payload["plugins"].items())
    }
    results = dict(payload["results"])
    record = payload["run_record"]
    for legacy, name in _LEGACY_FIELDS.items():
        value = record[name]
        if name == "floor_predictions" and value is not None:
            value = {"predictions": value}
        results[f"_{legacy}"] = value
    old["results"] = results
    return old


def test_a_checkpoint_keyed_by_position_resumes_to_the_same_numbers(replay_run, tmp_path):
    run_dir = _killed_after_first(replay_run, tmp_path)
    path = run_dir / "checkpoints" / "latest.pth"
    payload = torch.load(path, weights_only=True)
    assert "ReplayPlugin" in payload["plugins"]
    old = _to_positional(payload)
    # checkpoints of that time also held a state for plugins now declared stateless (the batched
    # data path's, the checkpointer's): it is ignored, not loaded into a plugin that has none
    old["plugins"][f"{len(old['plugins'])}:BatchedDataPlugin"] = {}
    torch.save(old, path)
    resumed = run(_cfg([REPLAY]), work_dir=str(tmp_path), resume=str(run_dir))
    _same_numbers(replay_run, resumed)
