"""Tests of PseudoLabelClusteringPlugin and its pure helpers (avalanche_ext/ncd.py): cluster ids after
the known classes, relabeling by indexing, head growth trained by the optimizer, stable re-clustering,
semi-supervised k-means with the known prototypes fixed, ``cluster_of_all`` and new-row initialisation.
"""

import avalanche_ext  # noqa: F401  (stack fixes before avalanche imports torchvision)

# isort: split
import math
import warnings
from types import SimpleNamespace

import pytest
import torch

from avalanche_ext.metrics.clustering import cluster_accuracy
from avalanche_ext.metrics.discovery import discovery_summary
from avalanche_ext.ncd import (
    align_cluster_ids,
    cluster_pool,
    lookup_table,
    soft_assignments,
)
from avalanche_ext.ncd_state import DiscoveryState
from avalanche_ext.registry import PLUGINS
from strategies.pseudo_label_clustering import PseudoLabelClusteringPlugin, init_rows_from_features
from tests.test_strategies.test_confidence_gate import (
    Recorder,
    blobs,
    discovery_stream,
    gate,
    linear_probe,
    naive,
)


# ----------------------------------------------------------------------------- pure maths
def test_align_cluster_ids_recovers_a_permutation():
    reference = torch.tensor([0, 0, 1, 1, 2, 2])
    labels = torch.tensor([2, 2, 0, 0, 1, 1])
    perm = align_cluster_ids(reference, labels, 3)
    assert perm.tolist() == [1, 2, 0]  # new 0 -> old 1, new 1 -> old 2, new 2 -> old 0
    assert torch.equal(perm[labels], reference)
    # a new id absent from the new labeling takes the free old id
    perm = align_cluster_ids(torch.tensor([0, 0, 1, 1]), torch.tensor([2, 2, 2, 2]), 3)
    assert sorted(perm.tolist()) == [0, 1, 2] and perm[2] in (0, 1)


def test_lookup_table_relabels_by_one_indexing_op():
    table = lookup_table(torch.tensor([4, 1]), torch.tensor([7, 9]), 6)
    assert table.tolist() == [-1, 9, -1, -1, 7, -1]
    assert table[torch.tensor([1, 4, 4, 0])].tolist() == [9, 7, 7, -1]


def test_soft_assignments_hand_computed():
    # cos sims [1, 0] at T = 1: softmax = [e / (e + 1), 1 / (e + 1)]
    q = soft_assignments(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 3.0]]), 1.0)
    e = math.e
    assert q[0].tolist() == pytest.approx([e / (e + 1), 1 / (e + 1)], abs=1e-6)
    with pytest.raises(ValueError):
        soft_assignments(torch.ones(1, 2), torch.ones(1, 3))


def test_cluster_pool_separates_blobs_balanced_or_not_and_estimates_k():
    x, y = blobs([0, 1, 2], 30, seed=0)
    for balanced in (True, False):
        result = cluster_pool(x, 3, backend="sklearn", balanced=balanced, seed=0)
        assert result.num_clusters == 3 and cluster_accuracy(y, result.labels) == 1.0
        assert result.probabilities.shape == (90, 3)
        assert torch.allclose(result.probabilities.sum(1), torch.ones(90), atol=1e-5)
    assert cluster_pool(x, None, k_range=(2, 6), backend="sklearn").num_clusters == 3
    assert cluster_pool(x[:2], 5, backend="sklearn").num_clusters == 2  # k capped by the pool


