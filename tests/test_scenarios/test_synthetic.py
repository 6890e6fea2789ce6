"""SyntheticStream: shapes, counts, determinism, the hidden-novel experience, and that it is learnable."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import avalanche_ext  # noqa: F401  (import fixes first)
from avalanche_ext.builders import build_scenario
from avalanche_ext.datasets.long_tail import long_tail_counts
from avalanche_ext.errors import ConfigError
from avalanche_ext.scenario import UNLABELED
from scenarios.synthetic import synthetic_stream


def targets(exp) -> list[int]:
    return [int(t) for t in exp.dataset.targets]


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([it[0] for it in items]), torch.tensor([it[1] for it in items])


def test_default_stream():
    s = synthetic_stream()
    train, test = s.benchmark.train_stream, s.benchmark.test_stream
    assert s.num_classes == 10 and s.initial_num_classes == 2 and len(train) == len(test) == 5
    for e in range(5):
        assert Counter(targets(train[e])) == {2 * e: 100, 2 * e + 1: 100}
        assert Counter(targets(test[e])) == {2 * e: 20, 2 * e + 1: 20}
    x, y, t = train[0].dataset[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and t == 0
    assert s.eval_streams == {} and s.hidden_labels == {}
    assert s.info["train_class_counts"] == [100] * 10


def test_deterministic_per_seed():
    a = synthetic_stream(num_experiences=1, seed=3).benchmark.train_stream[0].dataset
    b = synthetic_stream(num_experiences=1, seed=3).benchmark.train_stream[0].dataset
    c = synthetic_stream(num_experiences=1, seed=4).benchmark.train_stream[0].dataset
    assert torch.equal(stack(a)[0], stack(b)[0]) and not torch.equal(stack(a)[0], stack(c)[0])


def test_hidden_novel_discovery_experience():
    s = synthetic_stream(num_classes=8, num_experiences=2, hidden_novel=3, old_fraction=0.25)
    train, test = s.benchmark.train_stream, s.benchmark.test_stream
    assert len(train) == len(test) == 3 and s.initial_num_classes == 3
    disc = train[2]
    assert set(targets(disc)) == {UNLABELED}
    x, y, index, task = disc.dataset[5]
    assert (y, index, task) == (UNLABELED, 5, 0)
    labels = s.hidden_labels[2]
    # 300 novel images; 25 % known -> 100 known images, ceil(100 / 5) = 20 held back per class
    assert Counter(labels[labels >= 5].tolist()) == {5: 100, 6: 100, 7: 100}
    assert int((labels < 5).sum()) == 100 and s.info["held_back_per_class"] == 20
    assert sorted(test[2].classes_in_this_experience) == [5, 6, 7]
    assert s.info["novel_classes"] == [5, 6, 7] and s.info["known_classes"] == list(range(5))
    assert Counter(targets(s.eval_streams["novel_test"][0])) == {5: 20, 6: 20, 7: 20}
    assert len(s.eval_streams["all_test"][0].dataset) == 160


def test_long_tail_counts_are_seeded():
    s = synthetic_stream(num_classes=6, num_experiences=1, long_tail_ratio=0.1)
    counts = Counter(targets(s.benchmark.train_stream[0]))
    assert sorted(counts.values(), reverse=True) == long_tail_counts(6, 100, "exp", 0.1)
    assert [counts[c] for c in range(6)] == s.info["train_class_counts"]


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(num_classes=3, hidden_novel=3), "num_classes"),
        (dict(num_experiences=20), "num_experiences"),
        (dict(image_size=2), "image_size"),
        (dict(long_tail_ratio=0.0), "imbalance_ratio"),
        (dict(hidden_novel=2, old_fraction=1.0), "old_fraction"),
    ],
)
def test_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"scenario.{key}"):
        synthetic_stream(**kwargs)


def test_built_through_the_registry():
    s = build_scenario(
        dict(type="SyntheticStream", num_experiences=2, train_transform=[dict(type="ToTensor")])
    )
    assert s.benchmark.train_stream[0].dataset[0][0].dtype == torch.float32


@pytest.mark.slow
def test_a_small_cnn_learns_it_in_two_epochs():
    s = synthetic_stream(num_classes=10, num_experiences=1)
    x, y = stack(s.benchmark.train_stream[0].dataset)
    xt, yt = stack(s.benchmark.test_stream[0].dataset)
    x, xt = (x.float() / 255 - 0.5) / 0.3, (xt.float() / 255 - 0.5) / 0.3
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):
        model.train()
        for batch in torch.randperm(len(x)).split(32):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    assert accuracy >= 0.9
