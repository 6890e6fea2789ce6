"""Helpers shared by the in-memory image scenarios (CIFAR-100, image folders, synthetic streams).

Data sources, seeded per-class selection, class splits and the Avalanche dataset wrappers; the
scenario modules only decide which indices go where.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avalanche_ext.datasets.cifar import ARCHIVE_NAMES, FOLDER, load_cifar100
from avalanche_ext.datasets.image_folder import load_image_folder
from avalanche_ext.errors import ConfigError
from avalanche_ext.scenario import (
    UNLABELED,
    IndexedUnlabeledDataset,
    TensorImageDataset,
    make_benchmark,
    make_dataset,
)

__all__ = [
    "CLASS_ORDERS",
    "known_novel_eval_sets",
    "DATASET_LOADERS",
    "ImageSource",
    "check_cap",
    "check_seed",
    "class_counts",
    "discovery_known_counts",
    "eval_dataset",
    "gather_images",
    "interleave_by_class",
    "labeled_dataset",
    "load_image_source",
    "make_benchmark_with_eval_streams",
    "per_class_indices",
    "remap_table",
    "resolve_class_order",
    "seeded_rng",
    "split_evenly",
    "unlabeled_dataset",
]


@dataclass
class ImageSource:
    """Both splits of a labeled image dataset; ``images[index_tensor]`` gives uint8 ``[n, C, H, W]``.

    Args:
        name: the ``dataset`` value it was loaded from.
        train_images: uint8 tensor, or an indexable that decodes on demand (image folders).
        train_labels: int64 ``[N]`` original class ids.
        test_images: as ``train_images``.
        test_labels: int64 ``[M]``.
        class_names: original class id -> name.
        superclass_of: original class id -> superclass id (None: the dataset has no superclasses).
        superclass_names: superclass id -> name.
    """

    name: str
    train_images: Any
    train_labels: torch.Tensor
    test_images: Any
    test_labels: torch.Tensor
    class_names: list[str]
    superclass_of: list[int] | None = None
    superclass_names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _has_cifar100(root: Path) -> bool:
    folders = (root, root / FOLDER)
    if any((f / "meta").is_file() and (f / "train").is_file() for f in folders):
        return True
    return any((root / name).is_file() for name in ARCHIVE_NAMES)


def _load_cifar100(root: str | os.PathLike | None, image_size: int | None, key: str) -> ImageSource:
    if root is not None and not _has_cifar100(Path(root)):
        raise ConfigError(
            f"{key}.dataset_root: {root} holds neither {FOLDER}/ nor {ARCHIVE_NAMES[0]}"
            if Path(root).is_dir()
            else f"{key}.dataset_root: {root} does not exist"
        )
    if image_size not in (None, 32):
        raise ConfigError(f"{key}.image_size: CIFAR-100 images are 32x32; leave it None")
    try:
        data = load_cifar100(root)
    except ConfigError as err:
        raise ConfigError(f"{key}.dataset_root: {err}") from None
    superclass_of = torch.zeros(len(data.class_names), dtype=torch.long)
    superclass_of[data.train_labels] = data.train_coarse
    return ImageSource(
        name="cifar100",
        train_images=data.train_images,
        train_labels=data.train_labels,
        test_images=data.test_images,
        test_labels=data.test_labels,
        class_names=list(data.class_names),
        superclass_of=superclass_of.tolist(),
        superclass_names=list(data.coarse_names),
    )


DATASET_LOADERS: dict[str, Callable[[str | None, int | None, str], ImageSource]] = {
    "cifar100": _load_cifar100,
}
"""Named datasets (``dataset='cifar100'``); any other value is read as an image-folder root."""

# Named datasets are found, md5-checked and loaded once per process (the tensors are read-only).
_NAMED_SOURCES: dict[tuple[str, str | None, int | None], ImageSource] = {}


def load_image_source(
    dataset: str = "cifar100",
    dataset_root: str | os.PathLike | None = None,
    image_size: int | None = None,
    key: str = "scenario",
) -> ImageSource:
    """Loads a named dataset, or an image-folder root (``train/`` + ``test/`` of class folders).

    Args:
        dataset: a key of :data:`DATASET_LOADERS`, or a folder path (relative paths are resolved
            against ``dataset_root`` when it is given).
        dataset_root: where the named dataset lives (None: auto-find the shipped data).
        image_size: resize image-folder images to this square size on load.
        key: config key prefix named in errors.

    Raises:
        ConfigError: the dataset or its root cannot be found or read.
    """
    if not isinstance(dataset, (str, os.PathLike)):
        raise ConfigError(
            f"{key}.dataset: expected a dataset name or a folder path, got {dataset!r}"
        )
    if str(dataset) in DATASET_LOADERS:
        memo = (str(dataset), None if dataset_root is None else str(dataset_root), image_size)
        if memo not in _NAMED_SOURCES:
            _NAMED_SOURCES[memo] = DATASET_LOADERS[str(dataset)](dataset_root, image_size, key)
        return _NAMED_SOURCES[memo]
    path = Path(dataset)
    if not path.is_absolute() and dataset_root is not None:
        path = Path(dataset_root) / path
    if not path.is_dir():
        names = ", ".join(repr(k) for k in DATASET_LOADERS)
        raise ConfigError(
            f"{key}.dataset: {str(dataset)!r} is neither a known dataset ({names}) "
            f"nor an existing image-folder root ({path} not found)"
        )
    splits = load_image_folder(path, image_size=image_size, key=f"{key}.dataset")
    return ImageSource(
        name=str(path),
        train_images=splits.train_images,
        train_labels=splits.train_labels,
        test_images=splits.test_images,
        test_labels=splits.test_labels,
        class_names=splits.class_names,
    )


def check_seed(seed: Any, key: str = "scenario.seed") -> int:
    """A non-negative int seed, or a ConfigError naming ``key``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"{key}: expected a non-negative int, got {seed!r}")
    return int(seed)


