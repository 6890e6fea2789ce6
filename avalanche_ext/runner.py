"""The experiment runner: ``run(cfg) -> results``, the API ``train_config.py`` is a thin CLI over.

Builds scenario, model, plugins, evaluator and strategy from the config (so a bad config fails before
anything is written), then trains over the stream, evaluating after each experience. The rooms it
delegates to: :mod:`~avalanche_ext.run_folder` (run folders), :mod:`~avalanche_ext.run_record` (what
the run has measured), :mod:`~avalanche_ext.run_results` (metrics to results.json),
:mod:`~avalanche_ext.rig` (the equipped strategy), :mod:`~avalanche_ext.checkpointer` (save,
fit-check, restore) and :mod:`~avalanche_ext.signals`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config

from avalanche_ext import builders, distributed, run_folder, schedulers
from avalanche_ext import run_results as rr
from avalanche_ext.accelerate import amp_dtype
from avalanche_ext.checkpoint import load_checkpoint
from avalanche_ext.checkpointer import Checkpointer, check_fits, load_weights, resume_refusal
from avalanche_ext.config import check_epoch_plan
from avalanche_ext.failures import recording_failures
from avalanche_ext.history import HISTORY_FILE, EpochHistory, test_evaluation
from avalanche_ext.ncd_state import DiscoveryState
from avalanche_ext.probe import probe_model, probe_plugins
from avalanche_ext.registry import LOGGERS, check_arguments, resolve_type
from avalanche_ext.resume_config import check_resume_config
from avalanche_ext.rig import Rig, equip
from avalanche_ext.run_folder import find_resume_checkpoint, make_run_dir
from avalanche_ext.run_record import RunRecord
from avalanche_ext.runtime import parse_runtime, resolve_device, seed_everything
from avalanche_ext.scenario import BuiltScenario, known_view, select_eval_streams, stream_summary
from avalanche_ext.signals import Interrupted, StopRequest
from avalanche_ext.strict import dump_config, scenario_config
from avalanche_ext.utils.jsonable import to_jsonable

__all__ = [
    "Experiment",
    "find_resume_checkpoint",
    "load_weights",
    "make_run_dir",
    "resolve_device",
    "run",
]


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
        self.amp = amp_dtype(self.runtime.amp, self.device)  # refuses what the device cannot do
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
        self.eval_streams = select_eval_streams(self.scenario, cfg.get("eval_streams"))
        self.history_test = test_evaluation(cfg, self.scenario, self.device)  # history.test_every
        self.plugins = builders.build_plugins(cfg.cl_strategy.get("plugins"), seed=self.seed)
        self.ddp_kwargs = distributed.wrapper_kwargs(cfg.get("model_wrapper_cfg"))
        # Build (and drop) the strategy once, so every key is checked before anything is written;
        # loggers are only resolved here: constructing them would create files.
        for i, logger in enumerate(cfg.get("loggers") or []):
            cls = resolve_type(LOGGERS, str(logger.get("type")), f"loggers[{i}]")
            check_arguments(cls, {k: v for k, v in logger.items() if k != "type"}, f"loggers[{i}]")
        with warnings.catch_warnings():  # "No loggers specified": it logs nothing on purpose
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
        """A throwaway strategy around copies, equipped as :func:`~avalanche_ext.rig.equip` equips the real one."""
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
    checkpoint, run_dir = _open_run(exp, work, resume, fresh_plugins_ok, say)
    if checkpoint is not None:
        check_resume_config(run_dir, cfg, resume_with_changes, say, distributed.is_main())
    say(f"run folder: {run_dir}")
    try:
        with recording_failures(run_dir, config_path, distributed.is_main()), StopRequest() as stop:
            return _train(exp, run_dir, checkpoint, config_path, say, t_start, stop)
    except Interrupted as err:
        err.run_dir = str(run_dir)
        if distributed.is_main():
            say(run_folder.write_interrupted(err, run_dir, config_path))
        raise
    except BaseException:
        if distributed.is_main() and checkpoint is None and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise


def _open_run(
    exp: Experiment, work: Path, resume, fresh_plugins_ok: bool, say: Callable[[str], None]
) -> tuple[dict | None, Path]:
    """A new run folder, or the checked checkpoint to resume and its run folder."""
    if not resume:
        return None, distributed.run_on_main(make_run_dir, work)  # rank 0 alone writes
    where = None if resume is True else resume
    path = distributed.run_on_main(find_resume_checkpoint, where, work, say)
    ckpt = distributed.load_on_every_rank(path, lambda p: load_checkpoint(p, key="--resume"))
    check_fits(
        ckpt,
        path,
        seed=exp.seed,
        model=exp.model,
        plugins=exp.plugins,
        refusal=exp.resume_refusal,
        fresh_plugins_ok=fresh_plugins_ok,
    )
    return ckpt, path.parent.parent


def _train(exp, run_dir, checkpoint, config_path, say, t_start, stop) -> dict[str, Any]:
    """Trains the stream from the checkpoint's experience (or the first), evaluating after each."""
    if checkpoint is None and distributed.is_main():
        dump_config(exp.cfg, run_dir / "config.py")
    rig = equip(exp, run_dir, say)
    record = RunRecord(header=rr.run_header(exp, run_dir, config_path, exp.scenario_type))
    every = exp.cfg.get("checkpoint_config") or {}
    stream = list(exp.scenario.benchmark.train_stream)
    history_file = run_dir / HISTORY_FILE if distributed.is_main() else None
    # before the checkpointer (which appends its own plugin): an epoch checkpoint holds the epoch
    rig.strategy.plugins.append(
        EpochHistory(record.history, history_file, len(stream), exp.history_test)
    )
    checkpointer = Checkpointer(
        run_dir, exp.model, exp.plugins, exp.seed, rig.strategy, rig.evaluator, record, stop,
        interval=int(every.get("interval", 0) or 0),
        epoch_interval=int(every.get("epoch_interval", 0) or 0), records=rig.records,
    )  # fmt: skip
    start = 0
    if checkpoint is not None:
        start = checkpointer.restore(checkpoint, exp.device)
        if checkpoint.get("mid"):
            say(f"resuming experience {start + 1} after epoch {checkpoint['mid']['epoch']}")
        say(f"resumed from experience {start} of {len(stream)} ({run_dir})")
    for i in range(start, len(stream)):
        is_last = i == len(stream) - 1
        say(f"experience {i + 1}/{len(stream)}: {len(stream[i].dataset)} training samples")
        checkpointer.begin_experience(i)
        train_time = _train_experience(exp, rig.strategy, record, stream[i], i, say)
        if is_last and len(stream) > 1 and rr.hides_labels(exp.scenario):
            record.per_class_accuracy_before_update = record.last_per_class_accuracy
        metrics, eval_time, eval_images = _evaluate(exp, rig)
        epochs = int(getattr(rig.strategy, "train_epochs", 1))
        timing = (train_time, eval_time)
        record.experiences.append(
            rr.experience_entry(i, stream[i], timing, eval_images, epochs, metrics)
        )
        rr.score_test_predictions(exp.scenario, rig.records, record, metrics, i)
        checkpointer.after_experience(i, is_last, writes=distributed.is_main())
        accuracy = rr.stream_metric(metrics, "Top1_Acc_Stream", "test_stream") or 0
        say(f"experience {i + 1}/{len(stream)} done in {train_time:.1f}s; "
            f"test accuracy {accuracy:.4f}")  # fmt: skip
    return _finish(exp, rig, record, run_dir, t_start, say)


