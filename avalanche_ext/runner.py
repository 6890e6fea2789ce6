"""The experiment runner: ``run(cfg) -> results``, the API ``train_config.py`` is a thin CLI over.

Builds scenario, model, plugins, evaluator and strategy from the config (so a bad config fails before
anything is written), trains over the stream, evaluates after each experience, checkpoints, resumes,
and writes ``results.json`` plus the report into a fresh timestamped run folder.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import platform
import random
import re
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.config import Config

from avalanche_ext import builders, distributed
from avalanche_ext.checkpoint import (
    capture_state,
    get_rng_state,
    load_checkpoint,
    newest_good_checkpoint,
    restore_state,
    save_checkpoint,
    set_rng_state,
)
from avalanche_ext.config import check_epoch_plan
from avalanche_ext.errors import ConfigError
from avalanche_ext.failures import recording_failures
from avalanche_ext.metrics.discovery import map_predictions, training_mapping
from avalanche_ext.metrics.long_tail import confusion_matrix, per_class_accuracy
from avalanche_ext.ncd_state import DiscoveryState, discovery_state
from avalanche_ext.non_finite import NonFiniteGuard
from avalanche_ext.probe import probe_model, probe_plugins
from avalanche_ext.recorder import EvalLogitPadding, PredictionRecorder, RecordStore
from avalanche_ext.registry import LOGGERS, check_arguments, resolve_type
from avalanche_ext.resume_config import check_resume_config
from avalanche_ext.runtime import parse_runtime, runtime_plugins
from avalanche_ext.safety import (
    EpochCheckpointer,
    Interrupted,
    StopRequest,
    differs,
    install_mid_experience_resume,
    load_scheduler_states,
    scheduler_states,
)
from avalanche_ext.scenario import BuiltScenario, stream_summary
from avalanche_ext.strict import atomic_write_text, dump_config, scenario_config
from avalanche_ext.utils.jsonable import to_jsonable

__all__ = ["run", "resolve_device", "make_run_dir", "find_resume_checkpoint", "Experiment"]

_ACC_EXP = re.compile(r"^Top1_Acc_Exp/eval_phase/(?P<stream>[^/]+)(?:/Task\d+)?/Exp(?P<exp>\d+)$")
_VERSIONED = (
    "torch",
    "torchvision",
    "avalanche-lib",
    "mmpretrain",
    "mmengine",
    "mmcv-lite",
    "numpy",
    "scikit-learn",
    "faiss-cpu",
)
# Configured plugins whose state is rebuilt from the config (nothing to checkpoint). Avalanche's
# internal plugins (clock, evaluator, periodic eval) and ours are restored or rebuilt by the runner.
_STATELESS_PLUGINS = {"LRSchedulerPlugin", "EarlyStoppingPlugin"}


def resolve_device(device: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; asking for CUDA without it is a user error.

    Raises:
        ConfigError: CUDA requested but unavailable, or an unknown device string.
    """
    name = (device or "cpu").strip()
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"--device {name}: expected cpu, cuda or cuda:N ({err})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {name}: CUDA is not available on this machine; use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ConfigError(f"--device {name}: expected cpu, cuda or cuda:N")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name.replace("-lib", "").replace("-lite", "")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def make_run_dir(work_dir: str | os.PathLike) -> Path:
    """A new ``<work_dir>/<YYYYmmdd_HHMMSS>[_k]`` folder; earlier runs are never touched.

    Raises:
        ConfigError: the work dir cannot be created or written.
    """
    work = Path(work_dir)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    try:
        work.mkdir(parents=True, exist_ok=True)
        for k in range(1000):
            run_dir = work / (stamp if k == 0 else f"{stamp}_{k}")
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                continue
    except OSError as err:
        raise ConfigError(f"work_dir: cannot write {work} ({err.strerror or err})") from None
    raise ConfigError(f"work_dir: too many runs started at {stamp} in {work}")


def _point_latest(run_dir: Path) -> None:
    """``<work_dir>/latest`` -> the run folder (a symlink; a text file where links are unsupported)."""
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    try:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError:  # no symlinks here: a text file, switched atomically as well
        atomic_write_text(tmp, run_dir.name)
        os.replace(tmp, latest)


def find_resume_checkpoint(
    path: str | os.PathLike | None, work_dir: str | os.PathLike, say: Callable | None = None
) -> Path:
    """The checkpoint to resume: ``path`` (a file, or a run folder), else the newest run of
    ``work_dir`` (a folder with ``config.py``); in a run folder the furthest checkpoint that loads
    (:func:`~avalanche_ext.checkpoint.newest_good_checkpoint`, which tells ``say`` what it skipped).

    Raises:
        ConfigError: no checkpoint to resume from, or none of the run folder's loads.
    """
    candidates: list[Path] = []
    if path:
        p = Path(path)
        if p.is_file():
            return p
        candidates = [p]
    else:
        work = Path(work_dir)
        if work.is_dir():
            runs = (d for d in work.iterdir() if d.is_dir() and not d.is_symlink())
            runs = [d for d in runs if (d / "config.py").is_file() or (d / "checkpoints").is_dir()]
            candidates = sorted(runs, key=lambda d: d.name, reverse=True)[:1]  # the newest only
    for run_dir in candidates:
        if any((run_dir / "checkpoints").glob("*.pth")):
            return newest_good_checkpoint(run_dir / "checkpoints", say)
        if not path:  # never an older run in its place: that one may well be finished
            raise ConfigError(
                f"--resume: the newest run {run_dir} stopped before its first checkpoint; start "
                "it again without --resume (or pass --resume RUN_FOLDER for another run)"
            )
    where = path or work_dir
    raise ConfigError(
        f"--resume: no checkpoint found in {where} (expected <run>/checkpoints/latest.pth)"
    )


