"""Tests of ConfidenceGatedPoolPlugin: eviction maths, the pool it builds on an out-of-distribution
stream (published in ``strategy.ncd``), capacity, calibration on held-out known samples, the known
classes' feature statistics, feature-space scores, ``threshold='all'``, the short-pool top-up, the
no-trigger path and checkpoints.

The stream helpers here (Gaussian blobs seen by a linear probe) are shared by the other NCD tests.
"""

import avalanche_ext  # noqa: F401  (stack fixes before avalanche imports torchvision)

# isort: split
import math
from types import SimpleNamespace

import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from avalanche.training.supervised import Naive

from avalanche_ext.metrics.confidence import msp_score
from avalanche_ext.models import MMClassifier
from avalanche_ext.ncd import EVICTION_POLICIES, evict_fifo, evict_most_confident
from avalanche_ext.ncd_state import DiscoveryState, discovery_state
from avalanche_ext.ncd_state import NovelPool as StateNovelPool
from avalanche_ext.plugin_helpers import is_discovery_experience, note_labeled_classes
from avalanche_ext.registry import PLUGINS
from avalanche_ext.scenario import (
    BuiltScenario,
    IndexedUnlabeledDataset,
    TensorImageDataset,
    make_benchmark,
    make_dataset,
)
from strategies.confidence_gate import ConfidenceGatedPoolPlugin, NovelPool
from strategies.pseudo_label_clustering import PseudoLabelClusteringPlugin

# ----------------------------------------------------------------------------- shared helpers
DIM = 8


def blobs(classes: list[int], per_class: int, seed: int, spread: float = 0.3):
    """``per_class`` points around ``6 * e_c`` for every class ``c`` (one axis per class)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor(classes).repeat_interleave(per_class)
    x = torch.randn(len(labels), DIM, generator=gen) * spread
    x[torch.arange(len(labels)), labels] += 6.0
    return x, labels


def discovery_stream(
    num_known: int = 3,
    num_novel: int = 2,
    per_class: int = 40,
    known_in_discovery: int = 10,
    seed: int = 0,
    transform=None,
) -> BuiltScenario:
    """A labeled experience of ``num_known`` classes, then an unlabeled one: all ``num_novel``
    novel classes plus ``known_in_discovery`` known samples, shuffled (true labels hidden)."""
    known = list(range(num_known))
    novel = list(range(num_known, num_known + num_novel))
    x0, y0 = blobs(known, per_class, seed)
    xn, yn = blobs(novel, per_class, seed + 1)
    xk, yk = blobs(known, known_in_discovery, seed + 2)
    xk, yk = xk[:known_in_discovery], yk[:known_in_discovery]
    order = torch.randperm(len(yn) + len(yk), generator=torch.Generator().manual_seed(seed + 3))
    x1, y1 = torch.cat([xn, xk])[order], torch.cat([yn, yk])[order]
    xt, yt = blobs(known + novel, 10, seed + 4)
    both = {"train_transform": transform, "eval_transform": transform}
    train = [
        make_dataset(TensorImageDataset(x0, y0), **both),
        make_dataset(IndexedUnlabeledDataset(x1), targets=torch.full((len(y1),), -1), **both),
    ]
    test_known = yt < num_known
    test = [
        make_dataset(TensorImageDataset(xt[test_known], yt[test_known]), **both),
        make_dataset(TensorImageDataset(xt[~test_known], yt[~test_known]), **both),
    ]
    return BuiltScenario(
        benchmark=make_benchmark(train, test),
        num_classes=num_known + num_novel,
        class_names=[str(c) for c in known + novel],
        info={"known_classes": known, "novel_classes": novel},
        hidden_labels={1: y1},
        initial_num_classes=num_known,
    )


def linear_probe(num_classes: int = 3) -> MMClassifier:
    """An ``MMClassifier`` without backbone: a linear head on the 8-d inputs."""
    torch.manual_seed(0)
    return MMClassifier(
        head=dict(
            type="LinearClsHead",
            num_classes=num_classes,
            in_channels=DIM,
            init_cfg=dict(type="Normal", layer="Linear", std=0.01),
        )
    )


def naive(model, plugins: list, epochs: int = 3, lr: float = 0.1, mb: int = 16) -> Naive:
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=mb,
        eval_mb_size=64,
        train_epochs=epochs,
        device="cpu",
        plugins=plugins,
        evaluator=EvaluationPlugin(loggers=[]),
    )
    strategy.ncd = DiscoveryState(num_known_classes=3)
    return strategy


class Recorder(SupervisedPlugin):
    """Records what training minibatches look like after every earlier plugin's ``before_forward``."""

    def __init__(self):
        super().__init__()
        self.batches: dict[int, list[tuple[torch.Tensor, ...]]] = {}
        self.dataset_sizes: dict[int, int] = {}

    def before_training_exp(self, strategy, **kwargs):
        self.dataset_sizes[strategy.experience.current_experience] = len(strategy.adapted_dataset)

    def before_forward(self, strategy, **kwargs):
        exp = strategy.experience.current_experience
        self.batches.setdefault(exp, []).append(tuple(t.clone() for t in strategy.mbatch))