# ----------------------------------------------------------------------------- with a strategy
def test_cluster_ids_follow_the_known_classes_and_minibatches_are_relabeled():
    scenario = discovery_stream()
    recorder = Recorder()
    plugin = PseudoLabelClusteringPlugin(num_clusters=2, backend="sklearn")
    strategy = naive(linear_probe(), [gate(), plugin, recorder])
    stream = scenario.benchmark.train_stream
    strategy.train(stream[0])
    old_rows = strategy.model.classifier.weight.detach().clone()
    strategy.train(stream[1])
    pseudo = strategy.ncd.pseudo_labels
    pool = strategy.ncd.pool
    assert pseudo.shape == (len(stream[1].dataset),)
    assert sorted(pseudo[pool.indices].unique().tolist()) == [3, 4]  # num_known .. num_known+k-1
    unpooled = torch.ones(len(pseudo), dtype=torch.bool)
    unpooled[pool.indices] = False
    assert (pseudo[unpooled] == -1).all()
    # every training minibatch: mb_y == pseudo_labels[mb_index]
    for _, y, index, _ in recorder.batches[1]:
        assert torch.equal(y, pseudo[index])
    # the clusters are the novel blobs
    true = scenario.hidden_labels[1][pool.indices]
    assert cluster_accuracy(true, pseudo[pool.indices]) >= 0.9
    # head grew to 3 + 2 before the optimizer was built, and the optimizer trained the new rows
    weight = strategy.model.classifier.weight
    assert strategy.model.num_classes == 5 and strategy.ncd.num_known_classes == 5
    assert strategy.ncd.num_discovered == 2
    assert any(p is weight for g in strategy.optimizer.param_groups for p in g["params"])
    assert not torch.allclose(weight[3:], torch.zeros_like(weight[3:]), atol=0.05)
    assert weight.shape[0] == 5 and old_rows.shape[0] == 3
    assert strategy.model.active.all()


def test_new_rows_change_during_training():
    class Snapshot(PseudoLabelClusteringPlugin):
        def before_training_exp(self, strategy, **kwargs):
            self.rows = strategy.model.classifier.weight.detach()[3:].clone()

    plugin = Snapshot(num_clusters=2, backend="sklearn")
    strategy = naive(linear_probe(), [gate(), plugin])
    for experience in discovery_stream().benchmark.train_stream:
        strategy.train(experience)
    assert not torch.allclose(strategy.model.classifier.weight.detach()[3:], plugin.rows)


def test_unlabeled_samples_are_dropped_never_sent_to_the_criterion():
    plugin = PseudoLabelClusteringPlugin(num_clusters=2)
    plugin._active = True
    state = DiscoveryState(num_known_classes=3, pseudo_labels=torch.tensor([3, -1, 4, -1]))
    mbatch = [
        torch.arange(8.0).view(4, 2),
        torch.full((4,), -1),
        torch.tensor([0, 1, 2, 3]),
        torch.zeros(4, dtype=torch.long),
    ]
    strategy = SimpleNamespace(mbatch=mbatch, ncd=state)
    plugin.before_forward(strategy)
    assert strategy.mbatch[1].tolist() == [3, 4]
    assert strategy.mbatch[2].tolist() == [0, 2] and strategy.mbatch[0].shape == (2, 2)
    labeled = [torch.zeros(2, 2), torch.tensor([1, 2]), torch.zeros(2, dtype=torch.long)]
    strategy = SimpleNamespace(mbatch=labeled, ncd=state)
    plugin.before_forward(strategy)  # 3-element (labeled) batches are left alone
    assert strategy.mbatch[1].tolist() == [1, 2]


def test_reclustering_keeps_ids_stable_and_soft_labels_are_exposed():
    plugin = PseudoLabelClusteringPlugin(
        num_clusters=2, backend="sklearn", recluster_every=1, soft=True
    )
    calls = []
    original = plugin.recluster

    def spy(strategy):
        before = strategy.ncd.pseudo_labels.clone()
        original(strategy)
        calls.append(torch.equal(before, strategy.ncd.pseudo_labels))

    plugin.recluster = spy
    strategy = naive(linear_probe(), [gate(), plugin], epochs=3)
    for experience in discovery_stream().benchmark.train_stream:
        strategy.train(experience)
    assert calls == [True, True]  # epochs 1 and 2; blobs re-cluster to the same ids
    soft = strategy.ncd.pseudo_soft_labels
    assert soft.shape == (len(strategy.ncd.pool), 2)
    hard = strategy.ncd.pseudo_labels[strategy.ncd.pool.indices] - 3
    assert torch.equal(soft.argmax(1), hard)


