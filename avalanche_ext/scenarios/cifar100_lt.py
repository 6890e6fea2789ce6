"""CIFAR-100-LT (Cao et al., 2019): a long-tailed training set, the balanced test set, one or more experiences.

Class ``i`` (in ``class_order``) keeps ``floor(n_max * rho ** (-i / (C - 1)))`` training images of the
``'exp'`` profile (10,847 / 12,608 / 19,573 images for rho 100 / 50 / 10), drawn without replacement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from avalanche_ext.datasets.long_tail import long_tail_counts, normalize_imbalance_ratio
from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import SCENARIOS
from avalanche_ext.scenario import BuiltScenario, make_benchmark
from avalanche_ext.scenarios._cifar_common import (
    check_cap,
    check_seed,
    eval_dataset,
    gather_images,
    labeled_dataset,
    load_image_source,
    per_class_indices,
    remap_table,
    resolve_class_order,
    seeded_rng,
    split_evenly,
)

__all__ = ["TAIL_ORDERS", "cifar100_lt", "lt_class_counts"]

KEY = "scenario"


def _tail_follows_class_order(num_classes: int, seed: int) -> list[int]:
    """Rank ``r`` of the profile goes to class id ``r``: the first class to arrive is the largest."""
    return list(range(num_classes))


def _random_tail(num_classes: int, seed: int) -> list[int]:
    """A seeded permutation, independent of the order of arrival."""
    return seeded_rng(seed, "tail-order").permutation(num_classes).tolist()


TAIL_ORDERS: dict[str, Callable[[int, int], list[int]]] = {
    "class_order": _tail_follows_class_order,
    "random": _random_tail,
}
"""``tail_order`` -> ``f(num_classes, seed)``: class id of each profile rank, head to tail."""


def lt_class_counts(
    num_classes: int,
    n_max: int,
    imbalance_type: str,
    imbalance_ratio: float,
    step_fraction: float,
    tail_order: str,
    seed: int,
) -> tuple[list[int], list[int]]:
    """Training images per class id and the class ids from head to tail.

    Args: as :func:`cifar100_lt`.

    Returns:
        ``(counts, head_to_tail)``: ``counts[c]`` images of class id ``c``; ``head_to_tail[r]``
        the class id holding the ``r``-th largest count.
    """
    if tail_order not in TAIL_ORDERS:
        raise ConfigError(
            f"{KEY}.tail_order: unknown {tail_order!r}; choose one of "
            f"{', '.join(repr(k) for k in TAIL_ORDERS)}"
        )
    profile = long_tail_counts(
        num_classes, n_max, imbalance_type, imbalance_ratio, step_fraction, KEY
    )
    head_to_tail = [int(c) for c in TAIL_ORDERS[tail_order](num_classes, seed)]
    counts = [0] * num_classes
    for rank, cls in enumerate(head_to_tail):
        counts[cls] = profile[rank]
    return counts, head_to_tail


@SCENARIOS.register_module(name="CIFAR100LT")
def cifar100_lt(
    imbalance_type: str = "exp",
    imbalance_ratio: float = 100,
    step_fraction: float = 0.5,
    n_max: int | None = 500,
    num_experiences: int = 1,
    class_order: str | Sequence[int] | None = None,
    tail_order: str = "class_order",
    seed: int = 0,
    dataset_root: str | None = None,
    test_subset: int | None = None,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
) -> BuiltScenario:
    """CIFAR-100-LT: long-tailed training images, the balanced test set (100 per class).

    Class ``class_order[i]`` becomes id ``i``. With ``tail_order='class_order'`` and the default
    ``class_order`` (the dataset's), class ``i`` has the ``i``-th largest count, as in LDAM's and
    every later CIFAR-100-LT split. Images are drawn without replacement from a seeded order of
    each class's 500 training images, so no image appears twice. ``num_experiences > 1`` splits the
    classes (in ``class_order``) into class-incremental experiences.

    Args:
        imbalance_type: ``'exp'`` (``n_i = floor(n_max * rho ** (-i / (C - 1)))``), ``'step'``
            (``step_fraction`` of the classes keep ``n_max``, the rest ``n_max / rho``) or
            ``'none'``; any profile registered in
            :data:`avalanche_ext.datasets.long_tail.IMBALANCE_PROFILES`.
        imbalance_ratio: ``n_max / n_min`` as the papers write it (100, 50, 10) or ``n_min / n_max``
            as the source documents do (0.01, 0.02, 0.1): the same long tail.
        step_fraction: share of head classes of the ``'step'`` profile.
        n_max: images of the most frequent class (None: all 500).
        num_experiences: class-incremental experiences (1: the usual single-task benchmark).
        class_order: None / ``'original'``, ``'random'`` (seeded) or a list of original ids.
        tail_order: ``'class_order'`` (the first class in ``class_order`` is the largest) or
            ``'random'`` (a seeded head/tail assignment independent of the order of arrival).
        seed: seed of the class order, the head/tail assignment and the image draw.
        dataset_root: where CIFAR-100 lives (None: the shipped data).
        test_subset: at most this many test images per class (None: all 100).
        train_transform: built transform for training (uint8 CHW tensor in).
        eval_transform: built transform for evaluation.
    """
    seed = check_seed(seed, f"{KEY}.seed")
    test_subset = check_cap(test_subset, f"{KEY}.test_subset")
    n_max = check_cap(n_max, f"{KEY}.n_max")
    source = load_image_source("cifar100", dataset_root, None, KEY)
    order = resolve_class_order(class_order, source.num_classes, seed)
    num_classes = len(order)
    if isinstance(num_experiences, bool) or not isinstance(num_experiences, int):
        raise ConfigError(f"{KEY}.num_experiences: expected an int, got {num_experiences!r}")
    if not 1 <= num_experiences <= num_classes:
        raise ConfigError(
            f"{KEY}.num_experiences: must be in [1, {num_classes}], got {num_experiences}"
        )
    pools = per_class_indices(source.train_labels, order, seed, "train")
    available = min(len(pools[c]) for c in order)
    n_max = available if n_max is None else n_max
    if n_max > available:
        raise ConfigError(f"{KEY}.n_max: {n_max} but a class has only {available} images")
    counts, head_to_tail = lt_class_counts(
        num_classes, n_max, imbalance_type, imbalance_ratio, step_fraction, tail_order, seed
    )
    remap = remap_table(order, source.num_classes)
    test_pools = per_class_indices(source.test_labels, order, seed, "test", test_subset)
    groups = split_evenly(list(range(num_classes)), num_experiences)

    def train_part(group: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.cat([pools[order[c]][: counts[c]] for c in group])
        return gather_images(source.train_images, indices), remap[source.train_labels[indices]]

    def test_part(group: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.cat([test_pools[order[c]] for c in group])
        return gather_images(source.test_images, indices), remap[source.test_labels[indices]]

    train_datasets = [
        labeled_dataset(*train_part(g), train_transform, eval_transform) for g in groups
    ]
    test_datasets = [eval_dataset(*test_part(g), eval_transform) for g in groups]
    info: dict[str, Any] = {
        "type": "CIFAR100LT",
        "dataset": source.name,
        "imbalance_type": imbalance_type,
        "imbalance_ratio": imbalance_ratio,
        "imbalance_min_over_max": normalize_imbalance_ratio(imbalance_ratio, KEY),
        "step_fraction": step_fraction,
        "n_max": n_max,
        "num_experiences": num_experiences,
        "classes_per_experience": groups,
        "original_class_ids": order,
        "head_to_tail": head_to_tail,
        "tail_order": tail_order,
        "train_class_counts": counts,
        "test_class_counts": [len(test_pools[c]) for c in order],
        "num_train_images": int(sum(counts)),
        "test_subset": test_subset,
        "seed": seed,
    }
    return BuiltScenario(
        benchmark=make_benchmark(train_datasets, test_datasets),
        num_classes=num_classes,
        class_names=[source.class_names[c] for c in order],
        info=info,
        initial_num_classes=len(groups[0]),
    )
