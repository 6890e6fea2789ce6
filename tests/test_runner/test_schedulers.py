"""Per-experience schedules: 'auto' lengths, lr reset at each experience, epoch-driven losses."""

from __future__ import annotations

import pytest
import torch
from avalanche.core import SupervisedPlugin

from avalanche_ext.builders import build_model, build_scenario, build_strategy
from avalanche_ext.schedulers import resolve_auto


def test_resolve_auto():
    cfg = dict(type="OneCycleLR", max_lr=0.1, total_steps="auto")
    assert (
        resolve_auto(cfg, iterations_per_epoch=7, epochs=3, by_iteration=True)["total_steps"] == 21
    )
    cfg = dict(type="CosineAnnealingLR", T_max="auto")
    assert resolve_auto(cfg, iterations_per_epoch=7, epochs=3, by_iteration=False)["T_max"] == 3


class _Recorder(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.lrs: list[list[float]] = []
        self.epochs: list[int] = []

    def before_training_exp(self, strategy, **kw):
        self.lrs.append([])

    def before_training_iteration(self, strategy, **kw):
        self.lrs[-1].append(strategy.optimizer.param_groups[0]["lr"])

    def after_training_epoch(self, strategy, **kw):
        self.epochs.append(getattr(strategy._criterion, "epoch", None))


@pytest.mark.parametrize("experiences", [2])
def test_one_cycle_spans_each_experience_and_evidential_loss_sees_epochs(
    synthetic_cfg, experiences
):
    cfg = synthetic_cfg
    cfg.cl_strategy.train_epochs = 2
    cfg.cl_strategy.scheduler = dict(type="OneCycleLR", max_lr=0.2, total_steps="auto")
    cfg.cl_strategy.loss = dict(type="EvidentialLoss", annealing_step=10)
    scenario = build_scenario(cfg.scenario)
    recorder = _Recorder()
    strategy = build_strategy(
        cfg.cl_strategy, build_model(cfg.model), None, "cpu", plugins=[recorder]
    )
    for exp in list(scenario.benchmark.train_stream)[:experiences]:
        strategy.train(exp)
    for lrs in recorder.lrs:
        assert lrs[0] == pytest.approx(0.2 / 25)  # OneCycleLR's start: max_lr / div_factor
        assert max(lrs) == pytest.approx(0.2, rel=0.05)
        assert lrs[-1] < lrs[0], "annealed to its end within the experience"
    assert recorder.epochs == [0, 1, 0, 1], "the loss's epoch restarts with every experience"
    assert isinstance(strategy._criterion.epoch, int)
    assert torch.is_tensor(strategy.model.classifier.weight)


def test_lr_scale_per_experience(synthetic_cfg):
    cfg = synthetic_cfg
    cfg.cl_strategy.scheduler = dict(
        type="OneCycleLR", max_lr=0.2, total_steps="auto", lr_scale=[1.0, 0.25]
    )
    scenario = build_scenario(cfg.scenario)
    recorder = _Recorder()
    strategy = build_strategy(
        cfg.cl_strategy, build_model(cfg.model), None, "cpu", plugins=[recorder]
    )
    for exp in scenario.benchmark.train_stream:
        strategy.train(exp)
    peaks = [max(lrs) for lrs in recorder.lrs]
    assert peaks[0] == pytest.approx(0.2, rel=0.05)
    assert peaks[1] == pytest.approx(0.05, rel=0.05)
    assert peaks[2] == pytest.approx(0.05, rel=0.05), "the last value repeats"


def test_one_cycle_with_a_zero_length_warm_up_phase_is_fixed_not_a_crash():
    """torch's OneCycleLR raises ZeroDivisionError when pct_start * total_steps == 1 (a 4-step
    discovery update at pct_start 0.25 crashed the run); the nudged config gives torch's rates."""
    from avalanche_ext.schedulers import one_cycle_fits

    def rates(**cfg):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, **cfg)
        out = []
        for _ in range(cfg["total_steps"]):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    cfg = dict(type="OneCycleLR", max_lr=0.2, total_steps=4, pct_start=0.25)
    with pytest.raises(ZeroDivisionError):
        rates(**{k: v for k, v in cfg.items() if k != "type"})
    fixed = one_cycle_fits(cfg)
    got = rates(**{k: v for k, v in fixed.items() if k != "type"})
    # torch's first phase (warm-up from max_lr / 25) then annealing down, never above max_lr
    assert got[0] == pytest.approx(0.2 / 25)
    assert got[1] > got[2] > got[3] and max(got) <= 0.2
    untouched = dict(cfg, total_steps=8)
    assert one_cycle_fits(untouched) is untouched
