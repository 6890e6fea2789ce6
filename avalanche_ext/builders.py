"""Builders from config dicts: scenario, model, loss, optimizer, plugins, evaluator, strategy.

Each builder goes through a registry (``avalanche_ext.registry``), so a new component is a new file
with ``@REGISTRY.register_module()``; each error names the config key at fault.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from avalanche.training.plugins import EvaluationPlugin

from avalanche_ext.class_counts import ClassCountPlugin, needs_class_counts
from avalanche_ext.errors import ConfigError
from avalanche_ext.models import MMClassifier
from avalanche_ext.registry import (
    LOGGERS,
    LOSSES,
    METRICS,
    MODELS,
    OPTIMIZERS,
    PLUGINS,
    SCENARIOS,
    STRATEGIES,
    build,
    resolve_type,
)
from avalanche_ext.scenario import BuiltScenario
from avalanche_ext.schedulers import ExperienceLRScheduler, LossEpochUpdater
from avalanche_ext.transforms import build_pipeline

__all__ = [
    "build_criterion",
    "build_evaluator",
    "build_loggers",
    "build_model",
    "build_optimizer",
    "build_plugins",
    "build_scenario",
    "build_strategy",
    "check_num_classes",
]

# The strategy keys the runner fills itself; the rest of cl_strategy goes to the strategy class.
_STRATEGY_OWN_KEYS = ("optimizer", "scheduler", "loss", "plugins")


def _plain(cfg: Any) -> Any:
    """mmengine ConfigDicts -> plain dicts/lists (deep copy), so builders can pop freely."""
    if hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    return copy.deepcopy(cfg)


def build_scenario(
    cfg: dict, key: str = "scenario", transform_keys: dict[str, str] | None = None
) -> BuiltScenario:
    """Builds the scenario; ``dataset_type`` is accepted as an alias of ``type`` (original demo).

    Args:
        cfg: the ``scenario`` dict; ``train_transform`` / ``eval_transform`` may be transform-dict lists.
        key: config key for errors.
        transform_keys: the config key each transform came from (``train_pipeline``...), for errors.
    """
    cfg = _plain(cfg)
    if "dataset_type" in cfg:
        alias = cfg.pop("dataset_type")
        if cfg.setdefault("type", alias) != alias:
            raise ConfigError(f"{key}: both type={cfg['type']!r} and dataset_type={alias!r} given")
    for name in ("train_transform", "eval_transform"):
        if name in cfg:
            where = (transform_keys or {}).get(name, f"{key}.{name}")
            cfg[name] = build_pipeline(cfg[name], key=where)
    built = build(SCENARIOS, cfg, key=key)
    if isinstance(built, BuiltScenario):
        return built
    # An Avalanche classic benchmark (e.g. SplitMNIST): wrap it.
    n_classes = int(getattr(built, "n_classes", 0) or 0)
    return BuiltScenario(
        benchmark=built,
        num_classes=n_classes,
        class_names=[str(i) for i in range(n_classes)],
        info={"type": cfg["type"]},
    )


def build_model(cfg: dict, key: str = "model") -> MMClassifier:
    """Builds the classifier; a dict without ``type`` is an ``MMClassifier`` (backbone/neck/head)."""
    cfg = _plain(cfg)
    cfg.setdefault("type", "MMClassifier")
    model = build(MODELS, cfg, key=key)
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{key}.type: {cfg['type']!r} did not build a torch module")
    return model


def check_num_classes(
    model: torch.nn.Module, scenario: BuiltScenario, key: str = "model.head"
) -> None:
    """Fails when the head cannot fit the scenario's classes.

    The head must cover the classes of the first experience (``initial_num_classes``) and may not
    exceed the classes the stream will ever have.
    """
    n = getattr(model, "num_classes", None)
    if n is None or not scenario.num_classes:
        return
    low = scenario.initial_num_classes or scenario.num_classes
    if n > scenario.num_classes or (n < low and not getattr(model, "auto_grow", False)):
        raise ConfigError(
            f"{key}.num_classes: {n} does not match the scenario ({low} classes at the start, "
            f"{scenario.num_classes} in all)"
        )


def build_criterion(cfg: dict | None, key: str = "cl_strategy.loss"):
    """The training loss: mmpretrain losses (``CrossEntropyLoss``, ``FocalLoss``...), ours, or torch.nn."""
    if cfg is None:
        return torch.nn.CrossEntropyLoss()
    return build(LOSSES, _plain(cfg), key=key)


def build_optimizer(cfg: dict, model: torch.nn.Module, key: str = "cl_strategy.optimizer"):
    """A torch optimizer over all model parameters (plugins may regroup them later)."""
    if cfg is None:
        raise ConfigError(f"{key}: missing required key")
    return build(OPTIMIZERS, _plain(cfg), key=key, params=model.parameters())


def build_plugins(
    cfgs: list | None, key: str = "cl_strategy.plugins", seed: int | None = None
) -> list:
    """Builds the strategy plugins, in config order (the order Avalanche calls them).

    A plugin whose constructor takes ``seed`` and whose config leaves it unset (or None) gets the
    run's ``seed``, so ``--seed`` drives every random choice of the training (hold-outs, k-means,
    replay draws); the scenario's split keeps its own ``scenario.seed`` (see README, Seeds).
    """
    plugins = []
    for i, c in enumerate(cfgs or []):
        c = _plain(c)
        if seed is not None and c.get("seed") is None:
            cls = resolve_type(PLUGINS, str(c.get("type")), f"{key}[{i}]")
            if "seed" in inspect.signature(cls).parameters:
                c = {**c, "seed": int(seed)}
        plugins.append(build(PLUGINS, c, key=f"{key}[{i}]"))
    return plugins


def build_loggers(cfgs: list | None, work_dir: str, key: str = "loggers") -> list:
    """Builds loggers; ours (TextLogger, WandBLogger) get the run folder as ``work_dir``."""
    loggers = []
    for i, c in enumerate(cfgs or []):
        c = _plain(c)
        cls = resolve_type(LOGGERS, str(c.get("type")), f"{key}[{i}]")
        extra = {"work_dir": work_dir} if "work_dir" in inspect.signature(cls).parameters else {}
        loggers.append(build(LOGGERS, c, key=f"{key}[{i}]", **extra))
    return loggers


def _check_metric(cfg: dict, scenario: BuiltScenario | None, key: str) -> None:
    n = cfg.get("num_classes")
    if (
        scenario is not None
        and n is not None
        and scenario.num_classes
        and n != scenario.num_classes
    ):
        raise ConfigError(
            f"{key}.num_classes: {n} does not match the scenario's {scenario.num_classes} classes"
        )


def build_evaluator(
    metric_cfgs: list | None,
    loggers: list,
    scenario: BuiltScenario | None = None,
    key: str = "metrics",
    run_dir: str | None = None,
) -> EvaluationPlugin:
    """Avalanche's ``EvaluationPlugin`` over the configured metrics (functions such as
    ``accuracy_metrics`` return lists of metrics) with ``collect_all=True``.

    ``disk_usage_metrics`` without ``paths_to_monitor`` watches ``run_dir`` (the run folder), not
    Avalanche's default of the current directory: that is the experiment's own disk use, and a
    checkout with ``.venv`` inside made each of its ``du`` calls cost 0.13 s (5 s per evaluation
    of the demo, where it is updated after every eval minibatch).
    """
    metrics = []
    for i, c in enumerate(metric_cfgs or []):
        c = _plain(c)
        _check_metric(c, scenario, f"{key}[{i}]")
        if run_dir is not None and c.get("type") == "disk_usage_metrics":
            c.setdefault("paths_to_monitor", [str(run_dir)])
        built = build(METRICS, c, key=f"{key}[{i}]")
        metrics.extend(built if isinstance(built, (list, tuple)) else [built])
    return EvaluationPlugin(*metrics, loggers=loggers, collect_all=True)


def build_strategy(
    cfg: dict,
    model: torch.nn.Module,
    evaluator: EvaluationPlugin | None,
    device: str | torch.device,
    plugins: list | None = None,
    key: str = "cl_strategy",
):
    """Builds the Avalanche strategy with its optimizer, loss, schedule and plugins.

    Args:
        cfg: the ``cl_strategy`` dict: ``type`` (``Naive``, ``Replay``... or ours), ``optimizer``,
            ``scheduler``, ``loss``, ``plugins`` and the strategy's own keyword arguments
            (``train_mb_size``, ``eval_mb_size``, ``train_epochs``...).
        model: the model.
        evaluator: the evaluation plugin (None: Avalanche's default).
        device: torch device.
        plugins: already built plugins (default: built from ``cfg['plugins']``).
        key: config key for errors.
    """
    cfg = _plain(cfg)
    optimizer = build_optimizer(cfg.get("optimizer"), model, key=f"{key}.optimizer")
    criterion = build_criterion(cfg.get("loss"), key=f"{key}.loss")
    if plugins is None:
        plugins = build_plugins(cfg.get("plugins"), key=f"{key}.plugins")
    plugins = list(plugins)
    if cfg.get("scheduler"):
        plugins.append(ExperienceLRScheduler(cfg["scheduler"]))
    if callable(getattr(criterion, "set_epoch", None)):
        plugins.append(LossEpochUpdater())
    if needs_class_counts(criterion, plugins):  # first, so every other plugin can read the counts
        plugins.insert(0, ClassCountPlugin())
    args = {k: v for k, v in cfg.items() if k not in _STRATEGY_OWN_KEYS}
    if isinstance(args.get("train_epochs"), (list, tuple)):
        args["train_epochs"] = int(args["train_epochs"][0])  # the runner sets it per experience
    extra = dict(
        model=model, optimizer=optimizer, criterion=criterion, plugins=plugins, device=device
    )
    if evaluator is not None:
        extra["evaluator"] = evaluator
    return build(STRATEGIES, args, key=key, **extra)