def check_cap(value: Any, key: str) -> int | None:
    """A per-class image cap: None (no cap) or a positive int, else a ConfigError naming ``key``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{key}: expected None or a positive int, got {value!r}")
    return int(value)


def seeded_rng(seed: int, purpose: str) -> np.random.Generator:
    """An independent generator per (seed, purpose): changing one choice never reshuffles another."""
    return np.random.default_rng([int(seed), zlib.crc32(purpose.encode())])


def per_class_indices(
    labels: torch.Tensor,
    classes: Sequence[int],
    seed: int,
    purpose: str,
    cap: int | None = None,
) -> dict[int, torch.Tensor]:
    """Indices of each class's samples in a seeded order, at most ``cap`` per class.

    The order depends only on ``labels``, ``seed`` and ``purpose``, so taking the first ``k`` of a
    class is the same draw whatever else the scenario selects.

    Args:
        labels: int64 ``[N]`` class of every sample.
        classes: the classes to return.
        seed: random seed.
        purpose: names the draw (e.g. ``'train'``, ``'test'``).
        cap: keep at most this many per class (None: all).
    """
    labels_np = labels.numpy() if torch.is_tensor(labels) else np.asarray(labels)
    order = seeded_rng(seed, purpose).permutation(len(labels_np))
    shuffled = labels_np[order]
    grouping = np.argsort(shuffled, kind="stable")  # by class, the seeded order kept inside
    by_class, sorted_labels = order[grouping], shuffled[grouping]
    out = {}
    for c in classes:
        lo, hi = np.searchsorted(sorted_labels, [int(c), int(c) + 1])
        out[int(c)] = torch.from_numpy(by_class[lo:hi][:cap].copy()).long()
    return out


def split_evenly(items: Sequence[Any], num_parts: int) -> list[list[Any]]:
    """Consecutive parts whose sizes differ by at most one, the larger ones first."""
    base, extra = divmod(len(items), num_parts)
    parts, start = [], 0
    for i in range(num_parts):
        size = base + (1 if i < extra else 0)
        parts.append(list(items[start : start + size]))
        start += size
    return parts


def discovery_known_counts(novel_sizes: Sequence[int], old_fraction: float) -> list[int]:
    """Known-class images to mix into each discovery experience.

    ``old_fraction`` is the share of a discovery experience's samples that are known-class images:
    ``o_j = round(m_j * f / (1 - f))`` for ``m_j`` novel images, so ``o_j / (o_j + m_j) ~= f``.

    Args:
        novel_sizes: novel images of each discovery experience (``m_j``).
        old_fraction: ``f`` in ``[0, 1)``.
    """
    if not 0 <= old_fraction < 1:
        raise ConfigError(f"scenario.old_fraction: must be in [0, 1), got {old_fraction}")
    ratio = old_fraction / (1 - old_fraction)
    return [int(math.floor(m * ratio + 0.5)) for m in novel_sizes]


def interleave_by_class(
    per_class: dict[int, torch.Tensor], class_order: Sequence[int]
) -> torch.Tensor:
    """Round-robin over classes (``class_order``): one sample of each class, then the next, ...

    Consecutive chunks of the result are class-balanced up to one sample per class.
    """
    columns = [per_class[c] for c in class_order]
    depth = max((len(col) for col in columns), default=0)
    out = [col[r : r + 1] for r in range(depth) for col in columns if r < len(col)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def remap_table(original_ids: Sequence[int], num_original: int) -> torch.Tensor:
    """LongTensor ``t`` with ``t[original_ids[i]] = i`` and -1 for ids not in ``original_ids``."""
    table = torch.full((num_original,), -1, dtype=torch.long)
    table[torch.as_tensor(list(original_ids), dtype=torch.long)] = torch.arange(len(original_ids))
    return table


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    """Samples per class id ``0..num_classes-1`` (labels < 0 are ignored)."""
    labels = labels[labels >= 0]
    return torch.bincount(labels, minlength=num_classes)[:num_classes].tolist()


def gather_images(images: Any, indices: torch.Tensor) -> torch.Tensor:
    """``images[indices]`` as a fresh uint8 tensor (decodes files for image folders)."""
    out = images[indices.long()]
    return out.contiguous() if torch.is_tensor(out) else torch.as_tensor(out)


def labeled_dataset(
    images: torch.Tensor,
    labels: torch.Tensor,
    train_transform: Callable | None,
    eval_transform: Callable | None,
):
    """An Avalanche dataset yielding ``(x, y, task_label)``."""
    return make_dataset(TensorImageDataset(images, labels), train_transform, eval_transform)


def unlabeled_dataset(
    images: torch.Tensor, train_transform: Callable | None, eval_transform: Callable | None
):
    """An Avalanche dataset yielding ``(x, UNLABELED, sample_index, task_label)``.

    Built from the image tensor alone: no attribute reachable from it holds a true label.
    """
    return make_dataset(
        IndexedUnlabeledDataset(images),
        train_transform,
        eval_transform,
        targets=[UNLABELED] * len(images),
    )


def known_novel_eval_sets(
    test_part: Callable, num_known: int, novel_ids: list[int], eval_transform: Callable | None
) -> dict[str, list]:
    """The ``known_test`` / ``novel_test`` / ``all_test`` streams (one experience each).

    Args:
        test_part: class ids -> ``(images, labels)`` of their test images.
        num_known: known classes are ``0 .. num_known-1``.
        novel_ids: the novel class ids.
        eval_transform: built evaluation transform.
    """
    known_ids = list(range(num_known))
    groups = (
        ("known_test", known_ids),
        ("novel_test", novel_ids),
        ("all_test", known_ids + novel_ids),
    )
    return {name: [eval_dataset(*test_part(group), eval_transform)] for name, group in groups}


def eval_dataset(images: torch.Tensor, labels: torch.Tensor, eval_transform: Callable | None):
    """A test dataset: the eval transform in both groups, so it is never augmented."""
    return labeled_dataset(images, labels, eval_transform, eval_transform)


def make_benchmark_with_eval_streams(
    train_datasets: list, test_datasets: list, eval_sets: dict[str, list]
) -> tuple[Any, dict[str, Any]]:
    """One benchmark holding train, test and the extra evaluation streams.

    Returns:
        ``(benchmark, eval_streams)``: the extra streams are also ``benchmark.<name>_stream``; each
        keeps its own name, so Avalanche's metric names tell them apart.
    """
    benchmark = make_benchmark(train_datasets, test_datasets, **eval_sets)
    streams = benchmark.streams
    return benchmark, {name: streams[name] for name in eval_sets}


def _original_order(num_classes: int, seed: int) -> list[int]:
    """The dataset's own order, 0..C-1."""
    return list(range(num_classes))