def _plugin_name(plugin: Any, index: int) -> str:
    return f"{index}:{type(plugin).__name__}"


def _float_metrics(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in values.items():
        if hasattr(value, "best_supported_value"):  # AlternativeValues: image + raw tensor
            value = value.best_supported_value(torch.Tensor, float, int)
        if isinstance(value, torch.Tensor):
            value = value.item() if value.numel() == 1 else value.tolist()
        if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, list):
            out[name] = value
    return out


def load_weights(model: torch.nn.Module, path: str, key: str = "load_from") -> None:
    """Loads model weights only (our checkpoints, plain state dicts, or mmpretrain's ``state_dict``).

    Every key and shape is checked before anything is copied: a foreign file never half-loads.

    Raises:
        ConfigError: missing file, unreadable file, or keys/shapes that do not fit the model.
    """
    payload = load_checkpoint(path, key=key)
    state = payload.get("model", payload.get("state_dict", payload))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{key}: {path} holds no model state dict")
    if "num_classes" in payload and hasattr(model, "grow"):
        model.grow(int(payload["num_classes"]))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        detail = (missing and f"missing {missing[:3]}") or (
            unexpected and f"unexpected {unexpected[:3]}"
        )
        detail = detail or f"shape mismatch for {wrong[:3]}"
        raise ConfigError(f"{key}: {path} does not fit the model ({detail})")
    model.load_state_dict(state)


def _select_eval_streams(scenario: BuiltScenario, names: list | None) -> dict[str, Any]:
    """The scenario's extra evaluation streams that ``eval_streams`` (a list of names; None: all)
    asks for.

    Raises:
        ConfigError: an unknown name (the message lists the scenario's streams).
    """
    if names is None:
        return dict(scenario.eval_streams)
    if not isinstance(names, (list, tuple)):
        raise ConfigError(f"eval_streams: expected a list of stream names, got {names!r}")
    unknown = [n for n in names if n not in scenario.eval_streams]
    if unknown:
        raise ConfigError(
            f"eval_streams: unknown stream {unknown[0]!r}; this scenario has "
            f"{sorted(scenario.eval_streams) or 'none'}"
        )
    return {n: scenario.eval_streams[n] for n in names}


class Experiment:
    """Everything built from one config; nothing is written until :meth:`train` runs.

    Args:
        cfg: the loaded config.
        device: torch device string.
        seed: overrides ``cfg.seed``.
    """

    def __init__(self, cfg: Config, device: str = "cpu", seed: int | None = None):
        self.cfg = cfg
        self.device = resolve_device(device)
        self.seed = int(seed if seed is not None else cfg.get("seed", 0) or 0)
        self.runtime = parse_runtime(cfg)
        seed_everything(self.seed)
        scenario_cfg, transform_keys = scenario_config(cfg)  # pipelines resolved after merging
        self.scenario: BuiltScenario = builders.build_scenario(
            scenario_cfg, transform_keys=transform_keys
        )
        self.model = builders.build_model(cfg.model)
        builders.check_num_classes(self.model, self.scenario)
        check_epoch_plan(
            cfg.cl_strategy.get("train_epochs"), len(self.scenario.benchmark.train_stream)
        )
        self.eval_streams = _select_eval_streams(self.scenario, cfg.get("eval_streams"))
        self.plugins = builders.build_plugins(cfg.cl_strategy.get("plugins"), seed=self.seed)
        self.ddp_kwargs = distributed.wrapper_kwargs(cfg.get("model_wrapper_cfg"))
        # Build (and drop) the strategy once, so every key is checked before anything is written;
        # loggers are only resolved here: constructing them would create files.
        for i, logger in enumerate(cfg.get("loggers") or []):
            cls = resolve_type(LOGGERS, str(logger.get("type")), f"loggers[{i}]")
            check_arguments(cls, {k: v for k, v in logger.items() if k != "type"}, f"loggers[{i}]")
        with (
            warnings.catch_warnings()
        ):  # "No loggers specified": this evaluator logs nothing on purpose
            warnings.simplefilter("ignore")
            evaluator = builders.build_evaluator(cfg.get("metrics"), [], self.scenario)
        strategy = builders.build_strategy(
            cfg.cl_strategy, self.model, evaluator, self.device, self.plugins
        )
        self.strategy_type = type(strategy).__name__
        self.resume_refusal = resume_refusal(strategy, self.plugins)
        # One batch through model and loss (all state restored): a misfit fails before any write.
        first = next(iter(self.scenario.benchmark.train_stream), None)
        if first is not None:
            probe_model(self.model, strategy._criterion, first, self.device, cfg.model)
            probe_plugins(
                self.model, self.plugins, first, lambda m, p: self._probe_strategy(m, p, evaluator)
            )

    def _probe_strategy(self, model: torch.nn.Module, plugins: list, evaluator):
        """A throwaway strategy around copies, equipped as :func:`_train` equips the real one."""
        strategy = builders.build_strategy(
            self.cfg.cl_strategy, model, evaluator, self.device, plugins
        )
        strategy.ncd = DiscoveryState(
            num_known_classes=self.scenario.initial_num_classes or self.scenario.num_classes
        )
        strategy.scenario_info = known_view(self.scenario)
        return strategy

    @property
    def scenario_type(self) -> str | None:
        """The scenario's registered name (``dataset_type`` being the demo's alias of ``type``)."""
        cfg = self.cfg.scenario
        return self.scenario.info.get("type") or cfg.get("type") or cfg.get("dataset_type")

    def describe(self) -> dict[str, Any]:
        """The ``--dry-run`` summary."""
        bench = self.scenario.benchmark
        return {
            "scenario": self.scenario_type,
            "num_classes": self.scenario.num_classes,
            "train_stream": stream_summary(bench.train_stream),
            "test_stream": stream_summary(bench.test_stream),
            "eval_streams": {k: stream_summary(s) for k, s in self.eval_streams.items()},
            "model": {
                "type": type(self.model).__name__,
                "backbone": (self.cfg.model.get("backbone") or {}).get("type"),
                "num_classes": getattr(self.model, "num_classes", None),
                "num_params": int(sum(p.numel() for p in self.model.parameters())),
            },
            "strategy": self.strategy_type,
            "plugins": [type(p).__name__ for p in self.plugins],
            "device": str(self.device),
            "seed": self.seed,
        }


