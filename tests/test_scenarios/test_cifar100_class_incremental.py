"""CIFAR100ClassIncremental on the real CIFAR-100 (small per-class caps): splits, order, counts."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import avalanche_ext  # noqa: F401  (import fixes first)
from avalanche_ext.builders import build_scenario
from avalanche_ext.datasets.cifar import load_cifar100
from avalanche_ext.errors import ConfigError
from scenarios.cifar100_class_incremental import cifar100_class_incremental

SMALL = dict(train_subset=10, test_subset=3)


def targets(exp) -> list[int]:
    return [int(t) for t in exp.dataset.targets]


def test_five_experiences_of_twenty_classes():
    s = cifar100_class_incremental(**SMALL)
    train, test = s.benchmark.train_stream, s.benchmark.test_stream
    assert s.num_classes == 100 and s.initial_num_classes == 20
    assert s.class_names == load_cifar100().class_names
    assert len(train) == len(test) == 5
    for e in range(5):
        classes = list(range(20 * e, 20 * e + 20))
        assert Counter(targets(train[e])) == {c: 10 for c in classes}
        assert Counter(targets(test[e])) == {c: 3 for c in classes}
    assert s.info["train_class_counts"] == [10] * 100
    assert s.info["classes_per_experience"][1] == list(range(20, 40))


def test_random_order_is_seeded_and_remapped(tmp_path):
    a = cifar100_class_incremental(class_order="random", seed=5, **SMALL)
    b = cifar100_class_incremental(class_order="random", seed=5, **SMALL)
    c = cifar100_class_incremental(class_order="random", seed=6, **SMALL)
    order = a.info["original_class_ids"]
    assert sorted(order) == list(range(100)) and order != list(range(100))
    assert order == b.info["original_class_ids"] and order != c.info["original_class_ids"]
    names = load_cifar100().class_names
    assert a.class_names == [names[k] for k in order]
    # an image of new class 0 is an image of original class order[0]
    x, y, _ = a.benchmark.train_stream[0].dataset[0]
    cifar = load_cifar100()
    matches = (cifar.train_images == x).flatten(1).all(1).nonzero().flatten()
    assert int(cifar.train_labels[matches[0]]) == order[y]


def test_explicit_subset_order_and_uneven_split():
    order = [10, 20, 30, 40, 50, 60, 70]
    s = cifar100_class_incremental(num_experiences=3, class_order=order, **SMALL)
    assert s.num_classes == 7 and s.initial_num_classes == 3
    assert [sorted(set(targets(e))) for e in s.benchmark.train_stream] == [
        [0, 1, 2],
        [3, 4],
        [5, 6],
    ]
    assert s.info["original_class_ids"] == order


def test_uneven_split_of_all_classes():
    s = cifar100_class_incremental(num_experiences=3, **SMALL)
    assert [len(e.dataset) for e in s.benchmark.train_stream] == [340, 330, 330]


def test_subset_choice_is_seeded():
    a = cifar100_class_incremental(num_experiences=1, seed=0, **SMALL).benchmark.train_stream[0]
    b = cifar100_class_incremental(num_experiences=1, seed=1, **SMALL).benchmark.train_stream[0]
    assert not torch.equal(a.dataset[0][0], b.dataset[0][0])


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(class_order="shuffled"), "class_order"),
        (dict(class_order=[1, 1, 2]), "class_order"),
        (dict(class_order=[100]), "class_order"),
        (dict(num_experiences=0), "num_experiences"),
        (dict(num_experiences=101), "num_experiences"),
        (dict(train_subset=0), "train_subset"),
        (dict(seed=-1), "seed"),
    ],
)
def test_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"scenario.{key}"):
        cifar100_class_incremental(**{**SMALL, **kwargs})


def test_built_through_the_registry_with_transforms():
    s = build_scenario(
        dict(
            type="CIFAR100ClassIncremental",
            num_experiences=2,
            **SMALL,
            train_transform=[dict(type="RandomCrop", size=32, padding=4), dict(type="ToTensor")],
            eval_transform=[dict(type="ToTensor")],
        )
    )
    x, y, t = s.benchmark.train_stream[0].dataset[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and (y, t) == (y, 0)
    assert len(s.benchmark.test_stream) == 2
