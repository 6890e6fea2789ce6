"""Registries: our names first, then the library that owns the kind; helpful unknown-type errors."""

from __future__ import annotations

import pytest
import torch

from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import (
    LOGGERS,
    LOSSES,
    METRICS,
    MODELS,
    OPTIMIZERS,
    PLUGINS,
    SCENARIOS,
    SCHEDULERS,
    STRATEGIES,
    TRANSFORMS,
    build,
    resolve_type,
)


@pytest.mark.parametrize(
    ("registry", "name", "module"),
    [
        (STRATEGIES, "Naive", "avalanche.training"),
        (STRATEGIES, "Replay", "avalanche.training"),
        (PLUGINS, "EWCPlugin", "avalanche.training.plugins"),
        (PLUGINS, "AvalancheLwFPlugin", "avalanche.training.plugins"),
        (METRICS, "accuracy_metrics", "avalanche.evaluation"),
        (LOGGERS, "InteractiveLogger", "avalanche.logging"),
        (OPTIMIZERS, "SGD", "torch.optim"),
        (SCHEDULERS, "StepLR", "torch.optim"),
        (TRANSFORMS, "RandomCrop", "torchvision.transforms"),
        (LOSSES, "CrossEntropyLoss", "mmpretrain"),
        (LOSSES, "FocalLoss", "mmpretrain"),
        (MODELS, "ResNet_CIFAR", "mmpretrain"),
        (MODELS, "LinearClsHead", "mmpretrain"),
    ],
)
def test_library_types_resolve(registry, name, module):
    assert resolve_type(registry, name).__module__.startswith(module)


@pytest.mark.parametrize(
    ("registry", "name", "module"),
    [
        (PLUGINS, "LwFPlugin", "avalanche_ext.plugins.lwf"),
        (LOGGERS, "TextLogger", "avalanche_ext.loggers"),
        (TRANSFORMS, "ToTensor", "avalanche_ext.transforms"),
        (MODELS, "CifarResNet", "avalanche_ext.models"),
        (MODELS, "MMClassifier", "avalanche_ext.models"),
        (SCENARIOS, "SyntheticStream", "avalanche_ext.scenarios.synthetic"),
        (SCENARIOS, "CIFAR100KnownNovelLT", "avalanche_ext.scenarios.cifar100_known_novel"),
        (SCENARIOS, "CLEAR", "avalanche_ext.scenarios.clear"),
        (LOSSES, "EvidentialLoss", "avalanche_ext.losses"),
        # mmpretrain's, wrapped: it asserted its first call's class count (tests/test_losses)
        (LOSSES, "LabelSmoothLoss", "avalanche_ext.losses"),
    ],
)
def test_our_types_win(registry, name, module):
    assert resolve_type(registry, name).__module__.startswith(module)


def test_unknown_type_names_key_type_and_close_names():
    with pytest.raises(ConfigError) as info:
        build(STRATEGIES, dict(type="Naiv"), key="cl_strategy")
    msg = str(info.value)
    assert msg.startswith("cl_strategy.type: unknown strategy type 'Naiv'")
    assert "'Naive'" in msg


def test_missing_and_unexpected_keys_name_the_config_key():
    with pytest.raises(
        ConfigError, match="cl_strategy.optimizer: missing a required key: 'params'"
    ):
        build(OPTIMIZERS, dict(type="SGD", lr=0.1), key="cl_strategy.optimizer")
    with pytest.raises(
        ConfigError, match=r"train_pipeline\[0\].sise: unexpected key .*did you mean 'size'"
    ):
        build(TRANSFORMS, dict(type="RandomCrop", size=3, sise=3), key="train_pipeline[0]")
    opt = build(
        OPTIMIZERS, dict(type="SGD", lr=0.1), key="o", params=[torch.nn.Parameter(torch.ones(1))]
    )
    assert isinstance(opt, torch.optim.SGD)


def test_our_to_tensor_scales_uint8_tensors_unlike_torchvisions():
    from torchvision.transforms import v2

    x = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    ours = build(TRANSFORMS, dict(type="ToTensor"))
    assert ours(x).dtype == torch.float32 and float(ours(x).max()) == 1.0
    assert v2.ToTensor()(x).dtype == torch.uint8, "torchvision leaves tensors unscaled"


def test_disk_usage_watches_the_run_folder_not_the_working_directory(tmp_path):
    """Avalanche's default (the cwd, .venv included) cost 0.13 s per eval minibatch in the demo
    and measured the checkout, not the experiment."""
    from avalanche_ext.builders import build_evaluator

    cfg = [dict(type="disk_usage_metrics", experience=True)]
    watched = build_evaluator(cfg, [], run_dir=str(tmp_path)).metrics
    assert [m._metric._paths_to_monitor for m in watched] == [[str(tmp_path)]]
    mine = build_evaluator([dict(cfg[0], paths_to_monitor=["/data"])], [], run_dir=str(tmp_path))
    assert mine.metrics[0]._metric._paths_to_monitor == ["/data"]