def run_stream(plugins: list, scenario: BuiltScenario | None = None, **kwargs) -> Naive:
    scenario = scenario or discovery_stream()
    strategy = naive(linear_probe(), plugins, **kwargs)
    for experience in scenario.benchmark.train_stream:
        strategy.train(experience)
    return strategy


def gate(**kwargs) -> ConfidenceGatedPoolPlugin:
    defaults = dict(
        score="msp",
        threshold="calibrated",
        target_known_recall=0.9,
        calibration_fraction=0.1,
        capacity=1000,
        trigger_size=5,
    )
    return ConfidenceGatedPoolPlugin(**{**defaults, **kwargs})


def clustering(**kwargs) -> PseudoLabelClusteringPlugin:
    return PseudoLabelClusteringPlugin(**{"num_clusters": 2, "backend": "sklearn", **kwargs})


# ----------------------------------------------------------------------------- pure maths
def test_eviction_policies_on_hand_made_scores():
    scores = torch.tensor([0.9, 0.1, 0.5, 0.7, 0.5])
    arrival = torch.tensor([0, 1, 2, 3, 4])
    # keep the 3 highest novelty scores: 0.9 (pos 0), 0.7 (pos 3), then the tie 0.5 -> earlier (2)
    assert evict_most_confident(scores, arrival, 3).tolist() == [0, 2, 3]
    assert evict_fifo(scores, arrival, 3).tolist() == [2, 3, 4]  # the 3 latest arrivals
    assert evict_fifo(scores, arrival, 10).tolist() == [0, 1, 2, 3, 4]
    assert evict_most_confident(scores, arrival, 0).tolist() == []
    assert set(EVICTION_POLICIES) == {"most_confident_out", "fifo"}


def test_discovery_detection_and_known_class_count():
    stream = discovery_stream().benchmark.train_stream
    assert not is_discovery_experience(stream[0])
    assert is_discovery_experience(stream[1])
    fake = SimpleNamespace(
        experience=stream[0], model=None, ncd=DiscoveryState(num_known_classes=1)
    )
    note_labeled_classes(fake)
    assert fake.ncd.num_known_classes == 3
    fake.ncd.num_known_classes = 5  # a max: never lowered by an earlier labeled experience
    note_labeled_classes(fake)
    assert fake.ncd.num_known_classes == 5
    assert NovelPool is StateNovelPool  # the gate re-exports the contract's pool


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="score"):
        ConfidenceGatedPoolPlugin(score="softmax")
    with pytest.raises(ValueError, match="eviction"):
        ConfidenceGatedPoolPlugin(eviction="random")
    with pytest.raises(ValueError, match="threshold"):
        ConfidenceGatedPoolPlugin(threshold="auto")
    with pytest.raises(ValueError, match="calibration_fraction"):
        ConfidenceGatedPoolPlugin(calibration_fraction=0.0)
    with pytest.raises(ValueError, match="min_fill"):
        ConfidenceGatedPoolPlugin(min_fill=1.5)
    assert PLUGINS.get("ConfidenceGatedPoolPlugin") is ConfidenceGatedPoolPlugin


