"""Re-sampling, DRW, class counts, post-hoc adjustment and the decoupled classifier methods.

Maths on hand-computed values; the plugins on Avalanche's Naive strategy over tiny tensor streams.
"""

import avalanche_ext  # noqa: F401  (stack fixes before avalanche imports torchvision)

# isort: split
import math
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from avalanche.benchmarks import tensors_benchmark
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from torch import nn

from avalanche_ext.builders import build_strategy
from avalanche_ext.class_counts import ClassCountPlugin, dataset_class_counts, sum_counts
from avalanche_ext.decoupled import fit_classifier_rows, fit_weight_scales, tau_normalize
from avalanche_ext.errors import ConfigError
from avalanche_ext.losses.long_tail import LDAMLoss, effective_number_weights
from avalanche_ext.lr_warmup import WarmupMultiStepLR, warmup_multistep_factor
from avalanche_ext.ncd_state import DiscoveryState
from avalanche_ext.sampling import (
    class_sampling_probabilities,
    deferred_epoch,
    progressive_probabilities,
    sample_weights,
)
from strategies.deferred_reweighting import DRWPlugin
from strategies.posthoc_logit_adjustment import PosthocLogitAdjustmentPlugin
from strategies.resampling import ResamplingPlugin
from strategies.tau_normalization import TauNormalizationPlugin


def test_sampling_probabilities_hand_computed():
    counts = torch.tensor([100, 25, 4])
    assert class_sampling_probabilities(counts, 0.0).tolist() == pytest.approx([1 / 3] * 3)
    assert class_sampling_probabilities(counts, 0.5).tolist() == pytest.approx(
        [10 / 17, 5 / 17, 2 / 17]
    )
    assert class_sampling_probabilities(counts, 1.0).tolist() == pytest.approx(
        [100 / 129, 25 / 129, 4 / 129]
    )
    first, last = progressive_probabilities(counts, 0, 5), progressive_probabilities(counts, 4, 5)
    assert first.tolist() == pytest.approx(class_sampling_probabilities(counts, 1.0).tolist())
    assert last.tolist() == pytest.approx([1 / 3] * 3)
    middle = progressive_probabilities(counts, 2, 5)
    assert middle.tolist() == pytest.approx(((first + last) / 2).tolist())
    # a sample of class c is drawn with p_c / n_c; unlabeled samples never
    weights = sample_weights(torch.tensor([0, 0, 0, 1, -1]), torch.tensor([0.5, 0.5]))
    assert weights.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2, 0.0])


@pytest.mark.parametrize(
    "start, epochs, expected",
    [(160, 200, 160), (0.8, 200, 160), (0.8, 5, 4), (0.8, 2, 1), (0.8, 1, 0), (0, 3, 0)],
)
def test_deferred_epoch_never_misses_a_short_run(start, epochs, expected):
    assert deferred_epoch(start, epochs) == expected


def test_warmup_multistep_factor_and_scheduler():
    factors = [
        warmup_multistep_factor(s, 5, [160, 180], 0.1) for s in (0, 1, 4, 5, 159, 160, 179, 180)
    ]
    assert factors == pytest.approx([0.2, 0.4, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01])
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = WarmupMultiStepLR(opt, milestones=[3], gamma=0.1, warmup_epochs=2)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.01, 0.01])


def stream(counts_per_exp: list[dict[int, int]], dim: int = 4, seed: int = 0):
    """A tensors benchmark: experience e holds ``counts[c]`` samples of class c (Gaussian blobs)."""
    gen = torch.Generator().manual_seed(seed)
    train = []
    for counts in counts_per_exp:
        ys = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in counts.items()])
        xs = torch.randn(len(ys), dim, generator=gen) + ys[:, None].float()
        train.append((xs, ys))
    return tensors_benchmark(train_tensors=train, test_tensors=train, task_labels=[0] * len(train))


class LabelRecorder(SupervisedPlugin):
    """Labels of every training minibatch, per epoch."""

    def __init__(self):
        super().__init__()
        self.epochs: list[Counter] = []

    def before_training_epoch(self, strategy, **kwargs):
        self.epochs.append(Counter())

    def after_training_iteration(self, strategy, **kwargs):
        self.epochs[-1].update(strategy.mb_y.tolist())


def naive(plugins, loss=None, epochs=1, num_classes=4):
    from avalanche.training.supervised import Naive  # noqa: PLC0415

    model = nn.Linear(4, num_classes)
    return Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        criterion=loss or nn.CrossEntropyLoss(),
        train_mb_size=10,
        train_epochs=epochs,
        eval_mb_size=50,
        device="cpu",
        plugins=plugins,
        evaluator=EvaluationPlugin(loggers=[]),
    )