def _accuracy_row(metrics: dict[str, float], stream: str, n: int) -> list[float | None]:
    row: list[float | None] = [None] * n
    for name, value in metrics.items():
        m = _ACC_EXP.match(name)
        if m and m.group("stream") == stream and int(m.group("exp")) < n:
            row[int(m.group("exp"))] = float(value)
    return row


def _stream_metric(metrics: dict[str, float], prefix: str, stream: str) -> float | None:
    base = f"{prefix}/eval_phase/{stream}"
    for name, value in metrics.items():
        if name == base or name.startswith(base + "/"):
            return float(value)
    return None


def run(
    cfg: Config,
    device: str = "cpu",
    work_dir: str | None = None,
    seed: int | None = None,
    resume: str | bool | None = None,
    dry_run: bool = False,
    config_path: str | None = None,
    progress: Callable[[str], None] | None = None,
    fresh_plugins_ok: bool = False,
    resume_with_changes: bool = False,
) -> dict[str, Any]:
    """Runs one experiment.

    Args:
        cfg: a loaded config (:func:`avalanche_ext.config.load_config`).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        work_dir: overrides ``cfg.work_dir`` (default ``work_dirs/<config name>``).
        seed: overrides ``cfg.seed``.
        resume: True (newest checkpoint of the work dir) or a checkpoint / run-folder path.
        dry_run: build everything, train nothing, return the stream description.
        config_path: the config file, recorded in results.json.
        progress: called with one-line progress messages (the CLI prints them).
        fresh_plugins_ok: on resume, plugins absent from the checkpoint start fresh instead of
            being refused (API only: ``benchmarks/ncd_ablation.py`` resumes one base experience
            into runs with other plugins).
        resume_with_changes: on resume, a config that differs from the run's saved ``config.py``
            is accepted (and becomes the run's) instead of refused.

    Returns:
        The results dict (also written to ``<run_dir>/results.json``), or the description on dry run.

    Raises:
        ConfigError: any user mistake (config, data, device, work dir, checkpoint).
    """
    say = progress or (lambda _msg: None)
    t_start = time.time()
    with distributed.main_first():  # rank 0 unpacks data and fills caches first
        exp = Experiment(cfg, device=device, seed=seed)
    if dry_run:
        return exp.describe()

    if cfg.get("load_from"):  # before the run folder exists: a bad file writes nothing
        load_weights(exp.model, cfg.load_from)
    name = Path(config_path).stem if config_path else "run"
    work = Path(work_dir or cfg.get("work_dir") or Path("work_dirs") / name)
    checkpoint = None
    if resume:
        ckpt_path = distributed.run_on_main(
            find_resume_checkpoint, None if resume is True else resume, work, say
        )
        checkpoint = distributed.load_on_every_rank(
            ckpt_path, lambda p: load_checkpoint(p, key="--resume")
        )
        if checkpoint.get("format") is None:
            raise ConfigError(f"--resume: {ckpt_path} is not an avalanche-ext checkpoint")
        check_resume_fits(checkpoint, exp, ckpt_path, fresh_plugins_ok)
        run_dir = ckpt_path.parent.parent
        check_resume_config(run_dir, cfg, resume_with_changes, say, distributed.is_main())
    else:
        run_dir = distributed.run_on_main(make_run_dir, work)  # rank 0 alone writes
    try:
        with recording_failures(run_dir, config_path, distributed.is_main()), StopRequest() as stop:
            return _train(
                exp, cfg, run_dir, checkpoint, config_path, say, t_start, stop, fresh_plugins_ok
            )
    except Interrupted as err:
        err.run_dir = str(run_dir)
        if distributed.is_main():
            _write_interrupted(err, run_dir, config_path, say)
        raise
    except BaseException:
        if distributed.is_main() and checkpoint is None and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise


