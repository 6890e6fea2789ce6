"""What each stage of the discovery pipeline adds: one base model, one dataset, every variant.

    python benchmarks/ncd_ablation.py [--config CONFIG] [--seeds 0] [--out DIR] [--write-results]
        [--base-checkpoint RUN/checkpoints/experience_1.pth] [--no-plain] [--only VARIANT ...]
        [--cfg-options KEY=VALUE ...]

1. The plain baseline (``ncd_plain_baseline.py``: one PyTorch script, no framework) trains the same
   model for the same epochs on the same base images (equal minutes).
2. The flagship config runs once through the project (base experience + full pipeline); its
   checkpoint after the base experience is the shared start of every other variant.
3. Each variant resumes that checkpoint with different discovery plugins and trains only the
   discovery experience: no update (the floor), an oracle gate (the true novelty of every sample,
   given by this script from the hidden labels: evaluation code, not the pipeline), no gate (every
   discovery sample pooled), clustering the pool only, semi-supervised k-means with the known
   prototypes fixed, no replay, no calibration,
   the LwF baseline (CE on k-means pseudo-labels + LwF distillation, whole network trained) and the
   full pipeline.

Prints a markdown table (old/new/all under FRoST's task-agnostic convention, cluster accuracy with
its permutation chance, gate AUROC, share of novel test images given a new id, the final head's
old-vs-new routing AUROC on the test set, all-class accuracy under FRoST's task-aware convention
(each image told old or novel: what a perfect router would give), seconds) and, with
``--write-results``, appends it to ``benchmarks/RESULTS.md`` with the machine's CPU model.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import avalanche_ext  # noqa: E402, F401
from avalanche_ext.config import load_config  # noqa: E402
from avalanche_ext.registry import PLUGINS  # noqa: E402
from strategies.confidence_gate import ConfidenceGatedPoolPlugin  # noqa: E402

DEFAULT_CONFIG = "configs/ncd/ncd_resnet14_cpu-24e_cifar100-80+20lt.py"
GATE, CLUSTER = "ConfidenceGatedPoolPlugin", "PseudoLabelClusteringPlugin"
NOVEL, TEACHER = "NovelHeadUpdatePlugin", "DualTeacherDistillationPlugin"
EXEMPLARS = "KnownExemplarReplayPlugin"


@PLUGINS.register_module(force=True)
class OracleGatePlugin(ConfidenceGatedPoolPlugin):
    """The gate with perfect novelty: pools exactly the truly novel samples (ablation only).

    ``OracleGatePlugin.truth`` (set by this script from the scenario's hidden labels) maps the
    discovery experience's sample index to True for novel samples. The scores it reports are the
    truth itself (AUROC 1), so the row shows what a perfect gate would give the later stages.
    """

    truth: torch.Tensor | None = None

    def score_outputs(self, state, logits, features):
        if OracleGatePlugin.truth is None or OracleGatePlugin.truth.numel() != logits.shape[0]:
            return super().score_outputs(state, logits, features)
        return OracleGatePlugin.truth.float()

    def _gate(self, strategy):
        original = self.threshold, self.calibrated_threshold
        self.threshold, self.calibrated_threshold = 0.5, None
        try:
            super()._gate(strategy)
        finally:
            self.threshold, self.calibrated_threshold = original


def _plugins(cfg) -> list[dict]:
    return [dict(p) for p in cfg.cl_strategy.plugins]


def _edit(plugins: list[dict], kind: str, **changes: Any) -> list[dict]:
    """A copy of ``plugins`` with ``changes`` applied to the plugin of type ``kind``."""
    out = copy.deepcopy(plugins)
    for plugin in out:
        if plugin["type"] == kind:
            plugin.update(changes)
    return out


def _without(plugins: list[dict], kind: str) -> list[dict]:
    return [copy.deepcopy(p) for p in plugins if p["type"] != kind]


def variants(cfg) -> dict[str, list[dict] | None]:
    """Variant name -> discovery plugins (None: the config's own run)."""
    full = _plugins(cfg)
    epochs = cfg.cl_strategy.train_epochs
    update_epochs = int(epochs[-1]) if isinstance(epochs, (list, tuple)) else int(epochs)
    head_only = _edit(
        _without(full, NOVEL), TEACHER, classifier_epochs=update_epochs, feature_weight=0.0
    )
    lwf = _without(_without(_without(full, NOVEL), TEACHER), EXEMPLARS)
    lwf.insert(2, dict(type="LwFPlugin", alpha=1.0, temperature=2.0))
    return {
        "config as shipped": None,
        "no update (floor)": _edit(full, GATE, trigger_size=10**9, min_fill=1.0),
        "head-only update (no novel head, backbone frozen)": head_only,
        "k estimated (silhouette over 10..40)": _edit(
            full, CLUSTER, num_clusters=None, k_range=[10, 40]
        ),
        "novel head, backbone frozen": _edit(full, NOVEL, trainable=["head"]),
        "operating point: routing estimated on the pool only": _edit(
            full, TEACHER, routing_estimate="pool"
        ),
        "operating point: 10 % known false-novel rate": _edit(
            full, TEACHER, calibration_objective="known_false_novel_rate",
            known_false_novel_rate=0.1,
        ),
        "gate: 80 % of held-out known images kept known": _edit(
            full, GATE, target_known_recall=0.8
        ),
        "gate: 70 % of held-out known images kept known": _edit(
            full, GATE, target_known_recall=0.7
        ),
        "gate: max softmax probability": _edit(full, GATE, score="msp", score_kwargs={}),
        "gate: Mahalanobis distance": _edit(full, GATE, score="mahalanobis", score_kwargs={}),
        "clustering: known prototypes as fixed centres": _edit(full, CLUSTER, known_centres=True),
        "objective: pairwise": _edit(full, NOVEL, objective="pairwise"),
        "pseudo-labels refreshed online": _edit(full, NOVEL, refresh_labels=True),
        "no feature distillation": _edit(full, TEACHER, feature_weight=0.0),
        "no prototype replay": _edit(full, TEACHER, replay_weight=0.0),
        "no old-logit distillation": _edit(full, TEACHER, alpha_old=0.0),
        "objective: swapped + pairwise": _edit(full, NOVEL, objective="swapped+pairwise"),
        "no operating-point calibration": _edit(full, TEACHER, calibrate_new_bias=False),
        "no known exemplar replay": _without(full, EXEMPLARS),
        "operating point: HM within a 5-point old-class budget": _edit(
            full, TEACHER, calibration_objective="hm_within_old_budget", max_old_drop=0.05
        ),
        "LwF baseline": lwf,
    }  # fmt: skip


def _task_aware_all(conventions: dict | None) -> float | None:
    """All-class accuracy under FRoST's task-aware convention in a conventions block."""
    return ((conventions or {}).get("frost_task_aware") or {}).get("all_acc")


def _row(name: str, results: dict, seconds: float) -> dict[str, Any]:
    d = results.get("discovery") or {}
    gate = d.get("gate") or {}
    estimate = ((d.get("operating_point") or {}).get("validation_estimate") or {}).get("hm")
    if name.startswith("no update"):
        floor = (d.get("floor") or {}).get("frost_task_agnostic") or {}
        return {
            "variant": name,
            **{k: floor.get(k) for k in ("old_acc", "new_acc", "all_acc", "hm")},
            "auroc": gate.get("auroc"),
            "cluster_acc": d.get("cluster_acc"),
            "novel_predicted_new": 0.0,
            "task_aware_all": _task_aware_all(d.get("floor")),
            "seconds": seconds,
        }
    return {
        "variant": name,
        "old_acc": d.get("old_acc"),
        "new_acc": d.get("new_acc"),
        "all_acc": d.get("all_acc"),
        "hm": d.get("hm"),
        "validation_hm": estimate,
        "tradeoff_auc": (d.get("tradeoff") or {}).get("auc"),
        "cluster_acc": d.get("cluster_acc"),
        "transductive_acc": d.get("transductive_acc"),
        "auroc": gate.get("auroc"),
        "num_discovered": d.get("num_discovered"),
        "novel_predicted_new": d.get("novel_predicted_new"),
        "routing_auroc": d.get("routing_auroc"),
        "task_aware_all": _task_aware_all(d.get("conventions")),
        "seconds": seconds,
    }


def _plain_baseline(cfg, seed: int) -> dict[str, Any]:
    """The plain baseline (``ncd_plain_baseline.py``): same model, epochs and base images."""
    import ncd_plain_baseline  # noqa: PLC0415

    epochs = cfg.cl_strategy.train_epochs
    epochs = epochs[0] if isinstance(epochs, (list, tuple)) else epochs
    scen = cfg.scenario
    args = [
        f"--epochs={epochs}",
        f"--depth={cfg.model.backbone.depth}",
        f"--seed={seed}",
        f"--imbalance-ratio={scen.imbalance_ratio}",
        f"--lr={cfg.cl_strategy.optimizer.lr}",
    ]
    if scen.get("train_subset"):
        args.append(f"--train-subset={scen.train_subset}")
    t0 = time.time()
    base = ncd_plain_baseline.main(args)
    return {
        "variant": "plain baseline (script)",
        "old_acc": base["known_acc"],
        "cluster_acc": base["novel_cluster_acc_discovery"],
        "auroc": base["msp_auroc"],
        "seconds": time.time() - t0,
    }


def _resume_variant(cfg, cfg_path, seed, out: Path, name, plugins, ckpt: Path) -> dict[str, Any]:
    """One variant: the shared base checkpoint resumed with other discovery plugins."""
    from avalanche_ext.runner import run  # noqa: PLC0415

    slug = name.split(" (")[0].replace(" ", "_").replace(":", "").replace("%", "pct")
    run_dir = out / slug / "from_base"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, run_dir / "checkpoints" / "latest.pth")
    shutil.copy(ckpt.parents[1] / "config.py", run_dir / "config.py")
    vcfg = cfg.copy()
    vcfg.cl_strategy.plugins = plugins
    t0 = time.time()
    result = run(
        vcfg,
        work_dir=str(out / slug),
        seed=seed,
        resume=str(run_dir / "checkpoints" / "latest.pth"),
        config_path=cfg_path,
        fresh_plugins_ok=True,
        resume_with_changes=True,  # the variant changes the plugins on purpose
    )
    return _row(name, result, time.time() - t0)


def run_seed(
    cfg_path: str,
    seed: int,
    out: Path,
    quick: dict | None,
    base: str | None,
    plain: bool,
    only: list[str] | None = None,
) -> list[dict[str, Any]]:
    from avalanche_ext.builders import build_scenario  # noqa: PLC0415
    from avalanche_ext.runner import run  # noqa: PLC0415

    cfg = load_config(cfg_path, quick)
    rows = [_plain_baseline(cfg, seed)] if plain else []
    cfg.checkpoint_config = dict(interval=1)
    truth = build_scenario(cfg.scenario).hidden_labels[1]
    OracleGatePlugin.truth = truth >= int(cfg.model.head.num_classes)
    if base is None:  # the config's own run, checkpointed after the base experience
        t0 = time.time()
        full = run(cfg.copy(), work_dir=str(out / "full"), seed=seed, config_path=cfg_path)
        full_s = time.time() - t0
        base_s = full["experiences"][0]["train_time_s"] + full["experiences"][0]["eval_time_s"]
        ckpt = Path(full["run_dir"]) / "checkpoints" / "experience_1.pth"
    else:  # a base checkpoint of the same config and seed, made before
        ckpt, full, base_s = Path(base), None, None
    for name, plugins in variants(cfg).items():
        if only and name not in only:
            continue
        if plugins is None and full is not None:
            rows.append(_row(name, full, full_s - base_s))
            continue
        plugins = _plugins(cfg) if plugins is None else plugins
        rows.append(_resume_variant(cfg, cfg_path, seed, out, name, plugins, ckpt))
    for row in rows:
        row["base_s"] = base_s
    return rows


def _fmt(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


_COLUMNS = (
    ("old_acc", "old"),
    ("new_acc", "new"),
    ("all_acc", "all"),
    ("hm", "HM"),
    ("validation_hm", "HM, validation estimate (no test label)"),
    ("tradeoff_auc", "trade-off area"),
    ("cluster_acc", "k-means acc (before)"),
    ("transductive_acc", "head's transductive acc (after)"),
    ("auroc", "gate AUROC"),
    ("num_discovered", "k"),
    ("routing_auroc", "routing AUROC"),
    ("task_aware_all", "all, task-aware"),
    ("seconds", "s"),
)


def table(all_rows: list[list[dict[str, Any]]]) -> str:
    names = [r["variant"] for r in all_rows[0]]
    head = "| variant | " + " | ".join(title for _, title in _COLUMNS) + " |"
    lines = [head, "|---|" + "--:|" * len(_COLUMNS)]
    for i, name in enumerate(names):
        cells = []
        for key, _ in _COLUMNS:
            values = [rows[i].get(key) for rows in all_rows]
            if key == "seconds":
                cells.append(f"{statistics.mean(values):.0f}")
            elif key == "num_discovered":
                cells.append("" if values[0] is None else str(values[0]))
            else:
                cells.append(_fmt(values))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def add_cfg_options(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options KEY=VALUE ...``: config overrides for every variant (train_config.py's form)."""
    from mmengine.config import DictAction  # noqa: PLC0415  (after avalanche_ext's fixes)

    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default={},
        help="config overrides for every variant (key=value, as train_config.py takes them)",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default="work_dirs/ncd_ablation")
    ap.add_argument("--quick", action="store_true", help="tiny subset (a smoke run, minutes)")
    ap.add_argument("--write-results", action="store_true", help="append to benchmarks/RESULTS.md")
    ap.add_argument(
        "--base-checkpoint",
        help="experience_1.pth of an earlier run of the same config and seed: skip the base",
    )
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-baseline script")
    ap.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants (names)")
    add_cfg_options(ap)
    args = ap.parse_args(argv)
    unknown = set(args.only or ()) - set(variants(load_config(args.config)))
    if unknown:
        ap.error(f"--only: unknown variant(s) {sorted(unknown)}")
    quick = None
    if args.quick:
        quick = {
            "scenario.train_subset": 60,
            "scenario.test_subset": 20,
            "cl_strategy.train_epochs": [2, 2],
            "cl_strategy.plugins.0.trigger_size": 50,
        }
    overrides = {**(quick or {}), **args.cfg_options} or None
    t0 = time.time()
    all_rows = [
        run_seed(
            args.config,
            s,
            Path(args.out) / f"seed_{s}",
            overrides,
            args.base_checkpoint,
            not args.no_plain,
            args.only,
        )
        for s in args.seeds
    ]
    text = table(all_rows)
    bases = [r[0]["base_s"] for r in all_rows if r[0].get("base_s") is not None]
    base_s = statistics.mean(bases) if bases else float("nan")
    note = (
        f"\n\nMachine: {cpu_model()}, {torch.get_num_threads()} threads. Seeds {args.seeds}. "
        f"Shared base experience (train + eval): {base_s:.0f} s; the seconds column is each "
        "variant's discovery phase (plain baseline: its whole script). Old/new/all: FRoST's "
        "task-agnostic convention (mapping from the novel training clusters, joint head, no test "
        "matching); the plain baseline has no joint head (old = its known accuracy). Whole "
        f"benchmark: {time.time() - t0:.0f} s.\n"
    )
    print(text + note)
    (Path(args.out) / "ablation.json").write_text(json.dumps(all_rows, indent=2))
    if args.write_results:
        cmd = "python benchmarks/ncd_ablation.py " + " ".join(argv or sys.argv[1:])
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(f"\n## Discovery ablation (`{cmd.strip()}`)\n\n{text}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
