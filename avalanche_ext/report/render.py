"""The per-run report: figures, ``report.md`` and a self-contained ``report.html`` from results.json.

Every section is drawn only when its data is in the results; nothing is required but a dict.
"""

from __future__ import annotations

import os
from typing import Any

from avalanche_ext.metrics.long_tail import top_confused_pairs
from avalanche_ext.metrics.streaming import accuracy_matrix, experience_forgetting
from avalanche_ext.report import plots
from avalanche_ext.report._document import Document, format_percent, format_value
from avalanche_ext.report.summarize import summarize
from avalanche_ext.strict import atomic_write_text

__all__ = ["write_report", "build_document", "FIGURES_DIR"]

FIGURES_DIR = "figures"

_STREAMING_ROWS = (
    ("in_domain", "mean of R[i][i]: accuracy on an experience right after training on it"),
    ("next_domain", "mean of R[i][i+1]: accuracy on the next experience before training on it"),
    ("backward_transfer", "mean of R[i][j], i > j: accuracy on past experiences"),
    ("forward_transfer", "mean of R[i][j], j > i: accuracy on future experiences"),
    ("score", "equal-weight mean of the four above (the defined ones)"),
    ("average_accuracy", "accuracy on the whole test stream after the last experience"),
    ("average_forgetting", "mean of R[j][j] - R[T-1][j] over j < T-1 (Avalanche's definition)"),
)


def _class_names(results: dict[str, Any]) -> list[str]:
    return [str(n) for n in (results.get("scenario") or {}).get("class_names") or []]


def _old_classes(results: dict[str, Any]) -> list[int] | None:
    """Classes known before the last update: the scenario's known classes, else those of earlier
    experiences; None when that does not split the classes (e.g. a domain-incremental stream)."""
    scenario = results.get("scenario") or {}
    if scenario.get("known_classes") and scenario.get("novel_classes"):
        return [int(c) for c in scenario["known_classes"]]
    experiences = [e for e in results.get("experiences") or [] if isinstance(e, dict)]
    if len(experiences) < 2:
        return None
    old = {int(c) for e in experiences[:-1] for c in e.get("classes") or []}
    new = {int(c) for c in experiences[-1].get("classes") or []} - old
    return sorted(old) if old and new else None


def _gate_histogram(gate: dict[str, Any]) -> tuple[str, tuple] | None:
    """The gate's score distributions as ("binned", (bins, known, novel)) or ("raw", (known, novel))."""
    histogram = gate.get("histogram")
    if (
        isinstance(histogram, dict)
        and histogram.get("bins")
        and (histogram.get("known") or histogram.get("novel"))
    ):
        return "binned", (
            histogram["bins"],
            histogram.get("known") or [],
            histogram.get("novel") or [],
        )
    for known_key, novel_key in (
        ("known_scores", "novel_scores"),
        ("known_scores_hist", "novel_scores_hist"),
    ):
        if gate.get(known_key) and gate.get(novel_key):
            return "raw", (gate[known_key], gate[novel_key])
    return None