def _write_interrupted(err: Interrupted, run_dir: Path, config_path: str | None, say) -> None:
    """results.json of an interrupted run: the numbers of the experiences done, how to resume."""
    results = dict(load_checkpoint(err.checkpoint, key="--resume")["results"])
    results.pop("_pca_prev", None)
    command = f"python train_config.py {config_path or 'CONFIG'} --resume {run_dir}"
    results.update(status="interrupted", checkpoint=err.checkpoint, resume_command=command)
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, allow_nan=False))
    say(f"interrupted (signal {err.signum}): checkpoint {err.checkpoint}; resume with: {command}")


def _train(
    exp: Experiment,
    cfg: Config,
    run_dir: Path,
    checkpoint: dict | None,
    config_path: str | None,
    say: Callable[[str], None],
    t_start: float,
    stop: StopRequest | None = None,
    fresh_plugins_ok: bool = False,
) -> dict[str, Any]:
    scenario = exp.scenario
    stop = stop if stop is not None else StopRequest()
    if checkpoint is None and distributed.is_main():
        dump_config(cfg, run_dir / "config.py")
    loggers = (
        builders.build_loggers(cfg.get("loggers"), str(run_dir)) if distributed.is_main() else []
    )
    evaluator = builders.build_evaluator(cfg.get("metrics"), loggers, scenario, run_dir=run_dir)
    # The eval plugins know the scenario's classes only while the runner evaluates: during training
    # the padding width is 0 and the recorder has no store (both would tell k).
    records = RecordStore()
    recorder = PredictionRecorder()
    padding = EvalLogitPadding(0)
    strategy = builders.build_strategy(
        cfg.cl_strategy,
        exp.model,
        evaluator,
        exp.device,
        plugins=exp.plugins + [padding, recorder],
    )
    # Last, so that checkpointed plugin names keep their positions and replay loaders exist.
    strategy.plugins.extend(runtime_plugins(exp.runtime, exp.seed, exp.device, say, exp.model))
    strategy.plugins.append(NonFiniteGuard(exp.runtime.on_non_finite, say))  # sees the final loss
    # The one object the plugins share (docs/contracts.md), and a known-classes-only view of the
    # scenario: nothing reachable from training code counts or names the novel classes.
    strategy.ncd = DiscoveryState(
        num_known_classes=scenario.initial_num_classes or scenario.num_classes
    )
    strategy.scenario_info = known_view(scenario)
    distributed.attach(strategy, exp.seed, exp.ddp_kwargs)  # DDP; nothing in one process

    bench = scenario.benchmark
    train_stream = list(bench.train_stream)
    n_test = len(list(bench.test_stream))
    results: dict[str, Any] = {
        "config": str(config_path) if config_path else None,
        "work_dir": str(run_dir.parent),
        "run_dir": str(run_dir),
        "seed": exp.seed,
        "device": str(exp.device),
        "distributed": distributed.describe(),
        "versions": versions(),
        "scenario": {
            "type": exp.scenario_type,
            "num_classes": scenario.num_classes,
            "class_names": scenario.class_names,
            "train_stream": stream_summary(bench.train_stream),
            "test_stream": stream_summary(bench.test_stream),
            **{k: v for k, v in scenario.info.items() if k != "type"},
        },
        "experiences": [],
        "accuracy_matrix": [],
        "per_class_accuracy_before_update": None,
    }
    start = 0
    ckpt_cfg = cfg.get("checkpoint_config") or {}
    interval = int(ckpt_cfg.get("interval", 0) or 0)
    at = {"experience": 0, "start": None}  # the experience in training and its start payload
    checkpointer = EpochCheckpointer(
        lambda e: str(
            _save(run_dir, at["experience"], exp, strategy, evaluator, results, e, at["start"])
        ),
        int(ckpt_cfg.get("epoch_interval", 0) or 0),
        stop,
    )
    strategy.plugins.append(checkpointer)  # after the evaluator and clock: epoch fully done
    if checkpoint is not None:
        start = _restore(checkpoint, exp, strategy, evaluator, results, fresh_plugins_ok)
        records.load_state_dict(checkpoint.get("records") or [])  # the last evaluation's
        if checkpoint.get("mid"):
            checkpointer.start_epoch = int(checkpoint["mid"]["epoch"])
            install_mid_experience_resume(
                strategy,
                checkpoint["mid"],
                lambda mid: _restore_mid(mid, checkpoint["plugins"], exp, strategy, evaluator),
            )
            say(f"resuming experience {start + 1} after epoch {checkpoint['mid']['epoch']}")
        say(f"resumed from experience {start} of {len(train_stream)} ({run_dir})")

    discovery_log: list[dict[str, Any]] = results.pop("_discovery_log", None) or []
    known = list(range(scenario.initial_num_classes or scenario.num_classes))
    # A discovery run: some experience's labels are really hidden (the demo's 80+20 split keeps
    # hidden_labels for evaluation but shows its labels: its ids need no mapping).
    hidden = bool(scenario.hidden_labels) and scenario.info.get("hide_novel_labels", True)
    test_name = bench.test_stream.name
    for i in range(start, len(train_stream)):
        experience = train_stream[i]
        say(f"experience {i + 1}/{len(train_stream)}: {len(experience.dataset)} training samples")
        is_last = i == len(train_stream) - 1
        strategy.train_epochs = epochs_for(cfg.cl_strategy.get("train_epochs", 1), i)
        t0 = time.time()
        at["experience"] = i
        at["start"] = copy.deepcopy(_payload(i, exp, strategy, evaluator, results))
        strategy.train(experience)
        train_time = time.time() - t0
        if i in scenario.hidden_labels:
            facts = _discovery_training_facts(strategy, scenario, i)
            discovery_log.append(facts)
            say(f"discovery on experience {i + 1}: {facts['reason']}")
        if is_last and len(train_stream) > 1 and hidden:
            results["per_class_accuracy_before_update"] = results.get("_pca_prev")
        t0 = time.time()
        # The extra streams first: Avalanche's forgetting metrics key experiences by index only, so
        # the test stream must be the last one evaluated for its forgetting values to be its own
        # (the extra streams' forgetting values are dropped from the results: they are not theirs).
        recorder.store, padding.num_classes = records, scenario.num_classes
        try:
            for stream in exp.eval_streams.values():
                strategy.eval(stream)
            strategy.eval(bench.test_stream)
        finally:
            recorder.store, padding.num_classes = None, 0
        eval_time = time.time() - t0
        metrics = _without_foreign_forgetting(
            _float_metrics(evaluator.get_last_metrics()), test_name
        )
        eval_images = sum(len(e.dataset) for e in bench.test_stream) + sum(
            len(e.dataset) for s in exp.eval_streams.values() for e in s
        )
        epochs = int(getattr(strategy, "train_epochs", 1))
        results["experiences"].append(
            {
                "index": i,
                "classes": stream_summary([experience])[0]["classes"],
                "train_time_s": train_time,
                "eval_time_s": eval_time,
                "train_images": len(experience.dataset) * epochs,
                "eval_images": eval_images,
                "train_images_per_s": len(experience.dataset) * epochs / max(train_time, 1e-9),
                "eval_images_per_s": eval_images / max(eval_time, 1e-9),
                "eval": metrics,
            }
        )
        y, p = records.stream(test_name)
        if hidden:
            # Discovered ids mean nothing by themselves: map them to classes (FRoST's mapping from
            # the novel training clusters) before any accuracy is read off predictions.
            mapping = training_mapping(discovery_log, known)
            results["accuracy_matrix"].append(
                _mapped_row(records, test_name, n_test, mapping, known)
            )
            if i + 1 in scenario.hidden_labels and results.get("_floor") is None:
                results["_floor"] = {"predictions": p.tolist()}
            p = torch.from_numpy(map_predictions(p, mapping, known))
        else:
            results["accuracy_matrix"].append(_accuracy_row(metrics, test_name + "_stream", n_test))
        results["_pca_prev"] = per_class_accuracy(y, p, scenario.num_classes)
        if (interval and ((i + 1) % interval == 0 or is_last)) or (stop and not is_last):
            results["_discovery_log"] = discovery_log
            last_records = records if is_last else None
            saved = (
                _save(run_dir, i + 1, exp, strategy, evaluator, results, records=last_records)
                if distributed.is_main()
                else None
            )
            results.pop("_discovery_log", None)
            if stop and not is_last:
                raise Interrupted(int(stop.signum), checkpoint=str(saved))
        say(
            f"experience {i + 1}/{len(train_stream)} done in {train_time:.1f}s; "
            f"test accuracy {_stream_metric(metrics, 'Top1_Acc_Stream', 'test_stream') or 0:.4f}"
        )

    results.pop("_pca_prev", None)
    results = _finalize(
        results, exp, strategy, records, evaluator, discovery_log, run_dir, cfg, t_start
    )
    for logger in strategy.evaluator.loggers:
        if hasattr(logger, "close"):
            logger.close()
    if distributed.is_main():
        _point_latest(run_dir)
    say(f"results: {run_dir / 'results.json'}")
    return results