def test_state_dict_round_trip_restores_the_mapping():
    plugin = PseudoLabelClusteringPlugin(num_clusters=2, backend="sklearn", soft=True)
    strategy = naive(linear_probe(), [gate(), plugin], epochs=1)
    for experience in discovery_stream().benchmark.train_stream:
        strategy.train(experience)
    restored = PseudoLabelClusteringPlugin(num_clusters=2, backend="sklearn", soft=True)
    restored.load_state_dict(plugin.state_dict())
    for key in ("soft_labels", "cluster_ids", "pool_indices"):
        assert torch.equal(getattr(restored, key), getattr(plugin, key))
    assert (restored.k, restored.num_known_before) == (2, 3)
    assert set(plugin.state_dict()) == {
        "soft_labels",
        "cluster_ids",
        "pool_indices",
        "num_known_before",
        "k",
    }


def test_needs_the_gate_and_valid_arguments():
    strategy = naive(linear_probe(), [PseudoLabelClusteringPlugin(num_clusters=2)])
    with pytest.raises(RuntimeError, match="ConfidenceGatedPoolPlugin"):
        strategy.train(discovery_stream().benchmark.train_stream[1])
    with pytest.raises(ValueError, match="backend"):
        PseudoLabelClusteringPlugin(backend="cuml")
    with pytest.raises(ValueError, match="k_range"):
        PseudoLabelClusteringPlugin(k_range=(1, 5))
    assert PLUGINS.get("PseudoLabelClusteringPlugin") is PseudoLabelClusteringPlugin


def clustering_plugin(**kwargs) -> PseudoLabelClusteringPlugin:
    return PseudoLabelClusteringPlugin(**{"num_clusters": 2, "backend": "sklearn", **kwargs})


def test_known_centres_leaked_known_samples_join_their_class_and_get_no_pseudo_label():
    """threshold='all' pools the 10 known samples of the discovery experience too: with the known
    prototypes as fixed centres they join their class instead of forming novel clusters."""
    scenario = discovery_stream()
    recorder = Recorder()
    plugin = PseudoLabelClusteringPlugin(num_clusters=2, known_centres=True, n_init=2)
    strategy = naive(linear_probe(), [gate(threshold="all"), plugin, recorder])
    stream = scenario.benchmark.train_stream
    strategy.train(stream[0])
    strategy.train(stream[1])
    true = scenario.hidden_labels[1]
    pseudo = strategy.ncd.pseudo_labels
    assert len(strategy.ncd.pool) == len(true)  # everything pooled
    assert torch.equal(pseudo >= 0, true >= 3)  # exactly the novel samples are pseudo-labeled
    assert cluster_accuracy(true[true >= 3], pseudo[true >= 3]) == 1.0
    assert sorted(pseudo[true >= 3].unique().tolist()) == [3, 4]
    # the known samples never reach the criterion: the update trains on the 80 novel ones
    seen = torch.cat([b[2] for b in recorder.batches[1]])
    assert set(seen.tolist()) == set(torch.nonzero(true >= 3).flatten().tolist())
    # cluster_of_all: every sample's nearest NOVEL cluster, as class ids
    assign = strategy.ncd.cluster_of_all
    assert assign.shape == true.shape and set(assign.unique().tolist()) <= {3, 4}
    assert torch.equal(assign[true >= 3], pseudo[true >= 3])


def test_without_known_centres_leaked_known_samples_take_novel_ids():
    """The control of the test above: plain k-means gives every pooled sample a novel id."""
    scenario = discovery_stream()
    strategy = naive(linear_probe(), [gate(threshold="all"), clustering_plugin()])
    for experience in scenario.benchmark.train_stream:
        strategy.train(experience)
    assert bool((strategy.ncd.pseudo_labels >= 3).all())


