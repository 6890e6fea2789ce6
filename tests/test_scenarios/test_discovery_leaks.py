"""Label leaks in a discovery run: while the discovery experience starts training, nothing reachable
from the strategy may lead to the hidden labels, the benchmark (whose labelled novel test stream
would follow), or the number / counts of the novel classes.

One run of configs/ncd/dualteacher_resnet8_synthetic-8+4.py (1 epoch, every extra eval stream,
forgetting metrics) through the runner, with a spy plugin put first in the strategy's plugins.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from avalanche.core import SupervisedPlugin

from avalanche_ext import builders
from avalanche_ext.config import load_config
from avalanche_ext.plugin_helpers import is_discovery_experience
from avalanche_ext.runner import run

CONFIG = "configs/ncd/dualteacher_resnet8_synthetic-8+4.py"
NUM_KNOWN, NUM_CLASSES = 8, 12

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")


def _children(obj) -> list[tuple]:
    """Attributes (``__dict__`` and ``__slots__``), and what a function or method closes over:
    its bound ``__self__``, its closure cells and its default arguments (a callback stored on a
    plugin must not smuggle the scenario in)."""
    children = list(vars(obj).items()) if hasattr(obj, "__dict__") else []
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and hasattr(obj, name):
                children.append((name, getattr(obj, name)))
    if inspect.ismethod(obj):
        children += [("__self__", obj.__self__), ("__func__", obj.__func__)]
    if inspect.isfunction(obj):
        cells = obj.__closure__ or ()
        names = obj.__code__.co_freevars
        children += [
            (f"__closure__.{n}", c.cell_contents) for n, c in zip(names, cells) if _full(c)
        ]
        children += list(enumerate(obj.__defaults__ or ()))
        children += list((obj.__kwdefaults__ or {}).items())
    return children


def _full(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell
        return False
    return True


def crawl(root, scenario, max_depth: int = 14) -> list[tuple]:
    """Every path from ``root`` (attributes, dict items, short sequences) to: a copy of the hidden
    labels (``labels``), the benchmark (``benchmark``), an integer sequence holding novel class ids
    (``novel_ids``), or an int named like a class count above the known classes (``num_classes``)."""
    labels = scenario.hidden_labels[1]  # the discovery experience
    novel = set(range(NUM_KNOWN, NUM_CLASSES))
    found, seen, todo = [], set(), [(root, "strategy", 0, "")]
    while todo:
        obj, path, depth, key = todo.pop()
        if isinstance(obj, bool) or depth > max_depth:
            continue
        if isinstance(obj, int):
            if "classes" in key and obj > NUM_KNOWN:
                found.append(("num_classes", path, obj))
            continue
        if id(obj) in seen or isinstance(obj, (str, bytes, float, type, Spy)):
            continue  # (the spy holds the scenario to compare with: not part of the run)
        seen.add(id(obj))
        if obj is scenario.benchmark:
            found.append(("benchmark", path))
            continue
        if torch.is_tensor(obj):
            if obj.numel() == len(labels) and torch.equal(obj.flatten().long(), labels):
                found.append(("labels", path))
            elif not obj.is_floating_point() and obj.dim() <= 1 and obj.numel():
                values = set(obj.unique().tolist())
                if values & novel and max(values) < NUM_CLASSES and min(values) >= -1:
                    found.append(("novel_ids", path))
            continue
        if isinstance(obj, (list, tuple)) and obj and all(isinstance(v, int) for v in obj[:100]):
            if set(obj) & novel and max(obj) < NUM_CLASSES:
                found.append(("novel_ids", path))
        children = _children(obj)
        if isinstance(obj, dict):
            children += list(obj.items())
        elif isinstance(obj, (list, tuple, set)) and len(obj) < 200:
            children += list(enumerate(obj))
        todo += [(v, f"{path}.{k}", depth + 1, str(k)) for k, v in children]
    return found


class Spy(SupervisedPlugin):
    """First plugin of the strategy: looks around when the discovery experience starts."""

    def __init__(self, scenarios: list):
        super().__init__()
        self.scenarios = scenarios
        self.seen: dict = {}

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        if not is_discovery_experience(strategy.experience):
            return
        scenario = self.scenarios[-1]
        # the spy must not be part of what it crawls
        strategy.plugins.remove(self)
        try:
            self.seen = {
                "paths": crawl(strategy, scenario),
                "num_classes": strategy.model.num_classes,
                "scenario_info": dict(strategy.scenario_info),
                "experience_has_benchmark": hasattr(strategy.experience, "benchmark"),
                "calibration_labels": strategy.ncd.calibration_labels,
            }
        finally:
            strategy.plugins.insert(0, self)


@pytest.fixture(scope="module")
def leak_run(tmp_path_factory):
    repo = Path(__file__).resolve().parents[2]
    scenarios: list = []
    spy = Spy(scenarios)
    build_scenario, build_plugins = builders.build_scenario, builders.build_plugins

    def record_scenario(*args, **kwargs):
        scenarios.append(build_scenario(*args, **kwargs))
        return scenarios[-1]

    options = {
        "cl_strategy.train_epochs": 1,
        "eval_streams": None,
        "metrics": [
            dict(type="accuracy_metrics", experience=True, stream=True),
            dict(type="forgetting_metrics", experience=True, stream=True),
        ],
    }
    cfg = load_config(repo / CONFIG, options)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builders, "build_scenario", record_scenario)
        mp.setattr(builders, "build_plugins", lambda *a, **k: [spy, *build_plugins(*a, **k)])
        results = run(cfg, work_dir=str(tmp_path_factory.mktemp("leaks")))
    return SimpleNamespace(results=results, seen=spy.seen, scenario=scenarios[-1])


def kinds(leak_run, *names: str) -> list[tuple]:
    return [p for p in leak_run.seen["paths"] if p[0] in names]


def test_scenario_info_names_only_the_known_classes(leak_run):
    info = leak_run.seen["scenario_info"]
    assert info == {
        "num_known": NUM_KNOWN,
        "known_classes": list(range(NUM_KNOWN)),
        "train_class_counts": info["train_class_counts"],
    }
    assert len(info["train_class_counts"]) == NUM_KNOWN
    assert "novel_classes" in leak_run.scenario.info  # the scenario has them; training does not


def test_training_experiences_have_no_benchmark_back_reference(leak_run):
    assert leak_run.seen["experience_has_benchmark"] is False
    bench = leak_run.scenario.benchmark
    assert not any(hasattr(exp, "benchmark") for exp in bench.train_stream)
    # evaluation experiences keep it (StreamConfusionMatrix reads it), and the crawler finds it there
    assert all(exp.benchmark is bench for exp in bench.test_stream)
    assert crawl(bench.test_stream[1], leak_run.scenario)[0][0] == "benchmark"


def test_evaluating_the_whole_test_stream_does_not_grow_the_head_before_discovery(leak_run):
    # the first evaluation covered the novel test experience too...
    first_eval = leak_run.results["experiences"][0]["eval"]
    assert any("test_stream" in k and k.endswith("Exp001") for k in first_eval)
    # ...and the model still had the known classes' rows only when discovery started
    assert leak_run.seen["num_classes"] == NUM_KNOWN


def test_nothing_reachable_from_the_strategy_leads_to_hidden_labels_or_the_benchmark(leak_run):
    assert kinds(leak_run, "labels", "benchmark") == []
    # the crawler does descend into the strategy's state: it reaches the known-class labels
    assert leak_run.seen["calibration_labels"] is not None
    assert crawl(
        SimpleNamespace(copy=leak_run.scenario.hidden_labels[1].clone()), leak_run.scenario
    )


def test_nothing_reachable_from_the_strategy_counts_the_novel_classes(leak_run):
    """The runner's own eval plugins keep what a discovery plugin must not know: the padding plugin
    the scenario's class count (12 = k + 8) and the prediction recorder the novel test labels."""
    assert kinds(leak_run, "novel_ids", "num_classes") == []


def test_extra_eval_streams_forgetting_is_not_in_the_results(leak_run):
    experiences = leak_run.results["experiences"]
    streams = ("known_test", "novel_test", "all_test")
    for experience in experiences:
        keys = experience["eval"]
        assert any(f"/{s}_stream" in k for k in keys for s in streams)  # their accuracy is kept
        assert not [
            k for k in keys if "Forgetting" in k and any(f"/{s}_stream" in k for s in streams)
        ]
    assert "StreamForgetting/eval_phase/test_stream" in experiences[-1]["eval"]