def epochs_for(plan: int | list | tuple, index: int) -> int:
    """Epochs of experience ``index``: ``cl_strategy.train_epochs`` as an int, or a list (one per
    experience, the last repeated: ``[6, 3]`` = 6 epochs for the base experience, 3 after)."""
    if isinstance(plan, (list, tuple)):
        return int(plan[min(index, len(plan) - 1)])
    return int(plan)


def _discovery_training_facts(strategy, scenario: BuiltScenario, index: int) -> dict[str, Any]:
    """What the discovery plugins did on experience ``index`` (``strategy.ncd.facts()``), with the
    hidden labels (evaluation only) needed to score it."""
    facts: dict[str, Any] = {"experience": index, "true_labels": scenario.hidden_labels[index]}
    state = discovery_state(strategy)
    facts.update(state.facts())
    if state.pool is None or state.pool.experience_index != index:
        for key in ("pool_indices", "all_scores", "threshold", "pseudo_labels", "cluster_of_all"):
            facts.pop(key, None)
        facts["triggered"] = False
        facts["reason"] = "no discovery plugin ran on this experience (no gate in the plugins)"
    return facts


def _without_foreign_forgetting(metrics: dict[str, Any], test_name: str) -> dict[str, Any]:
    """Drops forgetting values of streams other than the test stream: Avalanche keys forgetting by
    experience index only, so another stream's value compares accuracies of different data."""
    return {
        k: v
        for k, v in metrics.items()
        if "Forgetting" not in k.split("/")[0] or f"/{test_name}_stream" in k
    }


