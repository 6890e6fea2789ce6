"""From what the evaluator logged and the recorder stored to the numbers of results.json: the run's
header, one entry per experience, the accuracy-matrix rows and the final block."""

from __future__ import annotations

import platform
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avalanche_ext import distributed
from avalanche_ext.accelerate import precision_name
from avalanche_ext.metrics.discovery import (
    discovery_headline,
    map_predictions,
    training_mapping,
)
from avalanche_ext.metrics.long_tail import confusion_matrix, per_class_accuracy
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.recorder import RecordStore
from avalanche_ext.run_record import RunRecord
from avalanche_ext.scenario import BuiltScenario, stream_summary

__all__ = [
    "accuracy_row",
    "discovery_training_facts",
    "experience_entry",
    "final_results",
    "float_metrics",
    "hides_labels",
    "mapped_row",
    "run_header",
    "score_test_predictions",
    "stream_metric",
    "versions",
    "without_foreign_forgetting",
]

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


def versions() -> dict[str, str]:
    """Python's and the main libraries' versions (results.json records them)."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name.replace("-lib", "").replace("-lite", "")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def float_metrics(values: dict[str, Any]) -> dict[str, Any]:
    """The evaluator's last metrics as floats (and lists); images and other values are dropped."""
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


def without_foreign_forgetting(metrics: dict[str, Any], test_name: str) -> dict[str, Any]:
    """Drops forgetting values of streams other than the test stream: Avalanche keys forgetting by
    experience index only, so another stream's value compares accuracies of different data."""
    return {
        k: v
        for k, v in metrics.items()
        if "Forgetting" not in k.split("/")[0] or f"/{test_name}_stream" in k
    }


def accuracy_row(metrics: dict[str, float], stream: str, n: int) -> list[float | None]:
    """Avalanche's per-experience accuracy on ``stream`` (``n`` experiences; None: not evaluated)."""
    row: list[float | None] = [None] * n
    for name, value in metrics.items():
        m = _ACC_EXP.match(name)
        if m and m.group("stream") == stream and int(m.group("exp")) < n:
            row[int(m.group("exp"))] = float(value)
    return row


def stream_metric(metrics: dict[str, float], prefix: str, stream: str) -> float | None:
    """The value of a stream-level metric (``Top1_Acc_Stream``...) on ``stream``."""
    base = f"{prefix}/eval_phase/{stream}"
    for name, value in metrics.items():
        if name == base or name.startswith(base + "/"):
            return float(value)
    return None


def mapped_row(records: RecordStore, stream: str, n: int, mapping: dict, known: list[int]) -> list:
    """Accuracy of every test experience with discovered ids mapped to classes."""
    row: list[float | None] = []
    for j in range(n):
        y, p = records.experience(stream, j)
        if y.numel() == 0:
            row.append(None)
            continue
        row.append(float((map_predictions(p, mapping, known) == y.numpy()).mean()))
    return row


def experience_entry(
    index: int, experience, timing: tuple[float, float], eval_images: int, epochs: int, metrics
) -> dict[str, Any]:
    """results.json's entry for one trained experience (``timing``: train and eval seconds)."""
    train_time, eval_time = timing
    return {
        "index": index,
        "classes": stream_summary([experience])[0]["classes"],
        "train_time_s": train_time,
        "eval_time_s": eval_time,
        "train_images": len(experience.dataset) * epochs,
        "eval_images": eval_images,
        "train_images_per_s": len(experience.dataset) * epochs / max(train_time, 1e-9),
        "eval_images_per_s": eval_images / max(eval_time, 1e-9),
        "eval": metrics,
    }


def discovery_training_facts(strategy, scenario: BuiltScenario, index: int) -> dict[str, Any]:
    """What the discovery plugins did on experience ``index`` (``strategy.ncd.facts()``), with the
    hidden labels (evaluation only) needed to score it."""
    facts: dict[str, Any] = {"experience": index, "true_labels": scenario.hidden_labels[index]}
    state = discovery_state(strategy)
    facts.update(state.facts())
    if state.pool is None or state.pool.experience_index != index:
        for key in (
            "pool_indices",
            "all_scores",
            "threshold",
            "pseudo_labels",
            "cluster_of_all",
            "head_of_all",
        ):
            facts.pop(key, None)
        facts["triggered"] = False
        facts["reason"] = "no discovery plugin ran on this experience (no gate in the plugins)"
    return facts


def _timing(experiences: list[dict[str, Any]], t_start: float, device: str) -> dict[str, Any]:
    total_train = sum(e["train_time_s"] for e in experiences)
    total_eval = sum(e["eval_time_s"] for e in experiences)
    return {
        "total_s": time.time() - t_start,
        "train_s": total_train,
        "eval_s": total_eval,
        "train_images_per_s": sum(e["train_images"] for e in experiences) / max(total_train, 1e-9),
        "eval_images_per_s": sum(e["eval_images"] for e in experiences) / max(total_eval, 1e-9),
        "device": device,
    }