# ----------------------------------------------------------------------------- with a strategy
def test_gate_pools_the_out_of_distribution_samples_and_trains_only_on_them():
    scenario = discovery_stream()
    recorder = Recorder()
    plugin = gate()
    strategy = run_stream([plugin, clustering(), recorder], scenario)
    pool = strategy.ncd.pool
    true = scenario.hidden_labels[1]
    assert isinstance(pool, NovelPool) and pool.experience_index == 1 and pool.triggered
    assert strategy.ncd.triggered is True and ">= trigger_size 5" in strategy.ncd.reason
    assert pool.all_scores.shape == true.shape and torch.isfinite(pool.all_scores).all()
    pooled_true = true[pool.indices]
    assert (pooled_true >= 3).float().mean() >= 0.9  # precision: novel blobs are OOD
    assert len(pool) >= 0.9 * int((true >= 3).sum())  # recall
    assert torch.all(pool.scores > pool.threshold)
    assert pool.features.shape == (len(pool), 8) and pool.all_features.shape == (len(true), 8)
    # the features are the probe's inputs: the pooled samples' own coordinates
    x_all = scenario.benchmark.train_stream[1].dataset.eval()
    assert torch.allclose(pool.features[0], x_all[int(pool.indices[0])][0])
    assert torch.allclose(pool.all_features[5], x_all[5][0])
    # training data = the pooled samples, addressed by their ORIGINAL indices (subset keeps them)
    assert recorder.dataset_sizes[1] == len(pool)
    seen = torch.cat([b[2] for b in recorder.batches[1]])
    assert sorted(seen.tolist()) == sorted(pool.indices.tolist() * 3)  # 3 epochs, each once


def test_feature_space_score_pools_the_novel_blobs():
    """cosine_prototype: novel blobs lie on axes orthogonal to every known prototype (score ~1),
    known samples on their prototype's axis (score ~0)."""
    scenario = discovery_stream()
    strategy = run_stream([gate(score="cosine_prototype"), clustering()], scenario, epochs=1)
    pool = strategy.ncd.pool
    true = scenario.hidden_labels[1]
    novel = true >= 3
    assert bool((true[pool.indices] >= 3).all()) and len(pool) == int(novel.sum())
    assert pool.all_scores[novel].min() > 0.8 > 0.2 > pool.all_scores[~novel].max()


def test_feature_score_without_known_statistics_is_an_error():
    plugin = gate(score="knn", threshold=0.5)
    strategy = naive(linear_probe(), [plugin, clustering()])
    with pytest.raises(RuntimeError, match="statistics"):
        strategy.train(discovery_stream().benchmark.train_stream[1])


def test_subset_of_an_unlabeled_dataset_yields_original_indices():
    dataset = discovery_stream().benchmark.train_stream[1].dataset
    sub = dataset.train().subset([7, 3, 11])
    assert [sub[i][2] for i in range(3)] == [7, 3, 11]
    assert [sub[i][1] for i in range(3)] == [-1, -1, -1]