def _make_figures(results: dict[str, Any], run_dir: str) -> dict[str, str]:
    """Draws every figure the data allows; returns ``{name_png: path relative to run_dir}``."""
    figures: dict[str, str] = {}
    scenario = results.get("scenario") or {}

    def target(name: str) -> str:
        figures[f"{name}_png"] = f"{FIGURES_DIR}/{name}.png"
        return os.path.join(run_dir, FIGURES_DIR, f"{name}.png")

    if results.get("accuracy_matrix"):
        plots.plot_accuracy_matrix(results["accuracy_matrix"], target("accuracy_matrix"))
    if results.get("confusion_matrix"):
        plots.plot_confusion_matrix(
            results["confusion_matrix"], _class_names(results), target("confusion_matrix")
        )
    if results.get("per_class_accuracy"):
        plots.plot_per_class_accuracy(
            results["per_class_accuracy"],
            target("per_class_accuracy"),
            old_classes=_old_classes(results),
            before=results.get("per_class_accuracy_before_update"),
        )
    if scenario.get("train_class_counts"):
        plots.plot_class_counts(scenario["train_class_counts"], target("class_counts"))
    for i, (layer, mask) in enumerate(
        ((results.get("model_doctor") or {}).get("masks") or {}).items()
    ):
        plots.plot_channel_masks(mask, target(f"model_doctor_masks_{i}"), title=layer)
    if results.get("history"):
        plots.plot_history(results["history"], target("history"))
    gate = (results.get("discovery") or {}).get("gate") or {}
    scores = _gate_histogram(gate) if isinstance(gate, dict) else None
    if scores is not None:
        kind, data = scores
        draw = (
            plots.plot_binned_score_histograms if kind == "binned" else plots.plot_score_histograms
        )
        draw(*data, target("gate_scores"), threshold=gate.get("threshold"))
    discovery = results.get("discovery") or {}
    tradeoff = discovery.get("tradeoff") if isinstance(discovery, dict) else None
    if isinstance(tradeoff, dict) and tradeoff.get("old_acc"):
        point = (discovery.get("old_acc"), discovery.get("new_acc"))
        plots.plot_tradeoff(tradeoff, target("tradeoff"), operating_point=point)
    return figures


def _run_facts(doc: Document, results: dict[str, Any]) -> None:
    scenario = results.get("scenario") or {}
    facts = [
        ("config", results.get("config")),
        ("run folder", results.get("run_dir")),
        ("seed", results.get("seed")),
        ("device", results.get("device")),
        ("precision", results.get("precision")),
        ("scenario", scenario.get("type")),
        ("classes", scenario.get("num_classes")),
        ("training experiences", len(scenario.get("train_stream") or []) or None),
        ("total time (s)", (results.get("timing") or {}).get("total_s")),
    ]
    versions = results.get("versions") or {}
    if versions:
        facts.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    rows = [[name, value] for name, value in facts if value not in (None, "")]
    if rows:
        doc.section("Run").table(["", "value"], rows)


def _accuracy_matrix(doc: Document, results: dict[str, Any], figures: dict[str, str]) -> None:
    if not results.get("accuracy_matrix"):
        return
    matrix = accuracy_matrix(results["accuracy_matrix"])
    section = doc.section("Accuracy matrix")
    section.text("R[i][j]: accuracy on test experience j after training experience i.")
    header = ["after exp \\ test exp"] + [str(j) for j in range(matrix.shape[1])]
    section.table(
        header,
        [[str(i)] + [format_percent(v) for v in row] for i, row in enumerate(matrix.tolist())],
    )
    if "accuracy_matrix_png" in figures:
        section.image(figures["accuracy_matrix_png"], "accuracy matrix")


def _history(doc: Document, results: dict[str, Any], figures: dict[str, str]) -> None:
    history = results.get("history") or []
    if not history:
        return
    section = doc.section("Training curves")
    last = history[-1]
    section.text(
        f"{len(history)} epochs over {last.get('num_experiences', '?')} experiences; last epoch: "
        f"training loss {format_value(last.get('train_loss'))}, training accuracy "
        f"{format_percent(last.get('train_accuracy'))}. Every epoch is in results.json "
        "(history) and history.jsonl."
    )
    if "history_png" in figures:
        section.image(figures["history_png"], "per-epoch curves")


def _streaming(doc: Document, results: dict[str, Any]) -> None:
    streaming = results.get("streaming")
    if not streaming:
        return
    rows = [
        [key, format_percent(streaming.get(key)), meaning]
        for key, meaning in _STREAMING_ROWS
        if key in streaming
    ]
    doc.section("Streaming summary").table(["metric", "value", "definition"], rows)


