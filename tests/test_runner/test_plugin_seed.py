"""One run seed drives the plugins' random choices: a plugin whose config leaves ``seed`` unset gets
the run's ``--seed`` (hold-out draws, k-NN bank, k-means, replay draws)."""

from __future__ import annotations

import pytest
import torch

from avalanche_ext import builders
from avalanche_ext.config import load_config
from avalanche_ext.runner import Experiment
from strategies.lwf import LwFPlugin
from tests.test_strategies.test_confidence_gate import discovery_stream, gate, linear_probe, naive

DISCOVERY_CONFIG = "configs/ncd/dualteacher_resnet8_synthetic-8+4.py"


def test_a_plugin_without_a_seed_gets_the_run_seed():
    plugins = builders.build_plugins(
        [
            dict(type="ConfidenceGatedPoolPlugin"),
            dict(type="PseudoLabelClusteringPlugin", num_clusters=2, seed=None),
            dict(type="DualTeacherDistillationPlugin", seed=3),  # set explicitly: kept
            dict(type="LwFPlugin"),  # takes no seed: built as before
        ],
        seed=7,
    )
    assert [getattr(p, "seed", None) for p in plugins] == [7, 7, 3, None]
    assert isinstance(plugins[3], LwFPlugin)
    # without a run seed the plugins' own default (0) holds
    assert builders.build_plugins([dict(type="ConfidenceGatedPoolPlugin")])[0].seed == 0


@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_the_run_seed_reaches_the_plugins_of_an_experiment(repo):
    cfg = load_config(repo / DISCOVERY_CONFIG)
    experiment = Experiment(cfg, seed=7)
    assert [p.seed for p in experiment.plugins] == [7, 7, 7]


@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_the_gate_seed_decides_the_held_out_samples():
    def held_out(seed: int) -> torch.Tensor:
        strategy = naive(linear_probe(), [gate(seed=seed)], epochs=1)
        strategy.train(discovery_stream().benchmark.train_stream[0])
        return strategy.ncd.calibration_images

    assert torch.equal(held_out(7), held_out(7))
    assert not torch.equal(held_out(7), held_out(8))
