"""CIFAR100LT on the real CIFAR-100: published totals, no duplicates, balanced test, seeded choices."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import avalanche_ext  # noqa: F401  (import fixes first)
from avalanche_ext.datasets.cifar import load_cifar100
from avalanche_ext.errors import ConfigError
from scenarios.cifar100_lt import cifar100_lt


def targets(exp) -> list[int]:
    return [int(t) for t in exp.dataset.targets]


@pytest.mark.parametrize("rho, total", [(100, 10847), (50, 12608), (10, 19573)])
def test_published_training_set_sizes(rho, total):
    s = cifar100_lt(imbalance_ratio=rho, test_subset=1)
    (train,) = s.benchmark.train_stream
    assert len(train.dataset) == total == s.info["num_train_images"]
    counts = Counter(targets(train))
    assert [counts[c] for c in range(100)] == s.info["train_class_counts"]
    assert s.info["train_class_counts"][0] == 500
    assert s.info["train_class_counts"][-1] == 500 // rho


def test_both_spellings_build_the_same_split():
    a = cifar100_lt(imbalance_ratio=100, test_subset=1)
    b = cifar100_lt(imbalance_ratio=0.01, test_subset=1)
    assert a.info["train_class_counts"] == b.info["train_class_counts"]
    xa = a.benchmark.train_stream[0].dataset[5][0]
    xb = b.benchmark.train_stream[0].dataset[5][0]
    assert torch.equal(xa, xb)


def _fingerprints(images: torch.Tensor) -> list[bytes]:
    """256 fixed random pixels of each image as bytes: equal images, equal prints (exact)."""
    pixels = torch.randperm(images[0].numel(), generator=torch.Generator().manual_seed(0))[:256]
    return [row.numpy().tobytes() for row in images.flatten(1)[:, pixels]]


@pytest.mark.slow
def test_no_image_is_drawn_twice_and_labels_are_right():
    s = cifar100_lt(imbalance_ratio=10)
    cifar = load_cifar100()
    ds = s.benchmark.train_stream[0].dataset
    sample = list(range(0, len(ds), 10))
    prints = _fingerprints(torch.stack([ds[i][0] for i in sample]))
    assert len(set(prints)) == len(sample)  # distinct images (no replacement)
    label_of = dict(zip(_fingerprints(cifar.train_images), cifar.train_labels.tolist()))
    assert [label_of[p] for p in prints] == [int(ds[i][1]) for i in sample]


def test_balanced_test_set():
    s = cifar100_lt(imbalance_ratio=100)
    (test,) = s.benchmark.test_stream
    assert Counter(targets(test)) == {c: 100 for c in range(100)}


def test_step_profile_and_class_incremental_split():
    s = cifar100_lt(imbalance_type="step", imbalance_ratio=10, num_experiences=4, test_subset=2)
    counts = s.info["train_class_counts"]
    assert counts == [500] * 50 + [50] * 50
    train = s.benchmark.train_stream
    assert len(train) == 4 and s.initial_num_classes == 25
    assert sorted(set(targets(train[1]))) == list(range(25, 50))
    assert len(train[3].dataset) == 25 * 50


def test_random_tail_order_is_seeded_and_separate_from_arrival():
    a = cifar100_lt(tail_order="random", seed=3, test_subset=1)
    b = cifar100_lt(tail_order="random", seed=3, test_subset=1)
    c = cifar100_lt(tail_order="random", seed=4, test_subset=1)
    assert a.info["head_to_tail"] == b.info["head_to_tail"] != c.info["head_to_tail"]
    assert a.info["original_class_ids"] == list(range(100))
    head = a.info["head_to_tail"][0]
    assert a.info["train_class_counts"][head] == 500
    assert sorted(a.info["train_class_counts"]) == sorted(
        cifar100_lt(test_subset=1).info["train_class_counts"]
    )


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(imbalance_ratio=0), "imbalance_ratio"),
        (dict(imbalance_type="linear"), "imbalance_type"),
        (dict(tail_order="by_size"), "tail_order"),
        (dict(n_max=501), "n_max"),
        (dict(num_experiences=0), "num_experiences"),
    ],
)
def test_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"scenario.{key}"):
        cifar100_lt(test_subset=1, **kwargs)


def test_known_novel_scenario_accepts_both_spellings_too():
    from scenarios.cifar100_known_novel import plan_known_novel  # noqa: PLC0415

    cifar = load_cifar100()
    args = dict(imbalance_type="exp", old_fraction=0.0)
    papers = plan_known_novel(
        cifar.train_labels, cifar.test_labels, 100, imbalance_ratio=100, **args
    )
    documents = plan_known_novel(
        cifar.train_labels, cifar.test_labels, 100, imbalance_ratio=0.01, **args
    )
    assert papers.train_class_counts == documents.train_class_counts
    assert torch.equal(papers.base_indices, documents.base_indices)
    # the 80 known classes follow the shared exponential profile (500 -> 5)
    assert sorted(papers.train_class_counts[:80], reverse=True)[0] == 500
    assert min(papers.train_class_counts[:80]) == 5