def _train_experience(exp: Experiment, strategy, record: RunRecord, experience, i: int, say):
    """Trains one experience; returns the seconds it took. A hidden-label experience's discovery
    facts go to the record."""
    strategy.train_epochs = schedulers.epochs_for(exp.cfg.cl_strategy.get("train_epochs", 1), i)
    t0 = time.time()
    strategy.train(experience)
    train_time = time.time() - t0
    if i in exp.scenario.hidden_labels:
        facts = rr.discovery_training_facts(strategy, exp.scenario, i)
        record.discovery_log.append(facts)
        say(f"discovery on experience {i + 1}: {facts['reason']}")
    return train_time


def _evaluate(exp: Experiment, rig: Rig) -> tuple[dict[str, Any], float, int]:
    """Evaluates every stream; returns the test metrics, the seconds and the images it took.

    The extra streams first: Avalanche's forgetting metrics key experiences by index only, so the
    test stream must be the last one evaluated for its forgetting values to be its own (the extra
    streams' forgetting values are dropped from the results: they are not theirs).
    """
    test = exp.scenario.benchmark.test_stream
    t0 = time.time()
    rig.recorder.store, rig.padding.num_classes = rig.records, exp.scenario.num_classes
    try:
        for stream in exp.eval_streams.values():
            rig.strategy.eval(stream)
        rig.strategy.eval(test)
    finally:
        rig.recorder.store, rig.padding.num_classes = None, 0
    eval_time = time.time() - t0
    metrics = rr.without_foreign_forgetting(
        rr.float_metrics(rig.evaluator.get_last_metrics()), test.name
    )
    images = sum(len(e.dataset) for e in test)
    images += sum(len(e.dataset) for s in exp.eval_streams.values() for e in s)
    return metrics, eval_time, images


def _finish(exp, rig: Rig, record: RunRecord, run_dir: Path, t_start: float, say) -> dict:
    """The final results: written with the report by rank 0; loggers closed, ``latest`` moved."""
    from avalanche_ext.plugin_helpers import plugin_results  # noqa: PLC0415
    from avalanche_ext.report import summarize, write_report  # noqa: PLC0415

    results = rr.final_results(record, exp.scenario, rig.records, exp.cfg, str(exp.device), t_start)
    results.update(plugin_results(rig.strategy))
    summarize(results)
    results.update(artifacts={}, status="completed")
    results = to_jsonable(results)
    if distributed.is_main():  # rank 0 alone writes
        results["artifacts"] = run_folder.write_results(results, run_dir, write_report)
    for logger in rig.strategy.evaluator.loggers:
        if hasattr(logger, "close"):
            logger.close()
    if distributed.is_main():
        run_folder.point_latest(run_dir)
    say(f"results: {run_dir / 'results.json'}")
    return results
