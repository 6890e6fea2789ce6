"""CIFAR100KnownNovelLT on the real CIFAR-100 (small per-class caps): counts, splits, hidden labels."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

import avalanche_ext  # noqa: F401  (import fixes first)
from avalanche_ext.builders import build_scenario
from avalanche_ext.datasets.cifar import load_cifar100
from avalanche_ext.datasets.long_tail import long_tail_counts
from avalanche_ext.errors import ConfigError
from avalanche_ext.scenario import UNLABELED
from avalanche_ext.transforms import ToTensor
from scenarios.cifar100_known_novel import cifar100_known_novel_lt, plan_known_novel

SMALL = dict(train_subset=30, test_subset=4)


def build(**kwargs):
    return cifar100_known_novel_lt(**{**SMALL, **kwargs})


def targets(exp) -> list[int]:
    return [int(t) for t in exp.dataset.targets]


@pytest.fixture(scope="module")
def cifar():
    return load_cifar100()


@pytest.fixture(scope="module")
def default():
    return build()


def test_default_split_counts_and_ids(default, cifar):
    s = default
    info = s.info
    assert s.num_classes == 100 and s.initial_num_classes == 80
    assert info["known_classes"] == list(range(80)) and info["novel_classes"] == list(
        range(80, 100)
    )
    assert info["original_class_ids"] == list(range(100))
    assert info["novel_classes_original"] == list(range(80, 100))
    assert s.class_names == cifar.class_names
    # 20 novel x 30 images; old_fraction 0.2 -> 600 * 0.25 = 150 known images, ceil(150/80) = 2
    # held back per known class, so n_max = 30 - 2 = 28; step 0.5 of rho 0.5 -> 40 x 28, 40 x 14
    assert info["held_back_per_class"] == 2 and info["n_max"] == 28
    base = Counter(targets(s.benchmark.train_stream[0]))
    assert sorted(base.values(), reverse=True) == [28] * 40 + [14] * 40
    assert [base[c] for c in range(80)] == info["train_class_counts"][:80]
    assert info["train_class_counts"][80:] == [30] * 20
    assert [len(e.dataset) for e in s.benchmark.train_stream] == [40 * 28 + 40 * 14, 750]
    (disc,) = info["discovery_experiences"]
    assert (disc["num_novel_images"], disc["num_known_images"]) == (600, 150)
    assert disc["known_fraction"] == pytest.approx(0.2)


def test_head_tail_order_is_seeded(cifar):
    a, b, c = build(seed=0), build(seed=0), build(seed=1)
    assert a.info["train_class_counts"] == b.info["train_class_counts"]
    assert a.info["head_to_tail"] == b.info["head_to_tail"]
    assert a.info["head_to_tail"] != c.info["head_to_tail"]
    counts = a.info["train_class_counts"]
    assert [counts[k] for k in a.info["head_to_tail"]] == sorted(counts[:80], reverse=True)


@pytest.mark.parametrize(
    "imbalance_type, ratio", [("exp", 0.1), ("exp", 0.01), ("step", 0.1), ("exp", 1.0)]
)
def test_imbalance_profiles(imbalance_type, ratio):
    s = build(imbalance_type=imbalance_type, imbalance_ratio=ratio, old_fraction=0.0)
    base = Counter(targets(s.benchmark.train_stream[0]))
    expected = long_tail_counts(80, 30, imbalance_type, ratio, 0.5)
    assert sorted(base.values(), reverse=True) == expected
    if ratio == 1.0:
        assert set(base.values()) == {30}


def test_random_novel_classes_seeded_and_reproducible():
    a, b, c = (build(novel_classes="random", seed=s) for s in (3, 3, 4))
    novel = a.info["novel_classes_original"]
    assert len(novel) == 20 and novel == sorted(novel) and novel != list(range(80, 100))
    assert novel == b.info["novel_classes_original"]
    assert novel != c.info["novel_classes_original"]
    known_original = a.info["original_class_ids"][:80]
    assert set(known_original).isdisjoint(novel) and known_original == sorted(known_original)


def test_superclass_mode_keeps_superclasses_apart(cifar):
    s = build(novel_classes="superclass", num_novel=10, num_novel_experiences=2)
    coarse_of = {int(f): int(c) for f, c in zip(cifar.train_labels, cifar.train_coarse)}
    novel = s.info["novel_classes_original"]
    known = s.info["original_class_ids"][:90]
    novel_super = {coarse_of[c] for c in novel}
    assert len(novel) == 10 and len(novel_super) == 2
    assert novel_super.isdisjoint(coarse_of[c] for c in known)
    # one superclass per discovery experience
    for disc in s.info["discovery_experiences"]:
        assert len({coarse_of[c] for c in disc["novel_classes_original"]}) == 1
    assert s.info["superclass_of"] == [coarse_of[c] for c in s.info["original_class_ids"]]


def test_superclass_needs_multiple_of_five():
    with pytest.raises(ConfigError, match="scenario.num_novel.*multiple of 5"):
        build(novel_classes="superclass", num_novel=7)


def test_explicit_novel_list(cifar):
    chosen = [3, 1, 4, 15, 9]
    s = build(novel_classes=chosen, num_novel=20)
    assert s.info["novel_classes_original"] == chosen
    assert s.num_classes == 100 and s.initial_num_classes == 95
    assert s.class_names[95:] == [cifar.class_names[c] for c in chosen]
    assert s.info["original_class_ids"][:95] == [c for c in range(100) if c not in chosen]
    assert sorted(set(s.hidden_labels[1].tolist()) - set(range(95))) == list(range(95, 100))


@pytest.mark.parametrize(
    "value", ["first", [200], [1, 1], list(range(100)), 3.5, [], ["a"]], ids=str
)
def test_bad_novel_classes(value):
    with pytest.raises(ConfigError, match="scenario.novel_classes"):
        build(novel_classes=value)


def test_four_discovery_experiences_and_aligned_test_stream():
    s = build(num_novel_experiences=4)
    train, test = s.benchmark.train_stream, s.benchmark.test_stream
    assert len(train) == 5 and len(test) == 5
    groups = [d["novel_classes"] for d in s.info["discovery_experiences"]]
    assert groups == [list(range(80 + 5 * j, 85 + 5 * j)) for j in range(4)]
    assert sorted(test[0].classes_in_this_experience) == list(range(80))
    for j, group in enumerate(groups, start=1):
        assert set(train[j].classes_in_this_experience) == {UNLABELED}
        labels = s.hidden_labels[j]
        assert set(labels[labels >= 80].tolist()) == set(group)
        assert Counter(labels[labels >= 80].tolist()) == {c: 30 for c in group}
        assert sorted(test[j].classes_in_this_experience) == group
        assert len(test[j].dataset) == 5 * 4


def test_novel_shots_few_shot_counts():
    s = build(novel_shots=5, old_fraction=0.2)
    labels = s.hidden_labels[1]
    assert Counter(labels[labels >= 80].tolist()) == {c: 5 for c in range(80, 100)}
    assert s.info["train_class_counts"][80:] == [5] * 20
    # 100 novel images -> round(100 * 0.25) = 25 known images, 20 % of 125
    assert int((labels < 80).sum()) == 25 and len(labels) == 125


def test_novel_shots_too_many():
    with pytest.raises(ConfigError, match="scenario.novel_shots"):
        build(novel_shots=31)


def test_old_fraction_composition_and_disjoint_from_base(cifar):
    s = build(old_fraction=0.3, num_novel_experiences=2)
    for j in (1, 2):
        labels = s.hidden_labels[j]
        known = labels[labels < 80]
        assert len(known) / len(labels) == pytest.approx(0.3, abs=0.01)
        # the known share is dealt round-robin: class-balanced up to one image
        per_class = torch.bincount(known, minlength=80)
        assert int(per_class.max() - per_class.min()) <= 1
    plan = plan_known_novel(
        cifar.train_labels,
        cifar.test_labels,
        100,
        old_fraction=0.3,
        num_novel_experiences=2,
        **SMALL,
    )
    base = set(plan.base_indices.tolist())
    seen = set()
    for indices in plan.discovery_indices:
        assert base.isdisjoint(indices.tolist()) and seen.isdisjoint(indices.tolist())
        seen |= set(indices.tolist())


def test_num_known_keeps_a_class_subset(cifar):
    s = build(num_known=10, num_novel=10, imbalance_type="none")
    assert s.num_classes == 20 and s.initial_num_classes == 10
    assert s.info["original_class_ids"] == list(range(10)) + list(range(90, 100))
    assert s.class_names == [cifar.class_names[c] for c in list(range(10)) + list(range(90, 100))]
    plan = plan_known_novel(
        cifar.train_labels, cifar.test_labels, 100, num_known=10, num_novel=10, **SMALL
    )
    used = set(range(10)) | set(range(90, 100))
    train = torch.cat([plan.base_indices, *plan.discovery_indices])
    assert {int(c) for c in cifar.train_labels[train]} == used
    tests = torch.cat(list(plan.test_indices.values()))
    assert {int(c) for c in cifar.test_labels[tests]} == used
    # the test prior is now half novel; every image keeps its class through the remap
    test_targets = [int(t) for e in s.benchmark.test_stream for t in e.dataset.targets]
    assert Counter(test_targets) == {c: 4 for c in range(20)}
    # 10 novel x 30 images; 0.2 old -> 75 known images held back, ceil(75 / 10) = 8 per class
    assert s.info["held_back_per_class"] == 8 and s.info["n_max"] == 22
    assert len(s.benchmark.train_stream[0].dataset) == 10 * 22


@pytest.mark.parametrize("value, match", [(0, "positive int"), (81, "only 80 classes")])
def test_bad_num_known(value, match):
    with pytest.raises(ConfigError, match=f"scenario.num_known.*{match}"):
        build(num_known=value)


def test_no_old_fraction_means_only_novel():
    s = build(old_fraction=0.0)
    assert bool((s.hidden_labels[1] >= 80).all()) and s.info["held_back_per_class"] == 0
    assert s.info["n_max"] == 30


def test_old_fraction_out_of_range():
    with pytest.raises(ConfigError, match="scenario.old_fraction"):
        build(old_fraction=1.0)


def test_hidden_experience_yields_index_and_no_label(default):
    exp = default.benchmark.train_stream[1]
    assert set(targets(exp)) == {UNLABELED}
    for i in (0, 7, len(exp.dataset) - 1):
        x, y, index, task = exp.dataset[i]
        assert (y, index, task) == (UNLABELED, i, 0) and x.dtype == torch.uint8
    labels = default.hidden_labels[1]
    assert len(labels) == len(exp.dataset) and int(labels.max()) >= 80


def test_hidden_labels_aligned_with_sample_index():
    hidden = build(hide_novel_labels=True)
    shown = build(hide_novel_labels=False)
    h_data, s_data = (
        hidden.benchmark.train_stream[1].dataset,
        shown.benchmark.train_stream[1].dataset,
    )
    assert targets(shown.benchmark.train_stream[1]) == hidden.hidden_labels[1].tolist()
    for i in (0, 123, len(h_data) - 1):
        x_hidden, _, index, _ = h_data[i]
        x_shown, y, _ = s_data[i]
        assert torch.equal(x_hidden, x_shown) and y == int(hidden.hidden_labels[1][index])
    assert sorted(shown.benchmark.train_stream[1].classes_in_this_experience)[-1] == 99


class _LabelSpy:
    """Records what a strategy could read as labels during a discovery experience."""

    def __init__(self):
        from avalanche.core import SupervisedPlugin  # noqa: PLC0415

        spy = self

        class Plugin(SupervisedPlugin):
            def before_training_exp(self, strategy, **kwargs):
                spy.targets.append([int(t) for t in strategy.experience.dataset.targets])

            def after_forward(self, strategy, **kwargs):
                spy.mb_y.append(strategy.mb_y.clone())
                spy.indices.append(strategy.mbatch[2].clone())

            def after_training_iteration(self, strategy, **kwargs):
                strategy.stop_training()

        self.plugin = Plugin()
        self.targets: list[list[int]] = []
        self.mb_y: list[torch.Tensor] = []
        self.indices: list[torch.Tensor] = []


def _reachable_label_copies(root, labels: torch.Tensor, max_depth: int = 12) -> list[str]:
    """Paths from ``root`` (attributes, dict values, short sequences) to a copy of ``labels``."""
    found, seen, todo = [], set(), [(root, "exp", 0)]
    while todo:
        obj, path, depth = todo.pop()
        if id(obj) in seen or depth > max_depth or isinstance(obj, (str, bytes, int, float, type)):
            continue
        seen.add(id(obj))
        if torch.is_tensor(obj):
            if obj.numel() == len(labels) and torch.equal(obj.flatten().long(), labels):
                found.append(path)
            continue
        if isinstance(obj, (list, tuple)) and len(obj) == len(labels):
            if [int(v) if isinstance(v, int) else None for v in obj] == labels.tolist():
                found.append(path)
        children = list(vars(obj).items()) if hasattr(obj, "__dict__") else []
        if isinstance(obj, dict):
            children += list(obj.items())
        elif isinstance(obj, (list, tuple)) and len(obj) < 50:
            children += list(enumerate(obj))
        todo += [(v, f"{path}.{k}", depth + 1) for k, v in children]
    return found


def test_no_attribute_of_the_experience_leads_to_the_labels(default):
    exp = default.benchmark.train_stream[1]
    assert _reachable_label_copies(exp, default.hidden_labels[1]) == []
    # the crawler does find labels where they are meant to be: the labeled upper bound
    shown = build(hide_novel_labels=False)
    assert _reachable_label_copies(shown.benchmark.train_stream[1], shown.hidden_labels[1])


@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_naive_strategy_never_sees_hidden_labels(default):
    from avalanche.training.plugins import EvaluationPlugin  # noqa: PLC0415
    from avalanche.training.supervised import Naive  # noqa: PLC0415

    scenario = cifar100_known_novel_lt(
        **SMALL, train_transform=ToTensor(), eval_transform=ToTensor()
    )
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 100))
    spy = _LabelSpy()
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        criterion=torch.nn.CrossEntropyLoss(ignore_index=UNLABELED),
        train_mb_size=64,
        train_epochs=1,
        device="cpu",
        plugins=[spy.plugin],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    strategy.train(scenario.benchmark.train_stream[1])
    assert spy.mb_y and all(bool((y == UNLABELED).all()) for y in spy.mb_y)
    assert spy.targets and set(spy.targets[0]) == {UNLABELED}
    assert len(spy.mb_y[0]) == 64 and bool((spy.indices[0] < len(scenario.hidden_labels[1])).all())
    # the labels exist, just not for the strategy: a leak would have shown them above
    seen = scenario.hidden_labels[1][spy.indices[0]]
    assert bool((seen >= 80).any())


def test_eval_streams(default):
    streams = default.eval_streams
    assert set(streams) == {"known_test", "novel_test", "all_test"}
    expected = {"known_test": range(80), "novel_test": range(80, 100), "all_test": range(100)}
    for name, classes in expected.items():
        (exp,) = list(streams[name])
        assert Counter(targets(exp)) == {c: 4 for c in classes}
        assert exp.origin_stream.name == name
    assert default.benchmark.known_test_stream is streams["known_test"]


def test_built_through_the_registry():
    cfg = dict(
        type="CIFAR100KnownNovelLT",
        **SMALL,
        train_transform=[dict(type="ToTensor")],
        eval_transform=[
            dict(type="ToTensor"),
            dict(type="Normalize", mean=[0.5] * 3, std=[0.25] * 3),
        ],
    )
    s = build_scenario(cfg)
    x, y, _ = s.benchmark.train_stream[0].dataset[0]
    assert x.dtype == torch.float32 and float(x.max()) <= 1.0 and 0 <= y < 80


def test_missing_dataset_root(tmp_path):
    with pytest.raises(ConfigError, match="scenario.dataset_root"):
        build(dataset_root=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="scenario.dataset_root"):
        build(dataset_root=str(tmp_path))


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(ConfigError, match="scenario.dataset"):
        build(dataset=str(tmp_path / "tiny-imagenet"))


def _image_folder(root, classes=6, train=8, test=3, size=16, odd_size=False):
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for c in range(classes):
            folder = root / split / f"n{c:04d}"
            folder.mkdir(parents=True)
            for i in range(n):
                side = size + 2 if (odd_size and i == 0) else size
                color = np.full((side, side, 3), 40 * c, dtype=np.uint8)
                noise = rng.integers(0, 20, (side, side, 3), dtype=np.uint8)
                Image.fromarray(color + noise).save(folder / f"{i}.png")
    return root


def test_image_folder_dataset(tmp_path):
    root = _image_folder(tmp_path / "folder")
    s = cifar100_known_novel_lt(
        dataset=str(root),
        num_novel=2,
        num_novel_experiences=2,
        old_fraction=0.2,
        imbalance_ratio=0.5,
    )
    assert s.num_classes == 6 and s.initial_num_classes == 4
    assert s.class_names == [f"n{c:04d}" for c in range(6)]
    # one novel class of 8 images per discovery experience + round(8 * 0.25) = 2 known images;
    # 4 known images over 4 known classes: 1 held back each, n_max = 8 - 1 = 7
    assert s.info["held_back_per_class"] == 1 and s.info["n_max"] == 7
    assert sorted(Counter(targets(s.benchmark.train_stream[0])).values()) == [3, 3, 7, 7]
    x, y, index, _ = s.benchmark.train_stream[1].dataset[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8 and y == UNLABELED
    assert Counter(targets(s.eval_streams["all_test"][0])) == {c: 3 for c in range(6)}
    assert [len(s.hidden_labels[j]) for j in (1, 2)] == [10, 10]


def test_image_folder_relative_to_root_and_resize(tmp_path):
    _image_folder(tmp_path / "odd", odd_size=True)
    with pytest.raises(ConfigError, match="image_size"):
        cifar100_known_novel_lt(dataset="odd", dataset_root=str(tmp_path), num_novel=2)
    s = cifar100_known_novel_lt(
        dataset="odd", dataset_root=str(tmp_path), num_novel=2, image_size=8
    )
    assert s.benchmark.train_stream[0].dataset[0][0].shape == (3, 8, 8)


def test_image_folder_has_no_superclasses(tmp_path):
    root = _image_folder(tmp_path / "folder")
    with pytest.raises(ConfigError, match="scenario.novel_classes.*superclass"):
        cifar100_known_novel_lt(dataset=str(root), novel_classes="superclass", num_novel=5)


def test_image_folder_needs_train_and_test(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="scenario.dataset.*train/ and test/"):
        cifar100_known_novel_lt(dataset=str(tmp_path), num_novel=1)