def _mapped_row(records, stream: str, n: int, mapping: dict, known: list[int]) -> list:
    """Accuracy of every test experience with discovered ids mapped to classes."""
    row: list[float | None] = []
    for j in range(n):
        y, p = records.experience(stream, j)
        if y.numel() == 0:
            row.append(None)
            continue
        row.append(float((map_predictions(p, mapping, known) == y.numpy()).mean()))
    return row


def known_view(scenario: BuiltScenario) -> dict[str, Any]:
    """The scenario facts training code may see: the known classes and their counts only."""
    known = scenario.initial_num_classes or scenario.num_classes
    counts = scenario.info.get("train_class_counts")
    return {
        "num_known": known,
        "known_classes": list(range(known)),
        "train_class_counts": None if counts is None else list(counts[:known]),
    }


def _save(
    run_dir: Path,
    next_exp: int,
    exp: Experiment,
    strategy,
    evaluator,
    results,
    epoch: int | None = None,
    start: dict | None = None,
    records: RecordStore | None = None,
) -> Path:
    """Writes ``experience_{next_exp}.pth`` or, with ``epoch``, ``experience_{next_exp}_epoch_{epoch}
    .pth`` (``start``: the payload captured when the experience began), and points ``latest.pth``
    at it. ``records``: the evaluation just made, so a resume after the last experience finishes
    the run from the checkpoint alone."""
    payload = _payload(next_exp, exp, strategy, evaluator, results)
    if records is not None:
        payload["records"] = records.state_dict()
    name = f"experience_{next_exp}.pth"
    if epoch is not None:
        mid = {k: payload[k] for k in _MID_KEYS}
        mid.update(epoch=epoch, schedulers=scheduler_states(strategy))
        payload = {**(start or {}), "mid": mid}
        name = f"experience_{next_exp}_epoch_{epoch}.pth"
    ckpt_dir = run_dir / "checkpoints"
    save_checkpoint(ckpt_dir / name, payload, latest=ckpt_dir / "latest.pth")
    return ckpt_dir / name


_MID_KEYS = ("model", "optimizer", "optimizer_param_names", "plugins", "evaluator", "clock", "rng")


def _payload(next_exp: int, exp: Experiment, strategy, evaluator, results) -> dict:
    plugin_states = {}
    for i, plugin in enumerate(strategy.plugins):
        if hasattr(plugin, "state_dict") and not isinstance(plugin, torch.nn.Module):
            plugin_states[_plugin_name(plugin, i)] = plugin.state_dict()
    payload = {
        "next_experience": next_exp,
        "model": exp.model.state_dict(),
        "num_classes": int(getattr(exp.model, "num_classes", 0) or 0),
        "optimizer": strategy.optimizer.state_dict(),
        "optimizer_param_names": _optimizer_param_names(strategy, exp.model),
        "plugins": plugin_states,
        "configured_plugins": [type(p).__name__ for p in exp.plugins],
        "ncd": discovery_state(strategy).state_dict(),
        "evaluator": capture_state(evaluator),
        "clock": capture_state(strategy.clock),
        "rng": get_rng_state(),
        "results": json.loads(json.dumps(to_jsonable(results))),
        "seed": exp.seed,
    }
    return payload


def _optimizer_param_names(strategy, model: torch.nn.Module) -> list[str]:
    """Parameter names in the optimizer's flat order. A classifier replaced by growth after the last
    ``make_optimizer`` is still in the optimizer; Avalanche's ``optimized_param_id`` names it."""
    names = {id(p): n for n, p in (getattr(strategy, "optimized_param_id", None) or {}).items()}
    names.update({id(p): n for n, p in model.named_parameters()})
    return [names.get(id(p), "") for g in strategy.optimizer.param_groups for p in g["params"]]


