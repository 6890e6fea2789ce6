"""Generated images with a known class structure: any strategy or NCD plugin runs in seconds, no data.

Each class is a fixed random block-colour pattern; a sample is its pattern plus pixel noise. The last
``hidden_novel`` classes can arrive as an unlabeled discovery experience, as in CIFAR100KnownNovelLT.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from avalanche_ext.datasets.long_tail import long_tail_counts
from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import SCENARIOS
from avalanche_ext.scenario import BuiltScenario
from avalanche_ext.scenarios._cifar_common import (
    check_seed,
    discovery_known_counts,
    eval_dataset,
    interleave_by_class,
    known_novel_eval_sets,
    labeled_dataset,
    make_benchmark_with_eval_streams,
    seeded_rng,
    split_evenly,
    unlabeled_dataset,
)

__all__ = ["class_prototypes", "sample_images", "synthetic_stream"]

KEY = "scenario"
PATTERN_CELLS = 4
"""Each prototype is a ``4 x 4`` grid of random colours, upsampled to the image size."""


def _torch_generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(int(seeded_rng(seed, purpose).integers(2**62)))


def class_prototypes(num_classes: int, image_size: int, seed: int) -> torch.Tensor:
    """Float prototypes ``[C, 3, S, S]`` in ``[0, 255]``: a random colour grid per class."""
    grid = torch.rand(
        (num_classes, 3, PATTERN_CELLS, PATTERN_CELLS),
        generator=_torch_generator(seed, "prototypes"),
    )
    return F.interpolate(grid * 255, size=(image_size, image_size), mode="nearest")


def sample_images(
    prototypes: torch.Tensor, labels: torch.Tensor, noise: float, generator: torch.Generator
) -> torch.Tensor:
    """uint8 images ``[N, 3, S, S]``: ``prototypes[labels]`` plus Gaussian noise of std ``noise * 255``."""
    base = prototypes[labels]
    jitter = torch.randn(base.shape, generator=generator) * (noise * 255)
    return (base + jitter).round_().clamp_(0, 255).to(torch.uint8)


def _check_int(value, key: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}: expected an int >= {low}, got {value!r}")
    return value


@SCENARIOS.register_module(name="SyntheticStream")
def synthetic_stream(
    num_classes: int = 10,
    num_experiences: int = 5,
    images_per_class: int = 100,
    test_images_per_class: int = 20,
    image_size: int = 32,
    seed: int = 0,
    hidden_novel: int = 0,
    long_tail_ratio: float | None = None,
    old_fraction: float = 0.0,
    noise: float = 0.25,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
) -> BuiltScenario:
    """A class-incremental stream of generated images, optionally ending with a discovery experience.

    The first ``num_classes - hidden_novel`` classes are split into ``num_experiences`` labeled
    experiences (consecutive groups); with ``hidden_novel > 0`` one more training experience holds
    the last ``hidden_novel`` classes unlabeled (``(x, -1, sample_index, t)``, true labels in
    ``hidden_labels``), and ``eval_streams`` has ``known_test`` / ``novel_test`` / ``all_test``.
    The test stream is aligned with the train stream.

    Args:
        num_classes: total classes.
        num_experiences: labeled experiences.
        images_per_class: training images per class (the most frequent class under a long tail).
        test_images_per_class: test images per class.
        image_size: images are ``[3, image_size, image_size]`` uint8.
        seed: seed of the prototypes, the noise and the head/tail order.
        hidden_novel: the last n classes arrive as a final unlabeled discovery experience.
        long_tail_ratio: ``rho`` of an exponential long tail over the labeled classes (None:
            balanced); which classes are head or tail is seeded.
        old_fraction: share of the discovery experience's images that are extra labeled-class images
            (as in CIFAR100KnownNovelLT; they are not in the labeled experiences).
        noise: pixel noise std as a fraction of 255.
        train_transform: built transform for training (uint8 CHW tensor in).
        eval_transform: built transform for evaluation.
    """
    seed = check_seed(seed, f"{KEY}.seed")
    hidden_novel = _check_int(hidden_novel, f"{KEY}.hidden_novel", 0)
    num_classes = _check_int(num_classes, f"{KEY}.num_classes", hidden_novel + 1)
    images_per_class = _check_int(images_per_class, f"{KEY}.images_per_class", 1)
    test_images_per_class = _check_int(test_images_per_class, f"{KEY}.test_images_per_class", 1)
    image_size = _check_int(image_size, f"{KEY}.image_size", PATTERN_CELLS)
    num_known = num_classes - hidden_novel
    num_experiences = _check_int(num_experiences, f"{KEY}.num_experiences", 1)
    if num_experiences > num_known:
        raise ConfigError(
            f"{KEY}.num_experiences: {num_experiences} experiences for {num_known} labeled classes"
        )
    if not noise >= 0:
        raise ConfigError(f"{KEY}.noise: must be >= 0, got {noise}")

    rho = 1.0 if long_tail_ratio is None else long_tail_ratio
    counts = long_tail_counts(num_known, images_per_class, "exp", rho, key=KEY)
    tail_order = seeded_rng(seed, "tail-order").permutation(num_known).tolist()
    base_count = {k: counts[rank] for rank, k in enumerate(tail_order)}
    novel_count = hidden_novel * images_per_class
    known_in_discovery = (
        discovery_known_counts([novel_count], old_fraction)[0] if hidden_novel else 0
    )
    held_back = math.ceil(known_in_discovery / num_known)

    # Train pool: per known class held-back images first, then its base images; then novel classes.
    per_class = [held_back + base_count[c] for c in range(num_known)]
    per_class += [images_per_class] * hidden_novel
    train_labels = torch.repeat_interleave(torch.arange(num_classes), torch.as_tensor(per_class))
    prototypes = class_prototypes(num_classes, image_size, seed)
    train_images = sample_images(prototypes, train_labels, noise, _torch_generator(seed, "train"))
    starts = torch.cumsum(torch.as_tensor([0] + per_class), 0).tolist()
    positions = {c: torch.arange(starts[c], starts[c + 1]) for c in range(num_classes)}
    test_labels = torch.arange(num_classes).repeat_interleave(test_images_per_class)
    test_images = sample_images(prototypes, test_labels, noise, _torch_generator(seed, "test"))

    groups = split_evenly(list(range(num_known)), num_experiences)
    novel_ids = list(range(num_known, num_classes))

    def train_part(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return train_images[indices], train_labels[indices]

    def test_part(classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.isin(test_labels, torch.as_tensor(classes, dtype=torch.long))
        return test_images[mask], test_labels[mask]

    train_datasets = [
        labeled_dataset(
            *train_part(torch.cat([positions[c][held_back:] for c in group])),
            train_transform,
            eval_transform,
        )
        for group in groups
    ]
    test_groups = list(groups)
    hidden_labels: dict[int, torch.Tensor] = {}
    eval_sets: dict[str, list] = {}
    info_discovery = []
    if hidden_novel:
        deal_order = seeded_rng(seed, "held-back-order").permutation(num_known).tolist()
        reserved = interleave_by_class(
            {c: positions[c][:held_back] for c in range(num_known)}, deal_order
        )
        chunk = torch.cat([positions[c] for c in novel_ids] + [reserved[:known_in_discovery]])
        chunk = chunk[torch.from_numpy(seeded_rng(seed, "discovery-0").permutation(len(chunk)))]
        images, labels = train_part(chunk)
        hidden_labels[len(train_datasets)] = labels
        info_discovery.append(
            {
                "train_experience": len(train_datasets),
                "novel_classes": novel_ids,
                "num_images": len(labels),
                "num_novel_images": novel_count,
                "num_known_images": known_in_discovery,
                "known_fraction": known_in_discovery / len(labels),
            }
        )
        train_datasets.append(unlabeled_dataset(images, train_transform, eval_transform))
        test_groups.append(novel_ids)
        eval_sets = known_novel_eval_sets(test_part, num_known, novel_ids, eval_transform)
    test_datasets = [eval_dataset(*test_part(group), eval_transform) for group in test_groups]
    benchmark, eval_streams = make_benchmark_with_eval_streams(
        train_datasets, test_datasets, eval_sets
    )
    info = {
        "type": "SyntheticStream",
        "known_classes": list(range(num_known)),
        "novel_classes": novel_ids,
        "classes_per_experience": test_groups,
        "train_class_counts": [base_count[c] for c in range(num_known)]
        + [images_per_class] * hidden_novel,
        "test_class_counts": [test_images_per_class] * num_classes,
        "imbalance_type": "exp" if long_tail_ratio is not None else None,
        "imbalance_ratio": rho,
        "long_tail_ratio": long_tail_ratio,
        "old_fraction": old_fraction,
        "held_back_per_class": held_back,
        "discovery_experiences": info_discovery,
        "image_size": image_size,
        "noise": noise,
        "seed": seed,
    }
    return BuiltScenario(
        benchmark=benchmark,
        num_classes=num_classes,
        class_names=[f"class_{c:02d}" for c in range(num_classes)],
        eval_streams=eval_streams,
        info=info,
        hidden_labels=hidden_labels,
        initial_num_classes=len(groups[0]),
    )