def test_class_balanced_resampling_balances_the_batches_and_drs_waits():
    bench = stream([{0: 180, 1: 20}])
    recorder = LabelRecorder()
    strategy = naive(
        [ResamplingPlugin(mode="class_balanced", start_epoch=2, seed=0), recorder], epochs=3
    )
    strategy.train(bench.train_stream[0])
    plain, _, balanced = recorder.epochs
    assert plain == {0: 180, 1: 20}  # before start_epoch: the ordinary loader, every sample once
    assert sum(balanced.values()) == 200  # same epoch length
    assert 0.4 < balanced[1] / 200 < 0.6  # class 1 is 10 % of the data, half of the draws


def test_resampling_rejects_unknown_mode():
    with pytest.raises(ConfigError, match="mode"):
        ResamplingPlugin(mode="balanced")


def test_class_counts_follow_the_classes_seen_and_reach_the_loss():
    bench = stream([{0: 30, 1: 10}, {2: 5, 3: 2}])
    cfg = dict(
        type="Naive",
        train_mb_size=10,
        train_epochs=1,
        optimizer=dict(type="SGD", lr=0.01),
        loss=dict(type="BalancedSoftmaxLoss"),
    )
    strategy = build_strategy(cfg, nn.Linear(4, 4), EvaluationPlugin(loggers=[]), "cpu", plugins=[])
    assert isinstance(strategy.plugins[0], ClassCountPlugin)
    strategy.train(bench.train_stream[0])
    assert strategy.ncd.class_counts.tolist() == [30, 10]
    assert strategy._criterion.class_counts.tolist() == [30, 10]
    strategy.train(bench.train_stream[1])
    assert strategy.ncd.class_counts.tolist() == [30, 10, 5, 2]
    state = strategy.plugins[0].state_dict()
    fresh = ClassCountPlugin()
    fresh.load_state_dict(state)
    assert fresh.counts().tolist() == [30, 10, 5, 2]


def test_no_count_plugin_when_nothing_needs_counts():
    cfg = dict(type="Naive", train_mb_size=10, optimizer=dict(type="SGD", lr=0.01))
    strategy = build_strategy(cfg, nn.Linear(4, 4), EvaluationPlugin(loggers=[]), "cpu", plugins=[])
    assert not any(isinstance(p, ClassCountPlugin) for p in strategy.plugins)


def test_count_helpers_ignore_hidden_labels():
    ds = SimpleNamespace(targets=[0, 2, 2, -1, -1])
    assert dataset_class_counts(ds).tolist() == [1, 0, 2]
    assert sum_counts([torch.tensor([1, 2]), torch.tensor([0, 0, 3])]).tolist() == [1, 2, 3]


def fake(epoch: int, epochs: int, counts, criterion):
    return SimpleNamespace(
        clock=SimpleNamespace(train_exp_epochs=epoch),
        train_epochs=epochs,
        ncd=DiscoveryState(class_counts=torch.tensor(counts)),
        _criterion=criterion,
    )


def test_drw_switches_class_weights_on_at_the_start_epoch():
    loss = LDAMLoss()
    plugin = DRWPlugin(start_epoch=0.5, beta=0.999)
    counts = [500, 50, 5]
    for epoch, on in [(0, False), (1, False), (2, True), (3, True)]:
        plugin.before_training_epoch(fake(epoch, 4, counts, loss))
        assert (loss.class_weight is not None) == on
    assert loss.class_weight.tolist() == pytest.approx(
        effective_number_weights(counts, 0.999).tolist()
    )
    plugin.before_training_epoch(fake(0, 4, counts, loss))  # the next experience starts unweighted
    assert loss.class_weight is None


def test_drw_sets_mmpretrain_cross_entropy_weights():
    from mmpretrain.models.losses import CrossEntropyLoss  # noqa: PLC0415

    loss = CrossEntropyLoss()
    DRWPlugin(start_epoch=0).before_training_epoch(fake(0, 1, [10, 1], loss))
    assert loss.class_weight == pytest.approx(effective_number_weights([10, 1], 0.9999).tolist())
    with pytest.raises(ConfigError, match="class weights"):
        DRWPlugin(start_epoch=0).before_training_epoch(fake(0, 1, [10, 1], nn.MSELoss()))


