"""Strict configs (unknown keys, unexpected arguments, helper variables, pipelines resolved after
merging) and the build-time probe (one batch through model and loss, every state restored)."""

from __future__ import annotations

import copy

import pytest
import torch

from avalanche_ext import builders
from avalanche_ext.checkpoint import get_rng_state
from avalanche_ext.config import load_config
from avalanche_ext.errors import ConfigError
from avalanche_ext.probe import probe_model
from avalanche_ext.runner import Experiment, run
from avalanche_ext.strict import dump_config, scenario_config
from tests.conftest import SYNTHETIC_CONFIG


def test_unknown_top_level_key_says_did_you_mean():
    with pytest.raises(ConfigError, match=r"^chekpoint_config: .*did you mean 'checkpoint_config'"):
        load_config(SYNTHETIC_CONFIG, {"chekpoint_config.interval": 1})


def test_a_discovery_key_nothing_reads_is_refused():
    # legacy recipes carried discovery=dict(hungarian='all'), which nothing ever read
    with pytest.raises(ConfigError, match=r"^discovery\.hungarian: unknown key"):
        load_config(SYNTHETIC_CONFIG, {"discovery.hungarian": "all"})
    with pytest.raises(ConfigError, match=r"did you mean 'histogram_bins'"):
        load_config(SYNTHETIC_CONFIG, {"discovery.histogram_bin": 10})
    assert load_config(SYNTHETIC_CONFIG, {"discovery.histogram_bins": 10}).discovery


def test_underscore_helpers_are_accepted_and_not_dumped(tmp_path):
    leaf = tmp_path / "leaf.py"
    leaf.write_text(
        f"_base_ = [{str(SYNTHETIC_CONFIG)!r}]\n_lr = 0.01\n"
        "cl_strategy = dict(optimizer=dict(lr=_lr))\n"
    )
    cfg = load_config(leaf)
    assert cfg.cl_strategy.optimizer.lr == 0.01
    dump_config(cfg, tmp_path / "config.py")
    text = (tmp_path / "config.py").read_text()
    assert "_lr" not in text and "lr=0.01" in text
    assert not list(tmp_path.glob(".*.tmp"))  # written through a renamed temporary file


def test_unexpected_transform_argument_names_it_and_the_closest_one():
    options = {"train_pipeline": [dict(type="RandomCrop", sizee=32)]}
    with pytest.raises(ConfigError) as err:
        Experiment(load_config(SYNTHETIC_CONFIG, options))
    assert str(err.value).startswith("train_pipeline[0].sizee: unexpected key")
    assert "did you mean 'size'" in str(err.value)


def test_unexpected_optimizer_and_plugin_arguments_are_named():
    with pytest.raises(ConfigError, match=r"cl_strategy.optimizer.momentun: .*'momentum'"):
        Experiment(load_config(SYNTHETIC_CONFIG, {"cl_strategy.optimizer.momentun": 0.9}))
    plugins = {"cl_strategy.plugins": [dict(type="EWCPlugin", ewc_lamda=1.0)]}
    with pytest.raises(ConfigError, match=r"plugins\[0\].ewc_lamda: .*'ewc_lambda'"):
        Experiment(load_config(SYNTHETIC_CONFIG, plugins))


def _first_train_image(cfg) -> torch.Tensor:
    scenario_cfg, keys = scenario_config(cfg)
    scenario = builders.build_scenario(scenario_cfg, transform_keys=keys)
    return next(iter(scenario.benchmark.train_stream)).dataset[0][0]


NORMALIZE = [dict(type="ToTensor"), dict(type="Normalize", mean=[0.5] * 3, std=[0.25] * 3)]


def test_train_pipeline_override_takes_effect_from_cfg_options_and_leaf(tmp_path):
    plain = _first_train_image(load_config(SYNTHETIC_CONFIG, {"train_pipeline": [NORMALIZE[0]]}))
    override = load_config(SYNTHETIC_CONFIG, {"train_pipeline": NORMALIZE})
    assert torch.allclose(_first_train_image(override), (plain - 0.5) / 0.25)
    leaf = tmp_path / "leaf.py"
    leaf.write_text(f"_base_ = [{str(SYNTHETIC_CONFIG)!r}]\ntrain_pipeline = {NORMALIZE!r}\n")
    assert torch.allclose(_first_train_image(load_config(leaf)), (plain - 0.5) / 0.25)
    # An explicit scenario transform still wins over the top-level pipeline.
    explicit = load_config(
        SYNTHETIC_CONFIG, {"train_pipeline": NORMALIZE, "scenario.train_transform": [NORMALIZE[0]]}
    )
    assert torch.equal(_first_train_image(explicit), plain)