def test_cluster_of_all_covers_samples_the_gate_left_out():
    scenario = discovery_stream()
    strategy = naive(linear_probe(), [gate(capacity=20, trigger_size=5), clustering_plugin()])
    for experience in scenario.benchmark.train_stream:
        strategy.train(experience)
    true = scenario.hidden_labels[1]
    pool = strategy.ncd.pool
    assert len(pool) == 20
    assign = strategy.ncd.cluster_of_all
    # 80 novel samples, only 20 pooled: all of them still get their blob's cluster
    assert assign.shape == true.shape
    assert cluster_accuracy(true[true >= 3], assign[true >= 3]) == 1.0


def test_init_rows_from_features_hand_computed():
    layer = torch.nn.Linear(2, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 9.0]]))
        layer.bias.copy_(torch.tensor([1.0, 3.0, 7.0, 7.0]))
    means = torch.tensor([[0.0, 5.0], [3.0, 4.0]])
    init_rows_from_features(layer, slice(2, 4), means, num_old=2)
    # direction of each mean times the old rows' mean norm (3 + 1) / 2 = 2; bias = old mean 2
    assert layer.weight[2].tolist() == pytest.approx([0.0, 2.0])
    assert layer.weight[3].tolist() == pytest.approx([1.2, 1.6])
    assert layer.bias[2:].tolist() == [2.0, 2.0]
    assert layer.weight[:2].tolist() == [[3.0, 0.0], [0.0, 1.0]]  # old rows untouched


def test_init_new_rows_in_a_strategy_predicts_the_clusters_from_the_start():
    class Snapshot(PseudoLabelClusteringPlugin):
        def before_training_exp(self, strategy, **kwargs):
            self.rows = strategy.model.classifier.weight.detach().clone()

    scenario = discovery_stream()
    plugin = Snapshot(num_clusters=2, known_centres=True, init_new_rows=True)
    strategy = naive(linear_probe(), [gate(), plugin], epochs=1)
    for experience in scenario.benchmark.train_stream:
        strategy.train(experience)
    rows = plugin.rows
    old_norm = rows[:3].norm(dim=1).mean()
    assert torch.allclose(rows[3:].norm(dim=1), old_norm.expand(2), rtol=1e-4)
    # the novel blobs lie on axes 3 and 4: each new row points along one of them
    directions = (rows[3:] / rows[3:].norm(dim=1, keepdim=True))[:, 3:5].abs().max(1).values
    assert bool((directions > 0.95).all())


def test_seed_none_means_the_default_seed():
    assert PseudoLabelClusteringPlugin().seed == 0
    assert PseudoLabelClusteringPlugin(seed=7).seed == 7


def test_an_estimated_k_records_its_range_and_warns_when_the_range_censored_it():
    """Four novel blobs: searched over 2..8 the silhouette finds 4 and nothing is flagged; over
    5..8 it can only say 5, the range's lower end, so the run warns and the results say so."""
    for k_range, edge in (((2, 8), None), ((5, 8), "lower")):
        scenario = discovery_stream(num_novel=4, known_in_discovery=0)
        plugin = clustering_plugin(num_clusters=None, k_range=k_range)
        strategy = naive(linear_probe(), [gate(), plugin])
        stream = scenario.benchmark.train_stream
        strategy.train(stream[0])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            strategy.train(stream[1])
        censored = [w for w in caught if "widen k_range" in str(w.message)]
        state = strategy.ncd
        assert state.k_source == "estimated" and state.k_range == k_range
        assert state.num_discovered == (4 if edge is None else 5)
        assert len(censored) == (edge is not None)
        facts = dict(state.facts(), true_labels=scenario.hidden_labels[1], experience=1)
        out = discovery_summary(
            torch.zeros(2, dtype=torch.long), torch.zeros(2), [0, 1, 2], [facts]
        )
        assert out["k_range"] == list(k_range) and out["k_range_edge"] == edge