def _final(doc: Document, results: dict[str, Any]) -> None:
    final = results.get("final") or {}
    streaming = results.get("streaming") or {}
    rows = [
        [f"final {k.replace('_', ' ')}", format_percent(v)]
        for k, v in final.items()
        if not isinstance(v, dict | list)
    ]
    if results.get("accuracy_matrix"):
        forgetting = experience_forgetting(results["accuracy_matrix"])
        rows += [
            [f"forgetting of experience {j}", format_percent(v)]
            for j, v in enumerate(forgetting)
            if v is not None
        ]
    if not rows and not streaming:
        return
    section = doc.section("Final accuracy and forgetting")
    if rows:
        section.table(["", "value"], rows)
    section.text(
        "Stream accuracy and forgetting are Avalanche's metrics as logged by the run; "
        "forgetting of experience j is R[j][j] - R[T-1][j]."
    )


def _per_class(
    doc: Document, results: dict[str, Any], figures: dict[str, str], lowest: int = 10
) -> None:
    per_class = results.get("per_class_accuracy")
    if not per_class:
        return
    names = _class_names(results)
    before = results.get("per_class_accuracy_before_update") or []
    counts = (results.get("scenario") or {}).get("train_class_counts") or []
    measured = [(c, a) for c, a in enumerate(per_class) if a is not None]
    section = doc.section("Per-class accuracy")
    missing = len(per_class) - len(measured)
    mean = sum(a for _, a in measured) / len(measured) if measured else None
    section.text(
        f"Mean over {len(measured)} classes with test samples: {format_percent(mean)}"
        + (f"; {missing} classes have no test sample (n/a)." if missing else ".")
    )
    if "per_class_accuracy_png" in figures:
        section.image(figures["per_class_accuracy_png"], "per-class accuracy")
    header = (
        ["class", "name", "accuracy"]
        + (["before update"] if before else [])
        + (["train samples"] if counts else [])
    )
    rows = []
    for cls, acc in sorted(measured, key=lambda item: (item[1], item[0]))[:lowest]:
        row = [str(cls), names[cls] if cls < len(names) else str(cls), format_percent(acc)]
        if before:
            row.append(format_percent(before[cls] if cls < len(before) else None))
        if counts:
            row.append(counts[cls] if cls < len(counts) else None)
        rows.append(row)
    if rows:
        section.text(f"The {len(rows)} classes with the lowest accuracy:")
        section.table(header, rows)


def _confusions(
    doc: Document, results: dict[str, Any], figures: dict[str, str], k: int = 10
) -> None:
    cm = results.get("confusion_matrix")
    if not cm:
        return
    pairs = top_confused_pairs(cm, _class_names(results), k=k)
    section = doc.section("Confusions")
    if "confusion_matrix_png" in figures:
        section.image(figures["confusion_matrix_png"], "confusion matrix")
    if pairs:
        section.text(
            "Most frequent confusions (fraction = share of the true class's test samples):"
        )
        section.table(
            ["true", "predicted", "count", "fraction"],
            [
                [
                    f"{p['true']} ({p['true_id']})",
                    f"{p['predicted']} ({p['predicted_id']})",
                    p["count"],
                    format_percent(p["fraction"]),
                ]
                for p in pairs
            ],
        )
    else:
        section.text("No confusion: every test sample was classified correctly.")


def _long_tail(doc: Document, results: dict[str, Any], figures: dict[str, str]) -> None:
    block = results.get("long_tail")
    if not block and "class_counts_png" not in figures:
        return
    section = doc.section("Long tail")
    if block:
        groups = block.get("groups") or {}
        thresholds = block.get("thresholds") or {}
        rows = [
            [name, len(groups.get(name) or []), format_percent(block.get(f"{name}_acc"))]
            for name in ("many", "medium", "few", "head", "tail")
            if f"{name}_acc" in block
        ]
        if thresholds:
            section.text(
                f"Shot groups: many > {thresholds.get('many')} training samples, "
                f"few < {thresholds.get('few')}, medium in between"
                + (
                    "; head/tail split at the geometric midpoint of the counts."
                    if "head_acc" in block
                    else "."
                )
            )
        section.table(["group", "classes", "accuracy"], rows)
        names = _class_names(results)
        worst = block.get("lowest_recall_class")
        worst_name = (
            f" (class {worst}: {names[worst]})"
            if isinstance(worst, int) and worst < len(names)
            else ""
        )
        section.table(
            ["recall statistic", "value"],
            [
                ["geometric mean", format_percent(block.get("geometric_mean"))],
                ["harmonic mean", format_percent(block.get("harmonic_mean"))],
                ["lowest recall" + worst_name, format_percent(block.get("lowest_recall"))],
            ],
        )
    if "class_counts_png" in figures:
        section.image(figures["class_counts_png"], "training samples per class")


