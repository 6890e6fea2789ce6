"""The classifier adapter: logits + features, growth that keeps old rows and reaches the optimizer."""

from __future__ import annotations

import pytest
import torch

from avalanche_ext.builders import build_model, build_strategy
from avalanche_ext.errors import ConfigError
from avalanche_ext.runner import run

HEAD = dict(
    type="LinearClsHead",
    num_classes=4,
    in_channels=64,
    init_cfg=dict(type="Normal", layer="Linear", std=0.01),
)


def _model(**kw):
    cfg = dict(
        backbone=dict(type="CifarResNet", depth=8),
        neck=dict(type="GlobalAveragePooling"),
        head=HEAD,
        **kw,
    )
    return build_model(cfg)


def test_resnet32_is_the_standard_cifar_backbone():
    model = build_model(
        dict(
            backbone=dict(type="CifarResNet", depth=32),
            neck=dict(type="GlobalAveragePooling"),
            head=dict(type="LinearClsHead", num_classes=100, in_channels=64),
        )
    )
    n = sum(p.numel() for p in model.parameters())
    assert 0.45e6 < n < 0.48e6  # ~0.46 M with a 100-class head
    with pytest.raises(ConfigError, match="depth"):
        build_model(dict(backbone=dict(type="CifarResNet", depth=33), head=HEAD))


def test_mmpretrain_resnet_cifar_builds_from_the_same_dict():
    model = build_model(
        dict(
            backbone=dict(type="ResNet_CIFAR", depth=18),
            neck=dict(type="GlobalAveragePooling"),
            head=dict(type="LinearClsHead", num_classes=10, in_channels=512),
        )
    )
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_forward_returns_logits_and_keeps_features():
    model = _model().eval()
    x = torch.randn(5, 3, 16, 16)
    logits = model(x)
    assert logits.shape == (5, 4)
    assert model.last_features.shape == (5, 64)
    assert torch.allclose(model.classifier(model.extract_features(x)), logits, atol=1e-6)
    out = model.forward_all(x)
    assert set(out) == {"logits", "features"}


def test_grow_keeps_old_rows_and_masks_untrained_ones():
    model = _model().eval()
    x = torch.randn(3, 3, 16, 16)
    before = model(x)
    old_weight = model.classifier.weight.detach().clone()
    assert model.grow(7, activate=False)
    assert model.num_classes == 7
    assert torch.equal(model.classifier.weight[:4], old_weight)
    after = model(x)
    assert torch.allclose(after[:, :4], before, atol=1e-6)
    assert (after[:, 4:] == model.MASK_VALUE).all(), "never-trained rows are masked in eval"
    model.grow(7, activate=True)
    assert not (model(x)[:, 4:] == model.MASK_VALUE).any()
    assert not model.grow(5), "never shrinks"


def test_load_state_dict_of_a_grown_model():
    a = _model()
    a.grow(9)
    b = _model()
    b.grow(9)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.classifier.weight, b.classifier.weight)


def test_growth_reaches_the_optimizer_in_a_class_incremental_run(synthetic_cfg, tmp_path):
    """The head grows from 2 to 6 classes; the rows added later must be trained (their weights move)."""
    from avalanche.training.plugins import SupervisedPlugin

    snapshots = {}

    class Spy(SupervisedPlugin):
        def before_training_exp(self, strategy, **kw):
            snapshots[strategy.clock.train_exp_counter] = (
                strategy.model.classifier.weight.detach().clone(),
                {id(p) for g in strategy.optimizer.param_groups for p in g["params"]},
                id(strategy.model.classifier.weight),
            )

        def after_training_exp(self, strategy, **kw):
            i = strategy.clock.train_exp_counter
            w0, params, wid = snapshots[i]
            snapshots[i] = (w0, params, wid, strategy.model.classifier.weight.detach().clone())

    from avalanche_ext.builders import build_scenario

    scenario = build_scenario(synthetic_cfg.scenario)
    model = build_model(synthetic_cfg.model)
    strategy = build_strategy(synthetic_cfg.cl_strategy, model, None, "cpu", plugins=[Spy()])
    for exp in scenario.benchmark.train_stream:
        strategy.train(exp)
    for i, (w0, params, wid, w1) in snapshots.items():
        assert wid in params, f"experience {i}: the grown classifier is not in the optimizer"
        rows = slice(2 * i, 2 * i + 2)
        assert not torch.allclose(w0[rows], w1[rows]), f"experience {i}: new rows did not train"
    assert model.num_classes == 6


def test_evaluation_never_grows_the_head_and_padding_masks_missing_classes(synthetic_cfg):
    """Evaluating the whole test stream after the first experience (2 of 6 classes trained) keeps
    the head at 2 rows: growing it there would tell a discovery model the number of classes. The
    runner's EvalLogitPadding pads the eval logits to 6 columns with MASKED_LOGIT instead."""
    from types import SimpleNamespace

    from avalanche_ext.builders import build_scenario
    from avalanche_ext.ncd_state import MASKED_LOGIT
    from avalanche_ext.recorder import EvalLogitPadding, PredictionRecorder, RecordStore

    model = _model()
    model.eval()
    model.adaptation(SimpleNamespace(classes_in_this_experience=[0, 5, 6]))
    assert model.num_classes == 4  # eval mode: no growth
    model.train()
    model.adaptation(SimpleNamespace(classes_in_this_experience=[0, 5, 6]))
    assert model.num_classes == 7 and model.active.tolist() == [True] * 4 + [False, True, True]

    scenario = build_scenario(synthetic_cfg.scenario)
    model = build_model(synthetic_cfg.model)
    recorder = PredictionRecorder()
    recorder.store = RecordStore()
    plugins = [EvalLogitPadding(scenario.num_classes), recorder]
    strategy = build_strategy(synthetic_cfg.cl_strategy, model, None, "cpu", plugins=plugins)
    strategy.train(scenario.benchmark.train_stream[0])
    strategy.eval(scenario.benchmark.test_stream)
    assert model.num_classes == 2
    logits = recorder.store.stream_logits(scenario.benchmark.test_stream.name)
    assert logits.shape[1] == 6 and bool((logits[:, 2:] == MASKED_LOGIT).all())
    _, predictions = recorder.store.stream(scenario.benchmark.test_stream.name)
    assert set(predictions.tolist()) <= {0, 1}  # a padded class is never predicted


def test_num_classes_that_does_not_fit_the_scenario(synthetic_cfg, tmp_path):
    synthetic_cfg.model.head.num_classes = 12
    with pytest.raises(ConfigError, match="model.head.num_classes"):
        run(synthetic_cfg, work_dir=str(tmp_path), dry_run=True)
