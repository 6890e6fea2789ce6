"""Equipping a run's strategy: loggers, evaluator, the evaluation recorders, the runtime plugins,
the non-finite guard and the plugins' shared discovery state (the runner's first step of a run)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avalanche_ext import builders, distributed
from avalanche_ext.ncd_state import DiscoveryState
from avalanche_ext.non_finite import NonFiniteGuard
from avalanche_ext.recorder import EvalLogitPadding, PredictionRecorder, RecordStore
from avalanche_ext.runtime import runtime_plugins
from avalanche_ext.scenario import known_view

__all__ = ["Rig", "equip"]


@dataclass
class Rig:
    """The strategy equipped for one run, and the evaluation pieces the runner switches on and off.

    The eval plugins know the scenario's classes only while the runner evaluates: during training
    the padding width is 0 and the recorder has no store (both would tell the number of classes).
    """

    strategy: Any
    evaluator: Any
    records: RecordStore
    recorder: PredictionRecorder
    padding: EvalLogitPadding


def equip(exp: Any, run_dir: Path, say: Callable[[str], None]) -> Rig:
    """The strategy of ``exp`` (an :class:`~avalanche_ext.runner.Experiment`) with its loggers,
    evaluator, evaluation recorders, runtime plugins and the non-finite guard, and the shared
    discovery state attached."""
    main = distributed.is_main()
    loggers = builders.build_loggers(exp.cfg.get("loggers"), str(run_dir)) if main else []
    evaluator = builders.build_evaluator(
        exp.cfg.get("metrics"), loggers, exp.scenario, run_dir=run_dir
    )
    rig = Rig(None, evaluator, RecordStore(), PredictionRecorder(), EvalLogitPadding(0))
    rig.strategy = strategy = builders.build_strategy(
        exp.cfg.cl_strategy,
        exp.model,
        evaluator,
        exp.device,
        plugins=exp.plugins + [rig.padding, rig.recorder],
    )
    # Last, so that replay loaders exist when the runtime plugins wrap them.
    strategy.plugins.extend(runtime_plugins(exp.runtime, exp.seed, exp.device, say, exp.model))
    strategy.plugins.append(NonFiniteGuard(exp.runtime.on_non_finite, say))  # sees the final loss
    # The one object the plugins share (docs/contracts.md), and a known-classes-only view of the
    # scenario: nothing reachable from training code counts or names the novel classes.
    strategy.ncd = DiscoveryState(
        num_known_classes=exp.scenario.initial_num_classes or exp.scenario.num_classes
    )
    strategy.scenario_info = known_view(exp.scenario)
    distributed.attach(strategy, exp.seed, exp.ddp_kwargs)  # DDP; nothing in one process
    return rig