def test_calibrated_threshold_keeps_the_target_share_of_held_out_known_samples_out():
    recorder = Recorder()
    plugin = gate(target_known_recall=0.9, calibration_fraction=0.25)
    strategy = naive(linear_probe(), [plugin, recorder], epochs=1)
    experience = discovery_stream().benchmark.train_stream[0]
    strategy.train(experience)
    n = len(experience.dataset)
    held = strategy.ncd.calibration_images
    labels = strategy.ncd.calibration_labels
    assert held.shape == (30, 8) and labels.shape == (30,)  # round(0.25 * 120)
    assert recorder.dataset_sizes[0] == n - 30  # held out: never trained on
    # the held-out images are real samples of the experience, with their true labels
    x0, y0 = blobs([0, 1, 2], 40, seed=0)
    for image, label in zip(held, labels):
        match = torch.nonzero((x0 == image).all(1)).flatten()
        assert match.numel() == 1 and int(y0[match[0]]) == int(label)
    with torch.no_grad():
        scores = msp_score(strategy.model.eval()(held))
    rejected = int((scores > plugin.calibrated_threshold).sum())
    assert 0 < rejected <= 3  # at most (1 - 0.9) * 30 held-out known samples would be pooled
    assert plugin.current_threshold() == plugin.calibrated_threshold


def test_known_class_statistics_are_the_means_of_the_trained_samples():
    """Prototypes = class means of the samples trained on (the held-out ones excluded)."""
    plugin = gate(calibration_fraction=0.25)
    strategy = naive(linear_probe(), [plugin], epochs=1)
    strategy.train(discovery_stream().benchmark.train_stream[0])
    stats = strategy.ncd.known_stats
    x0, y0 = blobs([0, 1, 2], 40, seed=0)
    held, held_y = strategy.ncd.calibration_images, strategy.ncd.calibration_labels
    for c in range(3):
        n_held = int((held_y == c).sum())
        expected = (x0[y0 == c].sum(0) - held[held_y == c].sum(0)) / (40 - n_held)
        assert torch.allclose(stats.prototypes[c], expected, atol=1e-5)
        assert int(stats.counts[c]) == 40 - n_held
    assert stats.bank.shape == (90, 8) and stats.precision.shape == (8, 8)
    assert torch.allclose(stats.bank.norm(dim=1), torch.ones(90), atol=1e-5)


def test_threshold_all_pools_every_sample():
    recorder = Recorder()
    strategy = run_stream([gate(threshold="all"), clustering(), recorder], epochs=1)
    pool = strategy.ncd.pool
    assert len(pool) == 90 and pool.indices.tolist() == list(range(90))
    assert pool.threshold == float("-inf") and pool.triggered
    assert recorder.dataset_sizes[1] == 90


def test_a_slightly_short_pool_is_topped_up_to_the_trigger_size():
    recorder = Recorder()
    strategy = run_stream([gate(trigger_size=88, min_fill=0.5), clustering(), recorder], epochs=1)
    pool = strategy.ncd.pool
    assert pool.num_candidates < 88 and pool.triggered
    assert len(pool) == 88 and pool.topped_up == 88 - pool.num_candidates
    # the top-up takes the highest scores below the threshold
    left_out = torch.ones(90, dtype=torch.bool)
    left_out[pool.indices] = False
    assert pool.scores.min() >= pool.all_scores[left_out].max()
    assert "topped up" in strategy.ncd.reason and recorder.dataset_sizes[1] == 88


def test_capacity_keeps_the_most_novel_or_the_latest_candidates():
    for eviction in ("most_confident_out", "fifo"):
        plugin = gate(capacity=6, eviction=eviction, trigger_size=1)
        strategy = run_stream([plugin, clustering()], epochs=1)
        pool = strategy.ncd.pool
        candidates = torch.nonzero(pool.all_scores > pool.threshold).flatten()  # arrival order
        assert len(pool) == 6 and pool.num_candidates == len(candidates) > 6
        if eviction == "fifo":
            assert pool.indices.tolist() == candidates[-6:].tolist()
        else:
            top = candidates[torch.argsort(-pool.all_scores[candidates], stable=True)[:6]]
            assert sorted(pool.indices.tolist()) == sorted(top.tolist())
            assert pool.scores.min() >= pool.all_scores[candidates].sort().values[-6]


