"""Class-incremental CIFAR-100 on in-memory uint8 tensors: the classes arrive in a few experiences.

A fast stand-in for Avalanche's ``SplitCIFAR100`` (no PIL round trip); class ids are remapped to the
order of arrival, so a growing head covers ``0..k`` after each experience.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import SCENARIOS
from avalanche_ext.scenario import BuiltScenario, make_benchmark
from avalanche_ext.scenarios._cifar_common import (
    CLASS_ORDERS,
    check_cap,
    check_seed,
    eval_dataset,
    gather_images,
    labeled_dataset,
    load_image_source,
    per_class_indices,
    remap_table,
    resolve_class_order,
    split_evenly,
)

__all__ = ["CLASS_ORDERS", "cifar100_class_incremental", "resolve_class_order"]

KEY = "scenario"


@SCENARIOS.register_module(name="CIFAR100ClassIncremental")
def cifar100_class_incremental(
    num_experiences: int = 5,
    class_order: str | Sequence[int] | None = None,
    seed: int = 0,
    dataset_root: str | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
) -> BuiltScenario:
    """CIFAR-100 split into ``num_experiences`` groups of classes, test stream aligned with train.

    Class ``class_order[i]`` becomes id ``i``; experience ``e`` holds the ``e``-th consecutive group
    (sizes differ by at most one when the classes do not divide evenly).

    Args:
        num_experiences: number of experiences.
        class_order: None / ``'original'``, ``'random'`` (seeded) or a list of original ids.
        seed: seed of the class order and of the per-class image selection.
        dataset_root: where CIFAR-100 lives (None: the shipped data).
        train_subset: at most this many training images per class (seeded choice).
        test_subset: at most this many test images per class.
        train_transform: built transform for training (uint8 CHW tensor in).
        eval_transform: built transform for evaluation.
    """
    seed = check_seed(seed, f"{KEY}.seed")
    train_subset = check_cap(train_subset, f"{KEY}.train_subset")
    test_subset = check_cap(test_subset, f"{KEY}.test_subset")
    source = load_image_source("cifar100", dataset_root, None, KEY)
    order = resolve_class_order(class_order, source.num_classes, seed)
    if isinstance(num_experiences, bool) or not isinstance(num_experiences, int):
        raise ConfigError(f"{KEY}.num_experiences: expected an int, got {num_experiences!r}")
    if not 1 <= num_experiences <= len(order):
        raise ConfigError(
            f"{KEY}.num_experiences: must be in [1, {len(order)}], got {num_experiences}"
        )
    remap = remap_table(order, source.num_classes)
    train_pools = per_class_indices(source.train_labels, order, seed, "train", train_subset)
    test_pools = per_class_indices(source.test_labels, order, seed, "test", test_subset)
    groups = split_evenly(list(range(len(order))), num_experiences)

    def part(images, labels, pools, group):
        indices = torch.cat([pools[order[c]] for c in group])
        return gather_images(images, indices), remap[labels[indices]]

    train_datasets = [
        labeled_dataset(
            *part(source.train_images, source.train_labels, train_pools, group),
            train_transform,
            eval_transform,
        )
        for group in groups
    ]
    test_datasets = [
        eval_dataset(
            *part(source.test_images, source.test_labels, test_pools, group), eval_transform
        )
        for group in groups
    ]
    info = {
        "type": "CIFAR100ClassIncremental",
        "dataset": source.name,
        "num_experiences": num_experiences,
        "classes_per_experience": groups,
        "original_class_ids": order,
        "train_class_counts": [len(train_pools[c]) for c in order],
        "test_class_counts": [len(test_pools[c]) for c in order],
        "train_subset": train_subset,
        "test_subset": test_subset,
        "seed": seed,
    }
    return BuiltScenario(
        benchmark=make_benchmark(train_datasets, test_datasets),
        num_classes=len(order),
        class_names=[source.class_names[c] for c in order],
        info=info,
        initial_num_classes=len(groups[0]),
    )