def _restore_optimizer(strategy, model: torch.nn.Module, state: dict, names: list[str]) -> None:
    """Rebuilds the saved parameter groups on the current parameters, then loads their state.

    State whose shape no longer fits (a classifier that grew since) is dropped, exactly as
    Avalanche's ``update_optimizer`` resets it at the next experience of an uninterrupted run.

    Raises:
        ConfigError: the saved optimizer does not fit the model.
    """
    params = dict(model.named_parameters())
    optimizer = strategy.optimizer
    if any(n not in params for n in names):
        raise ConfigError("--resume: the saved optimizer holds parameters the model does not have")
    template = optimizer.param_groups[0]
    optimizer.param_groups = []
    optimizer.state = collections.defaultdict(dict)
    for group in state["param_groups"]:
        hyper = {k: v for k, v in group.items() if k != "params"}
        optimizer.add_param_group(
            {
                **{k: v for k, v in template.items() if k != "params"},
                **hyper,
                "params": [params[names[i]] for i in group["params"]],
            }
        )
    fixed = {"param_groups": state["param_groups"], "state": {}}
    for index, entry in state["state"].items():
        p = params[names[index]]
        fits = all(
            not isinstance(v, torch.Tensor) or v.dim() == 0 or v.shape == p.shape
            for v in entry.values()
        )
        if fits:
            fixed["state"][index] = entry
    try:
        optimizer.load_state_dict(fixed)
    except ValueError as err:
        raise ConfigError(f"--resume: optimizer state does not fit ({err})") from None
    strategy.optimized_param_id = dict(model.named_parameters())


# Strategies whose only state is the model, optimizer and plugins (which the runner checkpoints).
_RESUMABLE_STRATEGIES = {"Naive", "FromScratchTraining"}
# Plugins a strategy adds itself whose state the runner restores or rebuilds.
_INTERNAL_PLUGINS = {
    "EvaluationPlugin",
    "Clock",
    "PeriodicEval",
    "ExperienceLRScheduler",
    "LossEpochUpdater",
    "LRSchedulerPlugin",
}


def resume_refusal(strategy, configured: list) -> str | None:
    """Why a run of this strategy could not be resumed exactly (None: it can).

    Avalanche strategies other than ``Naive`` keep state of their own (a replay buffer, importance
    weights, a teacher, the accumulated dataset) that has no checkpoint form; resuming them would
    silently start that state from scratch, so ``--resume`` refuses them.
    """
    name = type(strategy).__name__
    if name not in _RESUMABLE_STRATEGIES and not callable(getattr(strategy, "state_dict", None)):
        return f"strategy {name} keeps state of its own that cannot be checkpointed"
    for plugin in strategy.plugins:
        kind = type(plugin).__name__
        if any(plugin is p for p in configured) or kind in _INTERNAL_PLUGINS:
            continue
        if not callable(getattr(plugin, "state_dict", None)):
            return f"strategy {name} uses {kind}, which keeps state that cannot be checkpointed"
    return None


def check_resume_fits(
    ckpt: dict, exp: Experiment, path: Path, fresh_plugins_ok: bool = False
) -> None:
    """Seed and model of a checkpoint against this run's, before anything is written.

    Raises:
        ConfigError: another seed, or model weights whose names or shapes do not fit (the head's
            rows may differ: it grows during a run).
    """
    if ckpt.get("seed") != exp.seed:
        raise ConfigError(
            f"--resume: the checkpoint was made with seed {ckpt.get('seed')}, not {exp.seed}"
        )
    state = ckpt.get("model")
    if not isinstance(state, dict):
        raise ConfigError(f"--resume: {path} holds no model")
    own = exp.model.state_dict()
    grows = ("head.fc.", "active")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        k for k in own if k in state and not k.startswith(grows) and own[k].shape != state[k].shape
    ]
    if exp.resume_refusal:
        raise ConfigError(f"--resume: {exp.resume_refusal}; rerun without --resume")
    saved_types = ckpt.get("configured_plugins")
    own_types = [type(p).__name__ for p in exp.plugins]
    if saved_types is not None and saved_types != own_types and not fresh_plugins_ok:
        # Plugin states are keyed by position: another list shifts the keys of the plugins the
        # strategy appends itself, and the LR scheduler (among others) would silently start fresh.
        raise ConfigError(
            f"--resume: the checkpoint was made with plugins {saved_types or '[]'}, this config "
            f"has {own_types or '[]'}; resume with the run's own config"
        )
    for i, plugin in enumerate(exp.plugins):  # the configured plugins come first
        stateless = type(plugin).__name__ in _STATELESS_PLUGINS
        missing_state = _plugin_name(plugin, i) not in ckpt.get("plugins", {})
        if missing_state and not stateless and not fresh_plugins_ok:
            raise ConfigError(
                f"--resume: plugin {type(plugin).__name__} keeps state that it cannot checkpoint "
                "(no state_dict); rerun without --resume"
            )
    if missing or unexpected or wrong:
        detail = (missing and f"missing {missing[:2]}") or (
            unexpected and f"unexpected {unexpected[:2]}"
        )
        raise ConfigError(
            f"--resume: {path} was made with another model "
            f"({detail or f'shape mismatch for {wrong[:2]}'}); resume with the run's own config"
        )


