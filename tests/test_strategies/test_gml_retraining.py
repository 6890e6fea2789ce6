"""GML re-training on frozen features, the ensemble option at evaluation, and a run end to end."""

import avalanche_ext  # noqa: F401  (stack fixes first)

# isort: split
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from avalanche_ext.decoupled import fit_classifier_rows
from avalanche_ext.errors import ConfigError
from avalanche_ext.losses.gml import gml_ensemble_logits, gml_loss
from avalanche_ext.plugins.gml_retraining import GMLRetrainingPlugin
from tests.test_strategies.test_long_tail_plugins import blobs


def test_gml_retraining_learns_the_rare_classes_and_leaves_absent_rows():
    features, labels = blobs({0: 300, 1: 30, 2: 3})
    layer = nn.Linear(2, 4)
    before = layer.weight.detach().clone()
    losses = fit_classifier_rows(
        layer, features, labels, epochs=5, lr=0.1, batch_size=32, reinit_std=None, loss_fn=gml_loss
    )
    assert losses[-1] < losses[0]
    assert torch.equal(layer.weight[3], before[3])
    test_x, test_y = blobs({0: 50, 1: 50, 2: 50}, seed=1)
    pred = layer(test_x)[:, :3].argmax(1)
    recalls = [(pred[test_y == c] == c).float().mean().item() for c in range(3)]
    assert min(recalls) > 0.9  # the 3-image class is not left behind


def fake_strategy(features: torch.Tensor, classifier: nn.Linear):
    model = SimpleNamespace(last_features=features, classifier=classifier)
    return SimpleNamespace(model=model, mb_output=classifier(features).detach())


def test_ensemble_option_with_identical_classifiers_and_equal_temperatures_changes_nothing():
    features = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    classifier = nn.Linear(2, 3)
    plugin = GMLRetrainingPlugin(ensemble=True, t_new=1.0, t_old=1.0)
    plugin.old_weight = classifier.weight.detach().clone()
    plugin.old_bias = classifier.bias.detach().clone()
    strategy = fake_strategy(features, classifier)
    plain = strategy.mb_output.clone()
    plugin.after_eval_forward(strategy)
    assert torch.allclose(strategy.mb_output.softmax(1), plain.softmax(1), atol=1e-6)


def test_ensemble_mixes_the_kept_classifier_and_pads_rows_it_never_had():
    features = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    old = nn.Linear(2, 2)
    new = nn.Linear(2, 3)  # the head grew by one class since the old classifier was kept
    plugin = GMLRetrainingPlugin(ensemble=True, t_new=1.0, t_old=2.0)
    plugin.old_weight, plugin.old_bias = old.weight.detach(), old.bias.detach()
    strategy = fake_strategy(features, new)
    plugin.after_eval_forward(strategy)
    old_padded = torch.cat([old(features), torch.full((4, 1), -1e4)], 1).detach()
    expected = gml_ensemble_logits(new(features).detach(), old_padded, 1.0, 2.0)
    assert torch.allclose(strategy.mb_output, expected)
    off = GMLRetrainingPlugin(ensemble=False)
    off.old_weight, off.old_bias = plugin.old_weight, plugin.old_bias
    untouched = fake_strategy(features, new)
    before = untouched.mb_output.clone()
    off.after_eval_forward(untouched)
    assert torch.equal(untouched.mb_output, before)


def test_bad_temperature_names_its_key():
    with pytest.raises(ConfigError, match="cl_strategy.plugins.t_old"):
        GMLRetrainingPlugin(t_old=0.0)


@pytest.mark.slow
def test_gml_fine_tuning_and_retraining_with_ensemble_run_end_to_end(synthetic_cfg, tmp_path):
    from avalanche_ext.runner import run  # noqa: PLC0415

    cfg = synthetic_cfg
    cfg.cl_strategy.loss = dict(type="GMLLoss", tau=1.0)  # full fine-tuning with the GML loss
    cfg.cl_strategy.plugins = [
        dict(type="GMLRetrainingPlugin", epochs=2, batch_size=16, ensemble=True, t_old=2.0)
    ]
    results = run(cfg, work_dir=str(tmp_path / "run"))
    assert len(results["experiences"]) == 3
    assert results["final"]["stream_accuracy"] is not None
    ckpt = torch.load(tmp_path / "run" / "latest" / "checkpoints" / "latest.pth", weights_only=True)
    state = next(v for k, v in ckpt["plugins"].items() if k.endswith("GMLRetrainingPlugin"))
    assert state["old_weight"].shape == (6, 64)