def _random_order(num_classes: int, seed: int) -> list[int]:
    """A seeded permutation."""
    return seeded_rng(seed, "class-order").permutation(num_classes).tolist()


CLASS_ORDERS: dict[str, Callable[[int, int], list[int]]] = {
    "original": _original_order,
    "random": _random_order,
}
"""``class_order`` mode -> ``f(num_classes, seed) -> original ids in order of arrival``."""


def resolve_class_order(
    class_order: str | Sequence[int] | None, num_classes: int, seed: int
) -> list[int]:
    """Original class ids in order of arrival.

    Args:
        class_order: None or ``'original'`` (0..C-1), ``'random'`` (seeded), or a list of distinct
            original ids (a subset is allowed: only those classes are used).
        num_classes: classes in the dataset.
        seed: seed of ``'random'``.

    Raises:
        ConfigError: unknown mode or bad ids.
    """
    if class_order is None:
        class_order = "original"
    if isinstance(class_order, str):
        if class_order not in CLASS_ORDERS:
            raise ConfigError(
                f"scenario.class_order: unknown {class_order!r}; use None, "
                f"{', '.join(repr(k) for k in CLASS_ORDERS)} or a list of class ids"
            )
        return [int(c) for c in CLASS_ORDERS[class_order](num_classes, seed)]
    if not isinstance(class_order, Sequence) or not class_order:
        raise ConfigError(
            f"scenario.class_order: expected None, a mode or a list, got {class_order!r}"
        )
    ids = list(class_order)
    bad = [
        c for c in ids if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes
    ]
    if bad or len(set(ids)) != len(ids):
        raise ConfigError(
            f"scenario.class_order: expected distinct ints in [0, {num_classes - 1}], got {ids[:10]}..."
        )
    return ids
