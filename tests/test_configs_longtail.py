"""configs/longtail: one CPU and one paper-scale config per method, the paper recipe, and every one builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from avalanche_ext.builders import build_criterion, build_plugins
from avalanche_ext.config import load_config
from avalanche_ext.runner import Experiment

FOLDER = Path(__file__).resolve().parents[1] / "configs" / "longtail"
CPU = sorted(FOLDER.glob("*_resnet32_cpu_cifar100-lt-r100.py"))
REQUIRED = {
    "ce",
    "focal",
    "class-balanced",
    "ldam-drw",
    "balanced-softmax",
    "logit-adjusted",
    "reduced-focal",
    "crt",
}


def test_every_required_method_has_both_variants():
    methods = {p.name.split("_", 1)[0] for p in CPU}
    assert REQUIRED <= methods
    for method in methods:
        assert (FOLDER / f"{method}_resnet32_200e_cifar100-lt-r100.py").is_file(), method
    assert len(list(FOLDER.glob("*.py"))) == 2 * len(methods)


@pytest.mark.parametrize(
    "path", sorted(FOLDER.glob("*_200e_*.py")), ids=lambda p: p.name.split("_")[0]
)
def test_paper_scale_variants_use_the_common_recipe(path):
    cfg = load_config(path)
    s = cfg.cl_strategy
    assert (s.train_epochs, s.train_mb_size) == (200, 128)
    assert (s.optimizer.type, s.optimizer.lr, s.optimizer.weight_decay) == ("SGD", 0.1, 2e-4)
    assert s.scheduler.type == "WarmupMultiStepLR" and list(s.scheduler.milestones) == [160, 180]
    assert s.scheduler.warmup_epochs == 5 and s.scheduler.by_iteration is False
    assert cfg.scenario.type == "CIFAR100LT" and cfg.scenario.imbalance_ratio == 100
    assert cfg.model.backbone.depth == 32


@pytest.mark.parametrize("path", CPU, ids=lambda p: p.name.split("_")[0])
def test_cpu_variants_differ_from_paper_only_in_schedule(path):
    cpu = load_config(path)
    paper = load_config(FOLDER / path.name.replace("_cpu_", "_200e_"))
    assert cpu.cl_strategy.loss.to_dict() == paper.cl_strategy.loss.to_dict()
    assert [p.type for p in cpu.cl_strategy.plugins] == [p.type for p in paper.cl_strategy.plugins]
    assert cpu.cl_strategy.train_epochs <= 10


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*.py")), ids=lambda p: p.stem)
def test_loss_and_plugins_build(path):
    cfg = load_config(path)
    loss = build_criterion(cfg.cl_strategy.loss)
    plugins = build_plugins(cfg.cl_strategy.plugins)
    assert callable(loss) and len(plugins) == len(cfg.cl_strategy.plugins)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ldam-drw_resnet32_cpu", "crt_resnet32_200e"])
def test_a_full_build(name):
    exp = Experiment(
        load_config(FOLDER / f"{name}_cifar100-lt-r100.py", {"scenario.test_subset": 1})
    )
    summary = exp.describe()
    assert summary["train_stream"][0]["size"] == 10847
    assert summary["model"]["backbone"] == "CifarResNet"