def test_below_trigger_size_the_experience_trains_nothing_and_says_why():
    recorder = Recorder()
    strategy = naive(linear_probe(), [gate(trigger_size=10_000), clustering(), recorder])
    stream = discovery_stream().benchmark.train_stream
    strategy.train(stream[0])
    before = {k: v.clone() for k, v in strategy.model.state_dict().items()}
    with pytest.warns(UserWarning, match="not triggered"):
        strategy.train(stream[1])
    state = strategy.ncd
    pool = state.pool
    assert not pool.triggered and len(pool) > 0 and state.triggered is False
    assert state.reason == f"update not triggered: {len(pool)} pooled < trigger_size 10000"
    assert state.reason == pool.reason
    assert state.pseudo_labels is None and 1 not in recorder.batches
    after = strategy.model.state_dict()
    assert strategy.model.num_classes == 3
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fixed_threshold_and_state_dict_round_trip():
    plugin = gate(threshold=0.3, score="entropy")
    strategy = run_stream([plugin, clustering()], epochs=1)
    pool = strategy.ncd.pool
    assert pool.threshold == 0.3
    restored_pool = NovelPool.from_state_dict({**pool.state_dict(), "obsolete": 1})
    for key, value in vars(pool).items():
        other = getattr(restored_pool, key)
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other
    calibrated = gate()
    run_stream([calibrated, clustering()], epochs=1)
    assert calibrated.state_dict() == {"calibrated_threshold": calibrated.calibrated_threshold}
    restored = ConfidenceGatedPoolPlugin()
    restored.load_state_dict(calibrated.state_dict())
    assert restored.current_threshold() == calibrated.current_threshold()


def test_a_gate_score_changed_after_the_base_calibrates_on_the_held_out_images():
    """Resuming a base model with another gate score (the gate-score ablation) calibrates that
    score on the held-out known images when it first gates, as a run trained with it would."""
    first = gate()
    strategy = naive(linear_probe(), [first, clustering()], epochs=1)
    stream = discovery_stream().benchmark.train_stream
    strategy.train(stream[0])
    held = strategy.ncd.calibration_images
    with torch.no_grad():
        logits = strategy.model.eval()(held)
    # max_logit's score; the k-th smallest with k = ceil(0.9 n) keeps 90 % of the known ones out
    scores = (-logits.amax(1)).sort().values
    expected = float(scores[math.ceil(0.9 * len(scores)) - 1])
    swapped = gate(score="max_logit", seed=first.seed)
    assert swapped.calibrated_threshold is None
    strategy.plugins[strategy.plugins.index(first)] = swapped
    strategy.train(stream[1])
    assert swapped.calibrated_threshold == pytest.approx(expected, abs=1e-5)
    assert strategy.ncd.pool.threshold == pytest.approx(expected, abs=1e-5)


def test_calibrated_without_labeled_training_is_an_error():
    plugin = gate()
    strategy = naive(linear_probe(), [plugin, clustering()])
    with pytest.raises(RuntimeError, match="calibrated"):
        strategy.train(discovery_stream().benchmark.train_stream[1])


def test_the_state_is_attached_once_and_reset_per_experience():
    plugin = gate()
    strategy = naive(linear_probe(), [plugin, clustering()], epochs=1)
    state = strategy.ncd
    stream = discovery_stream().benchmark.train_stream
    strategy.train(stream[0])
    strategy.train(stream[1])
    assert discovery_state(strategy) is state and state.pool is not None
    assert state.num_known_classes == 5 and state.num_discovered == 2
    strategy.train(stream[0])  # a labeled experience: the discovery fields are cleared
    assert state.pool is None and state.pseudo_labels is None and state.cluster_of_all is None


def test_a_seeded_transductive_score_follows_the_run_seed():
    # the kmeans_margin score's k-means was seeded with 0 whatever the run's seed
    from avalanche_ext.plugins.confidence_gate import ConfidenceGatedPoolPlugin as Gate

    assert Gate(score="kmeans_margin", seed=7)._score_options()["seed"] == 7
    assert (
        Gate(score="kmeans_margin", seed=7, score_kwargs=dict(seed=1))._score_options()["seed"] == 1
    )
    assert "seed" not in Gate(score="msp", seed=7)._score_options()  # a score without a seed