def test_posthoc_adjustment_changes_eval_outputs_only():
    plugin = PosthocLogitAdjustmentPlugin(tau=1.0)
    strategy = SimpleNamespace(
        mb_output=torch.zeros(1, 2), ncd=DiscoveryState(class_counts=torch.tensor([1, 3]))
    )
    plugin.after_eval_forward(strategy)
    assert strategy.mb_output.flatten().tolist() == pytest.approx([math.log(4), -math.log(0.75)])


def test_tau_normalize_hand_computed_and_plugin_drops_the_bias():
    w = torch.tensor([[3.0, 4.0], [0.6, 0.8]])
    assert torch.allclose(tau_normalize(w, 1.0), torch.tensor([[0.6, 0.8], [0.6, 0.8]]))
    assert torch.allclose(tau_normalize(w, 0.0), w)
    assert tau_normalize(w, 0.5)[0].tolist() == pytest.approx([3 / math.sqrt(5), 4 / math.sqrt(5)])
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(w)
    TauNormalizationPlugin(tau=1.0).after_training_exp(
        SimpleNamespace(model=SimpleNamespace(classifier=layer))
    )
    assert layer.weight.norm(dim=1).tolist() == pytest.approx([1.0, 1.0])
    assert layer.bias.tolist() == [0.0, 0.0]


def blobs(counts: dict[int, int], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, 0.0], [0.0, -4.0]])
    ys = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in counts.items()])
    return centres[ys] + 0.5 * torch.randn(len(ys), 2, generator=gen), ys


def test_crt_relearns_the_present_rows_only():
    features, labels = blobs({0: 200, 1: 20, 2: 4})
    layer = nn.Linear(2, 4)
    before = layer.weight.detach().clone()
    losses = fit_classifier_rows(layer, features, labels, epochs=5, lr=0.1, batch_size=32)
    assert losses[-1] < losses[0]
    assert torch.equal(layer.weight[3], before[3])  # class 3 has no data here: untouched
    test_x, test_y = blobs({0: 50, 1: 50, 2: 50}, seed=1)
    accuracy = (layer(test_x)[:, :3].argmax(1) == test_y).float().mean()
    assert accuracy > 0.95  # the 4-sample class is learned too (balanced batches)


def test_lws_scales_present_rows_and_folds_the_factors():
    features, labels = blobs({0: 200, 1: 4})
    layer = nn.Linear(2, 3)
    before_w, before_b = layer.weight.detach().clone(), layer.bias.detach().clone()
    factors = fit_weight_scales(layer, features, labels, epochs=3, lr=0.05, batch_size=32)
    assert factors[2].item() == 1.0  # absent class: not scaled
    assert torch.allclose(layer.weight.detach(), before_w * factors[:, None])
    assert layer.bias.detach().tolist() == pytest.approx((before_b * factors).tolist())


def test_drw_refuses_a_loss_that_would_ignore_the_weights():
    from avalanche_ext.losses.long_tail import BalancedSoftmaxLoss  # noqa: PLC0415

    with pytest.raises(ConfigError, match="class weights"):
        DRWPlugin(start_epoch=0).before_training_epoch(fake(0, 1, [10, 1], BalancedSoftmaxLoss()))


@pytest.mark.slow
def test_long_tail_methods_run_through_the_runner(synthetic_cfg, tmp_path):
    """LDAM-DRW + post-hoc adjustment + cRT on the synthetic 3 x 2-class stream, end to end."""
    from avalanche_ext.runner import run  # noqa: PLC0415

    cfg = synthetic_cfg
    cfg.cl_strategy.train_epochs = 2
    cfg.cl_strategy.loss = dict(type="LDAMLoss", max_margin=0.5)
    cfg.cl_strategy.plugins = [
        dict(type="DRWPlugin", start_epoch=0.5),
        dict(type="ResamplingPlugin", mode="square_root"),
        dict(type="ClassifierRetrainingPlugin", epochs=2, batch_size=16),
        dict(type="PosthocLogitAdjustmentPlugin", tau=1.0),
    ]
    results = run(cfg, work_dir=str(tmp_path / "run"))
    assert len(results["experiences"]) == 3
    ckpt = torch.load(tmp_path / "run" / "latest" / "checkpoints" / "latest.pth", weights_only=True)
    counts = ckpt["plugins"]["ClassCountPlugin"]["per_experience"]
    assert [c.tolist() for _, c in sorted(counts.items())] == [
        [24, 24],
        [0, 0, 24, 24],
        [0, 0, 0, 0, 24, 24],
    ]