def test_head_that_does_not_fit_fails_before_any_write(tmp_path):
    cfg = load_config(SYNTHETIC_CONFIG, {"model.head.in_channels": 32})
    with pytest.raises(ConfigError) as err:
        run(cfg, work_dir=str(tmp_path / "work"))
    assert str(err.value) == "model.head.in_channels=32 does not fit the neck output 64"
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
    cfg = load_config(SYNTHETIC_CONFIG, {"model.head.in_channels": 32})
    with pytest.raises(ConfigError, match="in_channels=32"):
        run(cfg, dry_run=True)


def test_loss_that_does_not_fit_names_the_loss():
    cfg = load_config(
        SYNTHETIC_CONFIG, {"cl_strategy.loss": dict(_delete_=True, type="BCEWithLogitsLoss")}
    )
    with pytest.raises(ConfigError, match=r"^cl_strategy.loss: does not fit logits \(2, 2\)"):
        Experiment(cfg)


def test_probe_restores_weights_bn_statistics_modes_and_rng(synthetic_cfg):
    exp = Experiment(synthetic_cfg)
    model = exp.model
    model.eval()
    before = copy.deepcopy(model.state_dict())
    first = next(iter(exp.scenario.benchmark.train_stream))
    rng = get_rng_state()
    probe_model(model, torch.nn.CrossEntropyLoss(), first, torch.device("cpu"), synthetic_cfg.model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BN running stats
    assert not model.training and not any(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng["torch"])
    # and the probe really ran in train mode: without the restore the BN statistics would move
    model.train()
    model(torch.stack([first.dataset[i][0] for i in range(2)]))
    bn = "backbone.bn1.running_mean" if "backbone.bn1.running_mean" in before else None
    moved = [k for k in before if "running_mean" in k and not torch.equal(before[k], after[k])]
    assert bn is None or moved or not torch.equal(before[bn], model.state_dict()[bn])


def test_openmmlab_helper_variables_are_accepted_and_not_dumped(tmp_path):
    base = tmp_path / "base.py"
    base.write_text(f"_base_ = [{str(SYNTHETIC_CONFIG)!r}]\nbase_lr = 0.02\n")
    leaf = tmp_path / "leaf.py"
    leaf.write_text(
        "_base_ = ['base.py']\n"
        "img_norm_cfg = dict(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])\n"
        "batch_size = 8\n"
        "train_pipeline = [dict(type='ToTensor'), dict(type='Normalize', **img_norm_cfg)]\n"
        "cl_strategy = dict(train_mb_size=batch_size, optimizer=dict(lr={{_base_.base_lr}}))\n"
    )
    cfg = load_config(leaf)
    assert cfg.cl_strategy.train_mb_size == 8 and cfg.cl_strategy.optimizer.lr == 0.02
    assert cfg.train_pipeline[1]["mean"] == [0.5, 0.5, 0.5]
    dump_config(cfg, tmp_path / "config.py")
    text = (tmp_path / "config.py").read_text()
    assert "img_norm_cfg" not in text and "batch_size" not in text and "base_lr" not in text
    assert "train_mb_size=8" in text


def test_a_key_that_nothing_reads_is_still_refused_with_did_you_mean(tmp_path):
    leaf = tmp_path / "leaf.py"
    leaf.write_text(
        f"_base_ = [{str(SYNTHETIC_CONFIG)!r}]\n"
        "chekpoint_config = dict(interval=1)\nbatch_size = 8\n"
        "cl_strategy = dict(train_mb_size=batch_size)\n"
    )
    with pytest.raises(ConfigError, match=r"^chekpoint_config: .*did you mean 'checkpoint_config'"):
        load_config(leaf)


def test_a_base_cycle_is_one_error_naming_its_files(tmp_path):
    (tmp_path / "a.py").write_text("_base_ = ['b.py']\nseed = 1\n")
    (tmp_path / "b.py").write_text("_base_ = ['./a.py']\nseed = 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "a.py")
    message = str(err.value)
    assert message.startswith("_base_: ") and "cycle" in message
    assert f"{tmp_path / 'a.py'} -> {tmp_path / 'b.py'} -> {tmp_path / 'a.py'}" in message
