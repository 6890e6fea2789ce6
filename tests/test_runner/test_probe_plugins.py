"""The build-time probe goes through the plugins: a plugin whose minibatch hooks break the loss
fails before anything is written (exit 2, one ``error:`` line naming ``cl_strategy.plugins[i]``, no
run folder), the shipped plugins pass it, and it runs on copies: the plugins' and the model's
states, and the RNG, are byte-identical afterwards."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
import torch

import train_config
from avalanche_ext.config import load_config
from avalanche_ext.errors import ConfigError
from avalanche_ext.probe import PROBED_HOOKS, probe_plugins
from avalanche_ext.registry import PLUGINS
from avalanche_ext.runner import Experiment
from strategies.dual_teacher import DualTeacherDistillationPlugin
from tests.conftest import REPO, SYNTHETIC_CONFIG

TINY = {
    "scenario.images_per_class": 6,
    "scenario.test_images_per_class": 2,
    "scenario.image_size": 8,
    "loggers": [],
}
SEEN: list[dict] = []  # what the mutating plugin saw while the probe ran it


class _Hooks:
    """Does nothing at every other hook, as Avalanche's ``BaseSGDPlugin`` would."""

    def __getattr__(self, name):
        if name.startswith(("before_", "after_")) and name not in PROBED_HOOKS:
            return lambda *a, **k: None
        raise AttributeError(name)


@PLUGINS.register_module(name="_ProbeWrongShapeLoss", force=True)
class _ProbeWrongShapeLoss(_Hooks):
    """Adds a per-sample (not a scalar) loss term: the backward would fail."""

    def before_backward(self, strategy, **kwargs):
        strategy.loss = strategy.loss + strategy.mb_output.pow(2).mean(1)


@PLUGINS.register_module(name="_ProbeWrongTeacherWidth", force=True)
class _ProbeWrongTeacherWidth(_Hooks):
    """Distils from 'teacher' logits of 5 classes into a 2-class head: a size mismatch."""

    def before_backward(self, strategy, **kwargs):
        teacher = torch.zeros(strategy.mb_output.shape[0], 5)
        strategy.loss += (strategy.mb_output - teacher).pow(2).mean()


@PLUGINS.register_module(name="_ProbeWidensLogits", force=True)
class _ProbeWidensLogits(_Hooks):
    """Keeps the logits of the first image only: the criterion's two targets no longer fit."""

    def after_forward(self, strategy, **kwargs):
        strategy.mb_output = strategy.mb_output[:1]


@PLUGINS.register_module(name="_ProbeMutator", force=True)
class _ProbeMutator(_Hooks):
    """Changes its own state, the model's weights and the RNG at every probed hook."""

    def __init__(self):
        self.calls = 0
        self.buffer = torch.zeros(3)

    def before_forward(self, strategy, **kwargs):
        self.calls += 1
        self.buffer += 1
        torch.rand(5)
        with torch.no_grad():
            for p in strategy.model.parameters():
                p.add_(1.0)
        SEEN.append({"hook": "before_forward", "model": id(strategy.model)})

    def after_forward(self, strategy, **kwargs):
        SEEN.append({"hook": "after_forward", "logits": tuple(strategy.mb_output.shape)})

    def before_backward(self, strategy, **kwargs):
        self.calls += 1
        SEEN.append({"hook": "before_backward", "loss": float(strategy.loss.detach())})
        strategy.loss += 0.0 * strategy.mb_output.sum()

    def state_dict(self):
        return {"calls": self.calls, "buffer": self.buffer.clone()}


@PLUGINS.register_module(name="_ProbeNeedsExperienceState", force=True)
class _ProbeNeedsExperienceState(_Hooks):
    """Like Avalanche's SI: ``before_backward`` reads what ``before_training_exp`` made."""

    def before_training_exp(self, strategy, **kwargs):
        self.anchor = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}

    def before_backward(self, strategy, **kwargs):
        first = next(iter(strategy.model.named_parameters()))
        strategy.loss += (first[1] - self.anchor[first[0]]).pow(2).sum()


@PLUGINS.register_module(name="_ProbeDeclaresExperienceState", force=True)
class _ProbeDeclaresExperienceState(_ProbeNeedsExperienceState):
    probe_experience_hooks = ("before_training_exp",)


def test_experience_hooks_run_on_the_copies_only_where_declared():
    plugins = [dict(type="_ProbeDeclaresExperienceState")]
    exp = Experiment(load_config(SYNTHETIC_CONFIG, {**TINY, "cl_strategy.plugins": plugins}))
    assert not hasattr(exp.plugins[0], "anchor")  # it ran on the copy
    plugins = [dict(type="_ProbeNeedsExperienceState")]
    with pytest.raises(
        ConfigError,
        match=r"plugins\[0\] \(_ProbeNeedsExperienceState\): "
        r"before_backward fails .*AttributeError",
    ):
        Experiment(load_config(SYNTHETIC_CONFIG, {**TINY, "cl_strategy.plugins": plugins}))