def final_results(
    record: RunRecord, scenario: BuiltScenario, records: RecordStore, cfg, device: str, t_start
) -> dict[str, Any]:
    """The results dict of a finished run (before the report's summary is added).

    Args:
        record: the run record.
        scenario: the built scenario (its hidden labels score discovery).
        records: the test predictions and logits recorded by the last evaluation.
        cfg: the config (``discovery`` and ``long_tail`` blocks).
        device: the device trained on.
        t_start: when the run started (``time.time()``).
    """
    from avalanche_ext.metrics.discovery import discovery_summary  # noqa: PLC0415

    results = record.results()
    last = record.experiences[-1]["eval"] if record.experiences else {}
    results["final"] = {
        "stream_accuracy": stream_metric(last, "Top1_Acc_Stream", "test_stream"),
        "stream_forgetting": stream_metric(last, "StreamForgetting", "test_stream"),
    }
    test_name = scenario.benchmark.test_stream.name
    y, p = records.stream(test_name)
    if scenario.info.get("novel_classes"):
        known = scenario.info["known_classes"]
        log = record.discovery_log
        results["discovery"] = discovery_summary(
            y,
            p,
            known,
            log,
            cfg.get("discovery", {}),
            logits_all=records.stream_logits(test_name),
            floor=record.floor(),
        )
        if scenario.hidden_labels and scenario.info.get("hide_novel_labels", True):
            results["final"] = discovery_headline(results["final"], results["discovery"])
            p = torch.from_numpy(map_predictions(p, training_mapping(log, known), known))
            results["prediction_mapping"] = (
                "discovered ids mapped to classes by FRoST's training Hungarian matching "
                "before per-class accuracy, the confusion matrix and the accuracy matrix; "
                "unmapped ids count as wrong and are left out of the confusion matrix"
            )
    results["per_class_accuracy"] = per_class_accuracy(y, p, scenario.num_classes)
    results["confusion_matrix"] = confusion_matrix(y, p, scenario.num_classes)
    results["timing"] = _timing(record.experiences, t_start, device)
    results["long_tail_config"] = dict(cfg.get("long_tail", {}) or {})
    return results


def run_header(
    exp, run_dir: Path, config_path: str | None, scenario_type: str | None
) -> dict[str, Any]:
    """What a run is: results.json's first keys.

    Args:
        exp: the :class:`~avalanche_ext.runner.Experiment`.
        run_dir: the run folder.
        config_path: the config file.
        scenario_type: the scenario's registered name.
    """
    scenario = exp.scenario
    bench = scenario.benchmark
    return {
        "config": str(config_path) if config_path else None,
        "work_dir": str(run_dir.parent),
        "run_dir": str(run_dir),
        "seed": exp.seed,
        "device": str(exp.device),
        "precision": precision_name(exp.amp),
        "distributed": distributed.describe(),
        "versions": versions(),
        "scenario": {
            "type": scenario_type,
            "num_classes": scenario.num_classes,
            "class_names": scenario.class_names,
            "train_stream": stream_summary(bench.train_stream),
            "test_stream": stream_summary(bench.test_stream),
            **{k: v for k, v in scenario.info.items() if k != "type"},
        },
    }


def score_test_predictions(
    scenario: BuiltScenario, records: RecordStore, record: RunRecord, metrics, index: int
) -> None:
    """Adds the accuracy-matrix row and the per-class accuracy after experience ``index``.

    Discovered ids mean nothing by themselves: in a discovery run (labels really hidden) they are
    mapped to classes (FRoST's mapping from the novel training clusters) before any accuracy is
    read off predictions; the predictions before the first discovery update are the floor.
    """
    test_name = scenario.benchmark.test_stream.name
    n_test = len(list(scenario.benchmark.test_stream))
    y, p = records.stream(test_name)
    if hides_labels(scenario):
        known = list(range(scenario.initial_num_classes or scenario.num_classes))
        mapping = training_mapping(record.discovery_log, known)
        record.accuracy_matrix.append(mapped_row(records, test_name, n_test, mapping, known))
        if index + 1 in scenario.hidden_labels and record.floor_predictions is None:
            record.floor_predictions = p.tolist()
        p = torch.from_numpy(map_predictions(p, mapping, known))
    else:
        record.accuracy_matrix.append(accuracy_row(metrics, test_name + "_stream", n_test))
    record.last_per_class_accuracy = per_class_accuracy(y, p, scenario.num_classes)


def hides_labels(scenario: BuiltScenario) -> bool:
    """A discovery run: some experience's labels are really hidden (the demo's 80+20 split keeps
    ``hidden_labels`` for evaluation but shows its labels: its ids need no mapping)."""
    return bool(scenario.hidden_labels) and scenario.info.get("hide_novel_labels", True)