def _scalars(block: dict[str, Any], skip: set[str]) -> list[list[Any]]:
    """Rows for the scalar entries of a block not shown elsewhere (so new fields still appear)."""
    return [
        [key, value]
        for key, value in block.items()
        if key not in skip and isinstance(value, int | float | str | bool)
    ]


_CONVENTION_NAMES = {
    "frost_task_agnostic": "FRoST task-agnostic (primary)",
    "gcd_v2_all_hungarian": "GCD v2: one Hungarian over all classes",
    "new_ids_only_hungarian": "new ids only, Hungarian on novel (UNO-style)",
    "frost_task_aware": "FRoST task-aware (each image told old or novel)",
}


def _discovery(doc: Document, results: dict[str, Any], figures: dict[str, str]) -> None:
    discovery = results.get("discovery")
    if not isinstance(discovery, dict) or not discovery:
        return
    section = doc.section("Novel-class discovery")
    if discovery.get("triggered") is False:
        section.text(
            f"**Discovery did not happen: {discovery.get('reason')}.** The numbers below "
            "are the base model's; nothing was discovered."
        )
    elif discovery.get("reason"):
        section.text(f"Update triggered: {discovery.get('reason')}.")
    _discovery_conventions(section, discovery)
    exemplars = results.get("known_exemplars") or {}
    if exemplars.get("images"):
        section.text(
            f"Not exemplar-free: the update replayed {exemplars['images']} labeled images of "
            f"{exemplars.get('classes')} known classes (FRoST's protocol stores none)."
        )
    section.table(["measure", "value"], _discovery_rates(discovery))
    if discovery.get("cluster_acc_convention"):
        section.text(f"Cluster accuracy: {discovery['cluster_acc_convention']}.")
    if discovery.get("transductive_convention"):
        section.text(f"Transductive accuracy: {discovery['transductive_convention']}.")
    if "tradeoff_png" in figures:
        section.image(figures["tradeoff_png"], "old/new trade-off as the offset sweeps")
    _discovery_gate(section, discovery, figures)


_ACCURACY_KEYS = ("old_acc", "new_acc", "all_acc", "hm")


def _discovery_conventions(section: Any, discovery: dict[str, Any]) -> None:
    conventions = discovery.get("conventions") or {}
    if not conventions:
        return
    floor = discovery.get("floor") or {}
    chance = discovery.get("chance_by_convention") or {}
    rows = []
    for name, values in conventions.items():
        base = floor.get(name) or {}
        level = chance.get(name) or {}
        rows.append(
            [_CONVENTION_NAMES.get(name, name)]
            + [
                f"{format_percent(values.get(k))} (floor {format_percent(base.get(k))}, "
                f"chance {format_percent(level.get(k))})"
                for k in _ACCURACY_KEYS
            ]
        )
    section.table(["convention", "old", "new", "all", "HM (old, new)"], rows)
    section.text(
        "HM: harmonic mean of old and new accuracy (0 for a model that never predicts a new "
        "class). Floor: the base model alone (before any discovery update), under the same "
        "convention. Chance: a uniformly random prediction under that convention. "
        f"Primary convention: {discovery.get('convention_text', '')}."
    )


