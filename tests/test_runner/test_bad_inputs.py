"""Bad inputs a new user makes (config, command line, data, checkpoints): each ends with exit 2 and
one ``error:`` line naming the key or path, and an earlier run's files stay byte-identical.

The cases call ``train_config.main(argv)`` in-process (same code path as the CLI, seconds instead
of a process start per case); ``test_cli.py`` covers the real subprocess."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import train_config
from avalanche_ext.config import load_config
from avalanche_ext.runner import run
from tests.conftest import SYNTHETIC_CONFIG, TINY_OPTIONS

S = str(SYNTHETIC_CONFIG)
TINY = TINY_OPTIONS


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """A work dir holding one finished run (with checkpoints) and bad files to feed in."""
    work = tmp_path_factory.mktemp("work")
    opts = train_config.parse_args([S, "--cfg-options", *TINY]).cfg_options
    run(load_config(S, opts), work_dir=str(work))
    bad = tmp_path_factory.mktemp("bad")
    ckpt = next(work.glob("*/checkpoints/latest.pth"))
    data = ckpt.read_bytes()
    (bad / "truncated.pth").write_bytes(data[: len(data) // 3])
    torch.save({"weight": torch.zeros(2)}, bad / "foreign.pth")
    (bad / "syntax.py").write_text("model = dict(\n")
    (bad / "no_model.py").write_text(f"_base_ = [{S!r}]\nmodel = None\n")
    (bad / "no_type.py").write_text(f"_base_ = [{S!r}]\nscenario = dict(_delete_=True, seed=0)\n")
    (bad / "a_file").write_text("not a folder")
    (bad / "cycle_a.py").write_text(f"_base_ = ['cycle_b.py', {S!r}]\n")
    (bad / "cycle_b.py").write_text("_base_ = ['cycle_a.py']\n")
    return work


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _bad(earlier: Path) -> Path:
    return earlier.parent / earlier.name.replace("work", "bad")


def _run_dir(earlier: Path) -> str:
    return str(next(earlier.glob("*/checkpoints/latest.pth")).parent.parent)


# (id, argv after the config, text the error line must contain). "{bad}" / "{run}" are filled in.
CASES = [
    # --- config: keys and values
    (
        "unknown-top-level-key",
        ["--cfg-options", "chekpoint_config.interval=1"],
        "did you mean 'checkpoint_config'",
    ),
    (
        "unknown-checkpoint-key",
        ["--cfg-options", "checkpoint_config.intervall=1"],
        "checkpoint_config.intervall",
    ),
    (
        "negative-epoch-interval",
        ["--cfg-options", "checkpoint_config.epoch_interval=-1"],
        "checkpoint_config.epoch_interval",
    ),
    ("zero-epochs", ["--cfg-options", "cl_strategy.train_epochs=0"], "cl_strategy.train_epochs"),
    (
        "string-batch-size",
        ["--cfg-options", "cl_strategy.train_mb_size=big"],
        "cl_strategy.train_mb_size",
    ),
    ("string-seed", ["--cfg-options", "seed=abc"], "seed"),
    ("unknown-strategy", ["--cfg-options", "cl_strategy.type=Naiv"], "did you mean 'Naive'"),
    (
        "strategy-typo-argument",
        ["--cfg-options", "cl_strategy.train_epoch=1"],
        "cl_strategy.train_epoch",
    ),
    (
        "model-doctor-unknown-layer",
        "leaf:cl_strategy = dict(plugins=[dict(type='ModelDoctorPlugin', layers=['backbone.layer9'])])",
        "cl_strategy.plugins.layers",
    ),
    (
        "model-doctor-class-out-of-range",
        "leaf:cl_strategy = dict(plugins=[dict(type='ModelDoctorPlugin', classes=[0, 60], epochs=0)])",
        "cl_strategy.plugins.classes",
    ),
    (
        "model-doctor-negative-loss-scale",
        "leaf:cl_strategy = dict(plugins=[dict(type='ModelDoctorPlugin', loss_scale=-1)])",
        "cl_strategy.plugins.loss_scale",
    ),
    (
        "unknown-plugin",
        "leaf:cl_strategy = dict(plugins=[dict(type='EWCPlugn')])",
        "cl_strategy.plugins[0].type",
    ),
    (
        "plugin-typo-argument",
        "leaf:cl_strategy = dict(plugins=[dict(type='EWCPlugin', ewc_lamda=1)])",
        "'ewc_lambda'",
    ),
    (
        "transform-typo-argument",
        "leaf:train_pipeline = [dict(type='RandomCrop', sizee=8)]",
        "train_pipeline[0].sizee",
    ),
    (
        "unknown-transform",
        ["--cfg-options", "test_pipeline.0.type=ToTensr"],
        "test_pipeline[0].type",
    ),
    (
        "optimizer-typo-argument",
        ["--cfg-options", "cl_strategy.optimizer.momentun=0.9"],
        "'momentum'",
    ),
    (
        "unknown-optimizer",
        ["--cfg-options", "cl_strategy.optimizer.type=SDG"],
        "cl_strategy.optimizer.type",
    ),
    (
        "unknown-loss",
        ["--cfg-options", "cl_strategy.loss.type=CrossEntropyLos"],
        "cl_strategy.loss.type",
    ),
    (
        "scheduler-missing-key",
        ["--cfg-options", "cl_strategy.scheduler.type=OneCycleLR"],
        "'max_lr'",
    ),
    (
        "unknown-scheduler",
        ["--cfg-options", "cl_strategy.scheduler.type=StepLRR"],
        "cl_strategy.scheduler.type",
    ),
    ("unknown-metric", ["--cfg-options", "metrics.0.type=acuracy_metrics"], "metrics[0].type"),
    ("metric-typo-argument", ["--cfg-options", "metrics.0.epochs=True"], "metrics[0].epochs"),
    ("unknown-logger", "leaf:loggers = [dict(type='TextLoger')]", "loggers[0].type"),
    (
        "logger-typo-argument",  # loggers are built after the run folder exists: checked before
        "leaf:loggers = [dict(type='TextLogger', fiel='x.log')]",
        "loggers[0].fiel: unexpected key for type TextLogger; did you mean 'file'?",
    ),
    (
        "loss-typo-argument",
        ["--cfg-options", "cl_strategy.loss.loss_weigth=1.0"],
        "did you mean 'loss_weight'?",
    ),
    (
        "scheduler-typo-argument",
        "leaf:cl_strategy = dict(scheduler=dict(type='StepLR', step_sise=1))",
        "cl_strategy.scheduler.step_sise: unexpected key for type StepLR; did you mean 'step_size'?",
    ),
    (
        "head-does-not-fit-backbone",
        ["--cfg-options", "model.head.in_channels=32"],
        "model.head.in_channels=32",
    ),
    (
        "backbone-does-not-fit-images",
        ["--cfg-options", "model.backbone.in_channels=1"],
        "model.backbone",
    ),
    (
        "head-larger-than-scenario",
        ["--cfg-options", "model.head.num_classes=9"],
        "model.head.num_classes",
    ),
    (
        "confusion-matrix-classes",
        ["--cfg-options", "metrics.3.num_classes=7"],
        "metrics[3].num_classes",
    ),
    ("unknown-eval-stream", ["--cfg-options", "eval_streams=[novel]"], "eval_streams"),
    ("scenario-bad-value", ["--cfg-options", "scenario.num_classes=-1"], "scenario.num_classes"),
    (
        "pnn-needs-another-model",
        ["--cfg-options", "cl_strategy.type=PNNStrategy"],
        "PNNStrategy needs",
    ),
    (
        "replay-unsupported-policy",
        "leaf:cl_strategy = dict(plugins=[dict(type='ReplayPlugin', storage_policy='ParametricBuffer')])",
        "storage_policy",
    ),
    (
        "replay-zero-memory",
        "leaf:cl_strategy = dict(plugins=[dict(type='ReplayPlugin', mem_size=0)])",
        "mem_size",
    ),
    (
        "custom-import-missing",
        ["--cfg-options", "custom_imports.imports=[no_such_module_xyz]"],
        "custom_imports",
    ),
    ("load-from-missing", ["--cfg-options", "load_from=/nonexistent/w.pth"], "load_from"),
    ("load-from-foreign", ["--cfg-options", "load_from={bad}/foreign.pth"], "load_from"),
    # --- config files
    ("missing-config", "MISSING", "config file not found"),
    ("syntax-error-config", "{bad}/syntax.py", "syntax.py"),
    ("config-without-model", "{bad}/no_model.py", "model: missing required key"),
    ("scenario-without-type", "{bad}/no_type.py", "scenario.type"),
    # --- command line
    ("cuda-without-cuda", ["--device", "cuda"], "--device cuda"),
    ("unknown-device", ["--device", "tpu"], "--device tpu"),
    (
        "unparseable-cfg-options",
        ["--cfg-options", "cl_strategy.plugins=[dict(type='EWCPlugin',ewc_lambda=1)]"],
        "--cfg-options",
    ),
    (
        "cfg-options-not-a-dict",
        ["--cfg-options", "cl_strategy.plugins=[EWCPlugin]"],
        "cl_strategy.plugins[0]",
    ),
    ("work-dir-is-a-file", ["--work-dir", "{bad}/a_file"], "work_dir"),
    # --- data
    (
        "cifar-root-missing",
        "configs/demo.py::scenario.dataset_root=/nonexistent/cifar",
        "/nonexistent/cifar",
    ),
    (
        "clear-root-missing",
        "configs/clear/cifar_clear_resnet32_streaming.py::scenario.dataset_root=/nonexistent/clear",
        "/nonexistent/clear",
    ),
    (
        "train-epochs-list-longer-than-the-stream",
        ["--cfg-options", "cl_strategy.train_epochs=[1,1,1,1,1]"],
        "cl_strategy.train_epochs: 5 entries for a stream of 3",
    ),
    ("duplicate-seeds", ["--seeds", "1", "1"], "--seeds: seed 1 is given twice"),
    ("base-cycle", "{bad}/cycle_a.py", "cycle_a.py -> "),
    # --- checkpoints
    ("resume-truncated", ["--resume", "{bad}/truncated.pth"], "truncated.pth"),
    ("resume-foreign", ["--resume", "{bad}/foreign.pth"], "foreign.pth"),
    ("resume-missing-path", ["--resume", "/nonexistent/run"], "/nonexistent/run"),
    ("resume-other-seed", ["--resume", "{run}", "--seed", "5"], "seed"),
    (
        "resume-changed-learning-rate",
        ["--resume", "{run}", "--cfg-options", "cl_strategy.optimizer.lr=0.5"],
        "cl_strategy.optimizer.lr: 0.05 -> 0.5",
    ),
    (
        "resume-changed-scenario",
        ["--resume", "{run}", "--cfg-options", "scenario.seed=1"],
        "scenario.seed: 0 -> 1",
    ),
    (
        "resume-other-model",
        ["--resume", "{run}", "--cfg-options", "model.backbone.depth=14"],
        "another model",
    ),
    (
        "resume-unsaveable-plugin",
        "leaf:cl_strategy = dict(plugins=[dict(type='EWCPlugin', ewc_lambda=1)])::--resume {run}",
        "EWCPlugin",
    ),
    (  # a stateful plugin the checkpointed run did not have would silently start fresh
        "resume-stateful-plugin-added",
        "leaf:cl_strategy = dict(plugins=[dict(type='ReplayPlugin', mem_size=4)])::--resume {run}",
        "plugin ReplayPlugin keeps state and the checkpoint holds none for it",
    ),
    (
        "resume-stateful-strategy",
        ["--resume", "{run}", "--cfg-options", "cl_strategy.type=Cumulative"],
        "strategy Cumulative keeps state",
    ),
    (
        "resume-strategy-internal-plugin",
        [
            "--resume",
            "{run}",
            "--cfg-options",
            "cl_strategy.type=EWC",
            "cl_strategy.ewc_lambda=1.0",
        ],
        "strategy EWC keeps state",
    ),
]


def _fill(text: str, fill: dict[str, str]) -> str:
    for name, value in fill.items():
        text = text.replace("{" + name + "}", value)
    return text


def _argv(case, earlier: Path) -> list[str]:
    _, spec, _ = case
    fill = {"bad": str(_bad(earlier)), "run": _run_dir(earlier)}
    if spec == "MISSING":
        return ["configs/no_such_config.py", "--work-dir", str(earlier)]
    if isinstance(spec, str) and spec.startswith("leaf:"):
        code, _, extra = spec[len("leaf:") :].partition("::")
        leaf = _bad(earlier) / f"leaf_{case[0].replace('-', '_')}.py"
        tiny = "scenario = dict(images_per_class=6, test_images_per_class=2, image_size=8)\n"
        leaf.write_text(f"_base_ = [{S!r}]\n{tiny}{code}\n")
        return [str(leaf), "--work-dir", str(earlier), *_fill(extra, fill).split()]
    if isinstance(spec, str):
        config, _, option = spec.partition("::")
        argv = [_fill(config, fill), "--work-dir", str(earlier)]
        return argv + (["--cfg-options", option] if option else [])
    extra = [_fill(a, fill) for a in spec]
    argv = [S, "--work-dir", str(earlier)] if "--work-dir" not in extra else [S]
    if "--cfg-options" in extra:
        at = extra.index("--cfg-options") + 1
        while at < len(extra) and "=" in extra[at]:
            at += 1
        extra[at:at] = TINY
    return argv + extra


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_destroys_nothing(case, earlier, capsys):
    before = _snapshot(earlier)
    code = train_config.main(_argv(case, earlier))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err[-2000:]
    assert len(errors) == 1, err[-2000:]
    assert case[2] in errors[0], errors[0]
    assert "Traceback" not in err
    assert _snapshot(earlier) == before


def test_suite_is_large_enough():
    assert len(CASES) >= 30