@PLUGINS.register_module(name="_ProbeUncopyable", force=True)
class _ProbeUncopyable(_ProbeWrongShapeLoss):
    """Holds a lock (no deep copy): the probe cannot isolate it, so it says so and skips it."""

    def __init__(self):
        self.lock = threading.Lock()


def test_a_plugin_that_cannot_be_copied_is_skipped_with_a_warning():
    plugins = [dict(type="_ProbeUncopyable")]
    with pytest.warns(UserWarning, match="minibatch hooks were not probed .*lock"):
        Experiment(load_config(SYNTHETIC_CONFIG, {**TINY, "cl_strategy.plugins": plugins}))


def _leaf(tmp_path: Path, plugins: list, name: str = "leaf.py") -> Path:
    path = tmp_path / name
    path.write_text(
        f"_base_ = [{str(SYNTHETIC_CONFIG)!r}]\n"
        "scenario = dict(images_per_class=6, test_images_per_class=2, image_size=8)\n"
        f"cl_strategy = dict(plugins={plugins!r})\n"
    )
    return path


@pytest.mark.parametrize(
    "plugin, expected",
    [
        ("_ProbeWrongShapeLoss", "before_backward: leaves a loss of shape (2,), not a scalar"),
        ("_ProbeWrongTeacherWidth", "before_backward fails on one training batch"),
        ("_ProbeWidensLogits", "cl_strategy.loss fails on the logits (1, 2) and targets (2,)"),
    ],
)
def test_a_broken_plugin_fails_at_build_time_with_exit_2(tmp_path, capsys, plugin, expected):
    work = tmp_path / "work"
    config = _leaf(tmp_path, [dict(type="EWCPlugin", ewc_lambda=1.0), dict(type=plugin)])
    code = train_config.main([str(config), "--work-dir", str(work)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err[-2000:]
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert f"cl_strategy.plugins[1] ({plugin})" in errors[0], errors[0]
    assert expected in errors[0], errors[0]
    assert not work.exists() or not any(work.iterdir())  # no run folder


def _states(model: torch.nn.Module, plugins: list) -> bytes:
    buffer = io.BytesIO()
    plugin_states = [p.state_dict() if hasattr(p, "state_dict") else {} for p in plugins]
    torch.save({"model": model.state_dict(), "plugins": plugin_states}, buffer)
    return buffer.getvalue()


def test_the_probe_runs_the_hooks_on_copies_and_restores_everything():
    cfg = load_config(
        SYNTHETIC_CONFIG, {**TINY, "cl_strategy.plugins": [dict(type="_ProbeMutator")]}
    )
    exp = Experiment(cfg)  # probes once: the original plugin never ran
    assert exp.plugins[0].calls == 0 and not bool(exp.plugins[0].buffer.any())
    SEEN.clear()
    before, rng = _states(exp.model, exp.plugins), torch.get_rng_state()
    first = next(iter(exp.scenario.benchmark.train_stream))
    probe_plugins(exp.model, exp.plugins, first, lambda m, p: exp._probe_strategy(m, p, None))
    # the three hooks ran, in Avalanche's order, around a copy of the model
    assert [s["hook"] for s in SEEN] == ["before_forward", "after_forward", "before_backward"]
    assert SEEN[0]["model"] != id(exp.model)
    assert SEEN[1]["logits"] == (2, 2)  # two images, the head's two classes
    assert SEEN[2]["loss"] > 0  # the criterion's loss was there before the plugin's hook
    assert _states(exp.model, exp.plugins) == before
    assert torch.equal(torch.get_rng_state(), rng)
    assert exp.plugins[0].calls == 0


def test_the_shipped_ncd_plugins_pass_the_probe(monkeypatch):
    seen = []
    original = DualTeacherDistillationPlugin.before_backward

    def spy(self, strategy, **kwargs):
        seen.append((tuple(strategy.mb_output.shape), float(strategy.loss.detach())))
        return original(self, strategy, **kwargs)

    monkeypatch.setattr(DualTeacherDistillationPlugin, "before_backward", spy)
    cfg = load_config(REPO / "configs" / "ncd" / "dualteacher_resnet8_synthetic-8+4.py")
    exp = Experiment(cfg)
    assert [type(p).__name__ for p in exp.plugins] == [
        "ConfidenceGatedPoolPlugin",
        "PseudoLabelClusteringPlugin",
        "DualTeacherDistillationPlugin",
    ]
    assert len(seen) == 1 and seen[0][0] == (2, 8)  # two images, the 8 known classes


def test_lwf_and_replay_pass_the_probe_and_keep_their_state():
    plugins = [dict(type="LwFPlugin", alpha=1.0), dict(type="ReplayPlugin", mem_size=12)]
    cfg = load_config(SYNTHETIC_CONFIG, {**TINY, "cl_strategy.plugins": plugins})
    exp = Experiment(cfg)
    before = _states(exp.model, exp.plugins)
    first = next(iter(exp.scenario.benchmark.train_stream))
    probe_plugins(exp.model, exp.plugins, first, lambda m, p: exp._probe_strategy(m, p, None))
    assert _states(exp.model, exp.plugins) == before