def _estimated_k_text(discovery: dict[str, Any]) -> str:
    """How an estimated k was found, and a warning when the searched range censored it."""
    searched = discovery.get("k_range")
    if not searched:
        return "estimated from the data"
    text = f"estimated from the data (silhouette over k = {searched[0]}..{searched[1]})"
    edge = discovery.get("k_range_edge")
    if edge:
        text += (
            f"; it is the {edge} end of that range, so the best k may lie outside it "
            "(widen k_range)"
        )
    return text


def _discovery_rates(discovery: dict[str, Any]) -> list[list[str]]:
    k = discovery.get("num_discovered")
    source = discovery.get("k_source")
    k_text = (
        "given in the config (the true number of novel classes)"
        if source == "given"
        else (_estimated_k_text(discovery) if source == "estimated" else "unknown")
    )
    tradeoff = discovery.get("tradeoff") or {}
    rows = [
        ["new classes discovered (k)", f"{format_value(k)}: {k_text}"],
        [
            "novel test images predicted as a new id",
            format_percent(discovery.get("novel_predicted_new")),
        ],
        [
            "known test images predicted as a new id",
            format_percent(discovery.get("known_predicted_new")),
        ],
        [
            "routing AUROC (max new - max old logit, novel vs known test images; chance 50 %)",
            format_percent(discovery.get("routing_auroc")),
        ],
        [
            "old/new trade-off area (offset swept on the test set; 100 % = perfect)",
            format_percent(tradeoff.get("auc")),
        ],
        [
            "cluster accuracy before the update (k-means), all novel discovery samples",
            format_percent(discovery.get("cluster_acc")),
        ],
        [
            "  permutation chance at that sample size",
            format_percent(discovery.get("cluster_chance")),
        ],
        [
            "  NMI / ARI",
            f"{format_value(discovery.get('cluster_nmi'))} / {format_value(discovery.get('cluster_ari'))}",
        ],
        [
            "transductive accuracy after the update (the head's own ids), same samples",
            format_percent(discovery.get("transductive_acc")),
        ],
        ["  permutation chance", format_percent(discovery.get("transductive_chance"))],
    ]
    pooled = (discovery.get("clusters") or {}).get("pooled_novel") or {}
    if pooled.get("acc") is not None:
        rows.append(
            ["cluster accuracy, pooled novel samples only", format_percent(pooled.get("acc"))]
        )
    return rows


def _discovery_gate(section: Any, discovery: dict[str, Any], figures: dict[str, str]) -> None:
    gate = discovery.get("gate")
    if isinstance(gate, dict) and gate:
        shown = ("precision", "recall", "auroc")
        gate_rows = [[f"gate {key}", format_percent(gate.get(key))] for key in shown if key in gate]
        gate_rows.append(["gate AUROC chance", format_percent(gate.get("auroc_chance", 0.5))])
        gate_rows.append(
            [
                "share of novel samples (precision chance)",
                format_percent(gate.get("novel_fraction")),
            ]
        )
        if "threshold" in gate:
            gate_rows.append(["gate threshold", format_value(gate.get("threshold"))])
        extra = _scalars(gate, set(shown) | {"threshold", "auroc_chance", "novel_fraction"})
        gate_rows += [[f"gate {k}", v] for k, v in extra]
        section.table(["gate", "value"], gate_rows)
    if "gate_scores_png" in figures:
        section.image(figures["gate_scores_png"], "gate score histograms")


