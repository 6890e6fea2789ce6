"""CIFAR-100 (or any image-folder dataset) as known classes with a long tail, then unlabeled novel ones.

Experience 0 trains on the K known classes (long-tailed, labeled); each discovery experience brings
novel-class images, plus held-back known-class images, with their labels hidden (``y == -1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from avalanche_ext.datasets.long_tail import long_tail_counts
from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import SCENARIOS
from avalanche_ext.scenario import BuiltScenario
from avalanche_ext.scenarios._cifar_common import (
    check_cap,
    check_seed,
    discovery_known_counts,
    eval_dataset,
    gather_images,
    interleave_by_class,
    known_novel_eval_sets,
    labeled_dataset,
    load_image_source,
    make_benchmark_with_eval_streams,
    per_class_indices,
    remap_table,
    seeded_rng,
    split_evenly,
    unlabeled_dataset,
)

__all__ = [
    "NOVEL_CLASS_SELECTORS",
    "KnownNovelPlan",
    "cifar100_known_novel_lt",
    "plan_known_novel",
    "select_novel_classes",
]

KEY = "scenario"


def _select_last(
    num_classes: int, num_novel: int, seed: int, superclass_of: Sequence[int] | None
) -> list[int]:
    """The last ``num_novel`` original ids (CIFAR-100: 80-99, the standard NCD split)."""
    return list(range(num_classes - num_novel, num_classes))


def _select_random(
    num_classes: int, num_novel: int, seed: int, superclass_of: Sequence[int] | None
) -> list[int]:
    """A seeded random draw, ascending."""
    chosen = seeded_rng(seed, "novel-classes").choice(num_classes, size=num_novel, replace=False)
    return sorted(int(c) for c in chosen)


def _select_superclass(
    num_classes: int, num_novel: int, seed: int, superclass_of: Sequence[int] | None
) -> list[int]:
    """Whole superclasses (seeded draw), so no novel class shares a superclass with a known one.

    The novel classes are grouped by superclass (in draw order), ascending within each, so
    ``num_novel_experiences = num_novel / 5`` gives one superclass per discovery experience.
    """
    if superclass_of is None:
        raise ConfigError(
            f"{KEY}.novel_classes: 'superclass' needs a dataset with superclasses (CIFAR-100); "
            "an image-folder dataset has none: use 'last', 'random' or a list of class ids"
        )
    groups: dict[int, list[int]] = {}
    for fine, coarse in enumerate(superclass_of):
        groups.setdefault(int(coarse), []).append(fine)
    sizes = {len(members) for members in groups.values()}
    size = sizes.pop() if len(sizes) == 1 else None
    if size is None or num_novel % size:
        raise ConfigError(
            f"{KEY}.num_novel: 'superclass' mode makes whole superclasses of {size or 'varying'} "
            f"classes novel, so num_novel must be a multiple of {size or 'their sizes'}; "
            f"got {num_novel}"
        )
    order = seeded_rng(seed, "novel-superclasses").permutation(sorted(groups))
    chosen = [int(s) for s in order[: num_novel // size]]
    return [fine for s in chosen for fine in sorted(groups[s])]


NOVEL_CLASS_SELECTORS: dict[str, Callable[[int, int, int, Sequence[int] | None], list[int]]] = {
    "last": _select_last,
    "random": _select_random,
    "superclass": _select_superclass,
}
"""``novel_classes`` mode -> ``f(num_classes, num_novel, seed, superclass_of) -> original ids``."""


def select_novel_classes(
    novel_classes: str | Sequence[int],
    num_classes: int,
    num_novel: int,
    seed: int,
    superclass_of: Sequence[int] | None = None,
) -> list[int]:
    """Original ids of the novel classes, in their new-id order.

    Args:
        novel_classes: a key of :data:`NOVEL_CLASS_SELECTORS`, or an explicit list of original
            class ids (its length overrides ``num_novel``; its order is the new-id order).
        num_classes: classes in the dataset.
        num_novel: how many novel classes (ignored for an explicit list).
        seed: random seed for ``'random'`` and ``'superclass'``.
        superclass_of: original class id -> superclass id (None when the dataset has none).

    Raises:
        ConfigError: unknown mode, bad ids, or a ``num_novel`` the mode cannot give.
    """
    if isinstance(novel_classes, str):
        if novel_classes not in NOVEL_CLASS_SELECTORS:
            raise ConfigError(
                f"{KEY}.novel_classes: unknown mode {novel_classes!r}; choose one of "
                f"{', '.join(repr(k) for k in NOVEL_CLASS_SELECTORS)} or a list of class ids"
            )
        if isinstance(num_novel, bool) or not isinstance(num_novel, int):
            raise ConfigError(f"{KEY}.num_novel: expected an int, got {num_novel!r}")
        if not 1 <= num_novel < num_classes:
            raise ConfigError(
                f"{KEY}.num_novel: must be in [1, {num_classes - 1}] for a dataset of "
                f"{num_classes} classes, got {num_novel}"
            )
        return NOVEL_CLASS_SELECTORS[novel_classes](num_classes, num_novel, seed, superclass_of)
    if not isinstance(novel_classes, Sequence) or not novel_classes:
        raise ConfigError(
            f"{KEY}.novel_classes: expected 'last', 'random', 'superclass' or a non-empty list "
            f"of class ids, got {novel_classes!r}"
        )
    ids = list(novel_classes)
    bad = [
        c for c in ids if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes
    ]
    if bad:
        raise ConfigError(
            f"{KEY}.novel_classes: class ids must be ints in [0, {num_classes - 1}], got {bad[:5]}"
        )
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{KEY}.novel_classes: duplicate class ids in {ids}")
    if len(ids) >= num_classes:
        raise ConfigError(f"{KEY}.novel_classes: at least one class must stay known")
    return ids


@dataclass
class KnownNovelPlan:
    """Which image goes where, as indices into the source splits (no images touched).

    Args:
        known_original: original ids of the known classes; new id = position (0..K-1).
        novel_original: original ids of the novel classes; new id = K + position.
        base_indices: train-split indices of the base (labeled, long-tailed) experience.
        discovery_indices: per discovery experience, train-split indices in presentation order
            (novel and held-back known images shuffled together).
        discovery_classes: per discovery experience, the new ids of its novel classes.
        known_in_discovery: per discovery experience, how many of its images are known-class.
        test_indices: per new class id, test-split indices.
        train_class_counts: per new class id: base images for known classes, discovery images
            for novel ones.
        held_back_per_class: known-class images reserved per class for the discovery experiences.
        n_max: images of the most frequent known class in the base experience.
        head_to_tail: known new ids from the most to the least frequent.
    """

    known_original: list[int]
    novel_original: list[int]
    base_indices: torch.Tensor
    discovery_indices: list[torch.Tensor]
    discovery_classes: list[list[int]]
    known_in_discovery: list[int]
    test_indices: dict[int, torch.Tensor]
    train_class_counts: list[int]
    held_back_per_class: int
    n_max: int
    head_to_tail: list[int]


def _check_positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a positive int, got {value!r}")
    return value


def plan_known_novel(
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    superclass_of: Sequence[int] | None = None,
    novel_classes: str | Sequence[int] = "last",
    num_novel: int = 20,
    imbalance_type: str = "step",
    imbalance_ratio: float = 0.5,
    step_fraction: float = 0.5,
    num_novel_experiences: int = 1,
    novel_shots: int | None = None,
    old_fraction: float = 0.2,
    num_known: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> KnownNovelPlan:
    """Decides the known/novel split, the long tail and every experience's images.

    Steps: each class's training images are put in a seeded order (capped at ``train_subset``);
    each known class reserves its first ``h`` images for the discovery experiences
    (``h = ceil(sum_j o_j / K)``, see :func:`discovery_known_counts`); the base experience takes the
    next ``n_c`` images of class ``c`` with ``n_c`` from :func:`long_tail_counts` over
    ``n_max = min_c(pool_c) - h``, the counts assigned to the known classes in a seeded order
    (which classes are head or tail). The reserved images are dealt round-robin over the known
    classes, so each discovery experience's known share is class-balanced; reserved images left
    over are used nowhere. Arguments are those of :func:`cifar100_known_novel_lt`.
    """
    seed = check_seed(seed, f"{KEY}.seed")
    train_subset = check_cap(train_subset, f"{KEY}.train_subset")
    test_subset = check_cap(test_subset, f"{KEY}.test_subset")
    novel = select_novel_classes(novel_classes, num_classes, num_novel, seed, superclass_of)
    novel_set = set(novel)
    known = [c for c in range(num_classes) if c not in novel_set]
    if num_known is not None:
        num_known = _check_positive_int(num_known, f"{KEY}.num_known")
        if num_known > len(known):
            raise ConfigError(
                f"{KEY}.num_known: {num_known} known classes asked, only {len(known)} classes "
                "are not novel"
            )
        known = known[:num_known]
    num_known, num_novel = len(known), len(novel)
    num_exps = _check_positive_int(num_novel_experiences, f"{KEY}.num_novel_experiences")
    if num_exps > num_novel:
        raise ConfigError(
            f"{KEY}.num_novel_experiences: {num_exps} experiences for {num_novel} novel classes"
        )

    pools = per_class_indices(train_labels, range(num_classes), seed, "train", train_subset)
    empty = [c for c in range(num_classes) if len(pools[c]) == 0]
    if empty:
        raise ConfigError(f"{KEY}.dataset: classes {empty[:5]} have no training images")
    if novel_shots is not None:
        novel_shots = _check_positive_int(novel_shots, f"{KEY}.novel_shots")
        fewest = min(len(pools[c]) for c in novel)
        if novel_shots > fewest:
            raise ConfigError(
                f"{KEY}.novel_shots: {novel_shots} shots but a novel class has only {fewest} "
                "training images (after train_subset)"
            )
    novel_train = {c: pools[c][:novel_shots] for c in novel}

    new_id = {c: i for i, c in enumerate(known + novel)}
    discovery_original = split_evenly(novel, num_exps)
    novel_sizes = [sum(len(novel_train[c]) for c in group) for group in discovery_original]
    known_in_discovery = discovery_known_counts(novel_sizes, old_fraction)
    held_back = math.ceil(sum(known_in_discovery) / num_known)
    n_max = min(len(pools[c]) for c in known) - held_back
    if n_max < 1:
        raise ConfigError(
            f"{KEY}.old_fraction: holding back {held_back} images per known class leaves none for "
            f"the base experience (a known class has {n_max + held_back} training images)"
        )

    counts = long_tail_counts(num_known, n_max, imbalance_type, imbalance_ratio, step_fraction, KEY)
    tail_order = seeded_rng(seed, "tail-order").permutation(num_known).tolist()
    base_count = {known[k]: counts[rank] for rank, k in enumerate(tail_order)}
    base_indices = torch.cat([pools[c][held_back : held_back + base_count[c]] for c in known])

    deal_order = [known[k] for k in seeded_rng(seed, "held-back-order").permutation(num_known)]
    reserved = interleave_by_class({c: pools[c][:held_back] for c in known}, deal_order)
    discovery_indices, start = [], 0
    for j, (group, n_known) in enumerate(zip(discovery_original, known_in_discovery)):
        chunk = torch.cat([novel_train[c] for c in group] + [reserved[start : start + n_known]])
        start += n_known
        shuffle = torch.from_numpy(seeded_rng(seed, f"discovery-{j}").permutation(len(chunk)))
        discovery_indices.append(chunk[shuffle])

    tests = per_class_indices(test_labels, range(num_classes), seed, "test", test_subset)
    train_class_counts = [base_count[c] for c in known] + [len(novel_train[c]) for c in novel]
    return KnownNovelPlan(
        known_original=known,
        novel_original=novel,
        base_indices=base_indices,
        discovery_indices=discovery_indices,
        discovery_classes=[[new_id[c] for c in group] for group in discovery_original],
        known_in_discovery=known_in_discovery,
        test_indices={new_id[c]: tests[c] for c in known + novel},
        train_class_counts=train_class_counts,
        held_back_per_class=held_back,
        n_max=n_max,
        head_to_tail=[int(k) for k in tail_order],
    )


@SCENARIOS.register_module(name="CIFAR100KnownNovelLT")
def cifar100_known_novel_lt(
    novel_classes: str | Sequence[int] = "last",
    num_novel: int = 20,
    imbalance_type: str = "step",
    imbalance_ratio: float = 0.5,
    step_fraction: float = 0.5,
    num_novel_experiences: int = 1,
    novel_shots: int | None = None,
    old_fraction: float = 0.2,
    num_known: int | None = None,
    hide_novel_labels: bool = True,
    dataset: str = "cifar100",
    dataset_root: str | None = None,
    image_size: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
) -> BuiltScenario:
    """Known classes with a long tail, then novel classes to discover (see docs/scenarios.md).

    Class ids: known classes become ``0..K-1`` (ascending original id), novel ones ``K..K+N-1``;
    ``info['original_class_ids'][new_id]`` is the original id.

    Args:
        novel_classes: ``'last'`` (original ids C-N..C-1), ``'random'`` (seeded), ``'superclass'``
            (whole CIFAR-100 superclasses, seeded; ``num_novel`` a multiple of 5) or a list of
            original class ids (its length is the number of novel classes).
        num_novel: number of novel classes N.
        imbalance_type: long-tail profile of the known classes: ``'exp'``, ``'step'``, ``'none'``.
        imbalance_ratio: ``rho = n_min / n_max``; 1 is balanced.
        step_fraction: ``mu``, the share of known classes that keep ``n_max`` (``'step'``).
        num_novel_experiences: discovery experiences; the novel classes are split into this many
            consecutive groups (sizes differ by at most one).
        novel_shots: training images per novel class (None: all of them).
        old_fraction: share of each discovery experience's images that are held-back known-class
            images (0.2: 20 %); those images are not in the base experience.
        num_known: keep only the first ``num_known`` non-novel classes (ascending original id)
            as known classes; the others are used nowhere (None: every non-novel class). A
            small real-data setting with a test prior other than 80 / 20 (e.g. 10 known + 10
            novel: half the test images novel); the default keeps the paper protocol.
        hide_novel_labels: discovery experiences yield ``(x, -1, sample_index, t)`` and their true
            labels go to ``BuiltScenario.hidden_labels``; False: ordinary labeled ``(x, y, t)``
            experiences (the class-incremental upper bound).
        dataset: ``'cifar100'`` or the path of an image-folder root with ``train/`` and ``test/``.
        dataset_root: where CIFAR-100 lives (None: the shipped data); also the base of a relative
            ``dataset`` path.
        image_size: image-folder datasets only: resize images to this square size on load.
        train_subset: at most this many training images per class (before any other selection).
        test_subset: at most this many test images per class.
        seed: seed of every random choice (classes, head/tail order, images, shuffles).
        train_transform: built transform for training (uint8 CHW tensor in).
        eval_transform: built transform for evaluation.
    """
    source = load_image_source(dataset, dataset_root, image_size, KEY)
    mode = novel_classes if isinstance(novel_classes, str) else "list"
    plan = plan_known_novel(
        source.train_labels,
        source.test_labels,
        source.num_classes,
        source.superclass_of,
        novel_classes=novel_classes,
        num_novel=num_novel,
        imbalance_type=imbalance_type,
        imbalance_ratio=imbalance_ratio,
        step_fraction=step_fraction,
        num_novel_experiences=num_novel_experiences,
        novel_shots=novel_shots,
        old_fraction=old_fraction,
        num_known=num_known,
        train_subset=train_subset,
        test_subset=test_subset,
        seed=seed,
    )
    original = plan.known_original + plan.novel_original
    num_known, num_classes = len(plan.known_original), len(original)
    remap = remap_table(original, source.num_classes)

    def train_part(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gather_images(source.train_images, indices), remap[source.train_labels[indices]]

    def test_part(class_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.cat([plan.test_indices[c] for c in class_ids])
        return gather_images(source.test_images, indices), remap[source.test_labels[indices]]

    train_datasets = [
        labeled_dataset(*train_part(plan.base_indices), train_transform, eval_transform)
    ]
    hidden_labels: dict[int, torch.Tensor] = {}
    for j, indices in enumerate(plan.discovery_indices, start=1):
        images, labels = train_part(indices)
        hidden_labels[j] = labels
        if hide_novel_labels:
            train_datasets.append(unlabeled_dataset(images, train_transform, eval_transform))
        else:
            train_datasets.append(labeled_dataset(images, labels, train_transform, eval_transform))

    known_ids, novel_ids = list(range(num_known)), list(range(num_known, num_classes))
    test_groups = [known_ids] + plan.discovery_classes
    test_datasets = [eval_dataset(*test_part(group), eval_transform) for group in test_groups]
    eval_sets = known_novel_eval_sets(test_part, num_known, novel_ids, eval_transform)
    benchmark, eval_streams = make_benchmark_with_eval_streams(
        train_datasets, test_datasets, eval_sets
    )

    discovery_info = []
    for j, (classes, labels) in enumerate(zip(plan.discovery_classes, hidden_labels.values()), 1):
        n_known = int((labels < num_known).sum())
        discovery_info.append(
            {
                "train_experience": j,
                "novel_classes": classes,
                "novel_classes_original": [original[c] for c in classes],
                "num_images": len(labels),
                "num_novel_images": len(labels) - n_known,
                "num_known_images": n_known,
                "known_fraction": n_known / len(labels),
            }
        )
    info: dict[str, Any] = {
        "type": "CIFAR100KnownNovelLT",
        "dataset": source.name,
        "known_classes": known_ids,
        "novel_classes": novel_ids,
        "num_known": num_known,
        "num_novel": num_classes - num_known,
        "original_class_ids": original,
        "novel_classes_mode": mode,
        "novel_classes_original": plan.novel_original,
        "train_class_counts": plan.train_class_counts,
        "test_class_counts": [len(plan.test_indices[c]) for c in range(num_classes)],
        "imbalance_type": imbalance_type,
        "imbalance_ratio": imbalance_ratio,
        "step_fraction": step_fraction,
        "n_max": plan.n_max,
        "head_to_tail": plan.head_to_tail,
        "novel_shots": novel_shots,
        "old_fraction": old_fraction,
        "held_back_per_class": plan.held_back_per_class,
        "hide_novel_labels": bool(hide_novel_labels),
        "num_novel_experiences": len(plan.discovery_classes),
        "discovery_experiences": discovery_info,
        "train_subset": train_subset,
        "test_subset": test_subset,
        "seed": seed,
    }
    if source.superclass_of is not None:
        info["superclass_of"] = [int(source.superclass_of[c]) for c in original]
        info["superclass_names"] = source.superclass_names
    return BuiltScenario(
        benchmark=benchmark,
        num_classes=num_classes,
        class_names=[source.class_names[c] for c in original],
        eval_streams=eval_streams,
        info=info,
        hidden_labels=hidden_labels,
        initial_num_classes=num_known,
    )