def _restore(
    ckpt: dict, exp: Experiment, strategy, evaluator, results: dict, fresh_plugins_ok: bool = False
) -> int:
    if ckpt.get("seed") != exp.seed:
        raise ConfigError(
            f"--resume: the checkpoint was made with seed {ckpt.get('seed')}, not {exp.seed}"
        )
    if hasattr(exp.model, "grow"):
        exp.model.grow(int(ckpt.get("num_classes", 0)))
    exp.model.load_state_dict(ckpt["model"])
    exp.model.to(exp.device)
    for i, plugin in enumerate(strategy.plugins):
        name = _plugin_name(plugin, i)
        if name in ckpt["plugins"]:
            plugin.load_state_dict(ckpt["plugins"][name])
        elif (
            any(plugin is p for p in exp.plugins)
            and type(plugin).__name__ not in _STATELESS_PLUGINS
            and not fresh_plugins_ok
        ):
            raise ConfigError(
                f"--resume: plugin {type(plugin).__name__} keeps state that it cannot checkpoint "
                "(no state_dict); rerun without --resume"
            )
    if ckpt.get("ncd") is not None:
        discovery_state(strategy).load_state_dict(ckpt["ncd"])
    _restore_optimizer(strategy, exp.model, ckpt["optimizer"], ckpt["optimizer_param_names"])
    restore_state(evaluator, ckpt["evaluator"])
    restore_state(strategy.clock, ckpt["clock"])
    saved = ckpt["results"]
    results["experiences"] = saved["experiences"]
    results["accuracy_matrix"] = saved["accuracy_matrix"]
    results["_pca_prev"] = saved.get("_pca_prev")
    results["per_class_accuracy_before_update"] = saved.get("per_class_accuracy_before_update")
    results["_floor"] = saved.get("_floor")
    results["_discovery_log"] = saved.get("_discovery_log")
    set_rng_state(ckpt["rng"])
    return int(ckpt["next_experience"])


def _restore_mid(mid: dict, start_plugins: dict, exp: Experiment, strategy, evaluator) -> None:
    """Loads the state after ``mid['epoch']`` epochs, once Avalanche has started the experience."""
    exp.model.load_state_dict(mid["model"])
    _restore_optimizer(strategy, exp.model, mid["optimizer"], mid["optimizer_param_names"])
    load_scheduler_states(strategy, mid["schedulers"])
    for i, plugin in enumerate(strategy.plugins):
        name = _plugin_name(plugin, i)
        if name in mid["plugins"] and differs(mid["plugins"][name], start_plugins.get(name)):
            plugin.load_state_dict(mid["plugins"][name])
    restore_state(evaluator, mid["evaluator"])
    restore_state(strategy.clock, mid["clock"])
    set_rng_state(mid["rng"])


def _finalize(results, exp, strategy, records, evaluator, discovery_log, run_dir, cfg, t_start):
    from avalanche_ext.report import summarize, write_report  # noqa: PLC0415

    scenario = exp.scenario
    last = results["experiences"][-1]["eval"] if results["experiences"] else {}
    results["final"] = {
        "stream_accuracy": _stream_metric(last, "Top1_Acc_Stream", "test_stream"),
        "stream_forgetting": _stream_metric(last, "StreamForgetting", "test_stream"),
    }
    test_name = scenario.benchmark.test_stream.name
    y, p = records.stream(test_name)
    n = scenario.num_classes
    floor = results.pop("_floor", None)
    if scenario.info.get("novel_classes"):
        from avalanche_ext.metrics.discovery import discovery_summary  # noqa: PLC0415

        known = scenario.info["known_classes"]
        results["discovery"] = discovery_summary(
            y,
            p,
            known,
            discovery_log,
            cfg.get("discovery", {}),
            logits_all=records.stream_logits(test_name),
            floor=floor,
        )
        if scenario.hidden_labels and scenario.info.get("hide_novel_labels", True):
            p = torch.from_numpy(map_predictions(p, training_mapping(discovery_log, known), known))
            results["prediction_mapping"] = (
                "discovered ids mapped to classes by FRoST's training-cluster Hungarian matching "
                "before per-class accuracy, the confusion matrix and the accuracy matrix; "
                "unmapped ids count as wrong and are left out of the confusion matrix"
            )
    results["per_class_accuracy"] = per_class_accuracy(y, p, n)
    results["confusion_matrix"] = confusion_matrix(y, p, n)
    total_train = sum(e["train_time_s"] for e in results["experiences"])
    total_eval = sum(e["eval_time_s"] for e in results["experiences"])
    results["timing"] = {
        "total_s": time.time() - t_start,
        "train_s": total_train,
        "eval_s": total_eval,
        "train_images_per_s": sum(e["train_images"] for e in results["experiences"])
        / max(total_train, 1e-9),
        "eval_images_per_s": sum(e["eval_images"] for e in results["experiences"])
        / max(total_eval, 1e-9),
        "device": str(exp.device),
    }
    results["long_tail_config"] = dict(cfg.get("long_tail", {}) or {})
    summarize(results)
    results["artifacts"] = {}
    results["status"] = "completed"
    results = to_jsonable(results)
    if not distributed.is_main():  # rank 0 alone writes
        return results
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, allow_nan=False))
    artifacts = write_report(results, str(run_dir))
    results["artifacts"] = artifacts
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, allow_nan=False))
    return results