def _timing(doc: Document, results: dict[str, Any]) -> None:
    experiences = [e for e in results.get("experiences") or [] if isinstance(e, dict)]
    timing = results.get("timing") or {}
    if not experiences and not timing:
        return
    section = doc.section("Timing")
    if experiences:
        rows = []
        for exp in experiences:
            parts = [exp.get("train_time_s"), exp.get("eval_time_s")]
            wall = (
                sum(p for p in parts if isinstance(p, int | float))
                if any(p is not None for p in parts)
                else None
            )
            rows.append(
                [
                    str(exp.get("index", len(rows))),
                    exp.get("train_images"),
                    exp.get("train_time_s"),
                    exp.get("eval_time_s"),
                    wall,
                    exp.get("train_images_per_s"),
                    exp.get("eval_images_per_s"),
                ]
            )
        header = [
            "experience",
            "train images",
            "train (s)",
            "eval (s)",
            "wall (s)",
            "train img/s",
            "eval img/s",
        ]
        section.table(header, rows)
    if timing:
        labels = {
            "total_s": "total time (s)",
            "train_images_per_s": "train images/s",
            "eval_images_per_s": "eval images/s",
        }
        section.table(
            ["total", "value"], [[labels.get(key, key), value] for key, value in timing.items()]
        )


def _model_doctor(doc: Document, results: dict[str, Any], figures: dict[str, str]) -> None:
    block = results.get("model_doctor") or {}
    if not block.get("masks"):
        return
    section = doc.section("Model Doctor: relevant channels per class")
    used = block.get("images_per_class") or []
    section.text(
        f"Kernels sifted on {sum(used)} high-confidence correct training images; "
        f"{len(block.get('constrained_classes') or [])} classes constrained, "
        f"channel loss scale {block.get('loss_scale')}."
    )
    for i, layer in enumerate(block["masks"]):
        if f"model_doctor_masks_{i}_png" in figures:
            section.image(figures[f"model_doctor_masks_{i}_png"], f"relevant channels of {layer}")


def build_document(results: dict[str, Any], figures: dict[str, str] | None = None) -> Document:
    """The report as a :class:`Document` (sections in reading order, absent data skipped).

    Args:
        results: a results dict (derived blocks are used as they are; call :func:`summarize` first).
        figures: ``{name_png: path relative to the report}`` of the figures to embed.

    Returns:
        Document: write it with ``to_markdown()`` / ``to_html(run_dir)``.
    """
    figures = figures or {}
    config = results.get("config")
    title = "Run report" + (f": {os.path.basename(str(config))}" if config else "")
    doc = Document(title)
    _run_facts(doc, results)
    _accuracy_matrix(doc, results, figures)
    _history(doc, results, figures)
    _streaming(doc, results)
    _final(doc, results)
    _per_class(doc, results, figures)
    _confusions(doc, results, figures)
    _long_tail(doc, results, figures)
    _discovery(doc, results, figures)
    _model_doctor(doc, results, figures)
    _timing(doc, results)
    return doc


def write_report(results: dict[str, Any], run_dir: str) -> dict[str, str]:
    """Writes the figures, ``report.md`` and ``report.html`` of one run into ``run_dir``.

    Figures go to ``run_dir/figures/``; ``report.md`` links them, ``report.html`` embeds them as
    base64 data URIs (one file to mail or attach, no external CSS or JS). Derived blocks missing
    from ``results`` are computed for the report (on a copy); the paths written are also merged
    into ``results["artifacts"]`` so the caller can save them in results.json.

    Args:
        results: a results dict following docs/contracts.md; any block may be absent.
        run_dir: output folder (created when missing).

    Returns:
        dict[str, str]: artifact name -> path relative to ``run_dir`` (``accuracy_matrix_png``,
        ``confusion_matrix_png``, ``per_class_accuracy_png``, ``class_counts_png``,
        ``gate_scores_png``, ``tradeoff_png``, ``report_md``, ``report_html``), only for what was written.
    """
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    view = summarize(dict(results))
    artifacts = _make_figures(view, run_dir)
    doc = build_document(view, artifacts)
    atomic_write_text(os.path.join(run_dir, "report.md"), doc.to_markdown())
    atomic_write_text(os.path.join(run_dir, "report.html"), doc.to_html(run_dir))
    artifacts.update(report_md="report.md", report_html="report.html")
    results.setdefault("artifacts", {})
    if isinstance(results["artifacts"], dict):
        results["artifacts"].update(artifacts)
    return artifacts
