"""CLEAR-10 / CLEAR-100 (real-world temporal drift) read straight from the released on-disk formats.

No download code path: both layouts are parsed and validated locally by
:mod:`avalanche_ext.datasets.clear_layout` (every error names the file and line or entry); here, one
experience per time bucket, with the streaming or the seeded iid protocol.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from avalanche_ext.datasets.clear_layout import (
    CLEAR_DATA_NAMES,
    FEATURES_WRITER,
    FEWSHOT_WRITER,
    BucketSamples,
    ClearImageDataset,
    ClearTree,
    read_clear_tree,
    read_json,
)
from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import SCENARIOS
from avalanche_ext.scenario import BuiltScenario, TensorImageDataset, make_benchmark, make_dataset

__all__ = [
    "PROTOCOLS",
    "ClearPlan",
    "SampleSet",
    "build_clear",
    "load_bucket_features",
    "plan_clear",
]


# ----------------------------------------------------------------------------- protocols
@dataclass
class SampleSet:
    """A selection of one bucket's images in one split folder.

    Args:
        split: the split the indices refer to ('all', 'train' or 'test').
        indices: positions in the bucket's canonical order.
        paths: the selected image paths.
        targets: the selected class indices.
    """

    split: str
    indices: list[int]
    paths: list[Path] = field(repr=False)
    targets: list[int] = field(repr=False)

    @classmethod
    def take(cls, tree: ClearTree, split: str, bucket: str, indices: Sequence[int]) -> SampleSet:
        samples = tree.samples[split][bucket]
        indices = list(indices)
        return cls(
            split,
            indices,
            [samples.paths[i] for i in indices],
            [samples.targets[i] for i in indices],
        )

    def __len__(self) -> int:
        return len(self.indices)


Selection = tuple[str, list[int]]


def _iid_protocol(tree: ClearTree, bucket: str, seed: int) -> tuple[Selection, Selection, str]:
    train, test, source = tree.iid_indices(bucket, seed)
    return (tree.pool_split, train), (tree.pool_split, test), source


def _streaming_protocol(
    tree: ClearTree, bucket: str, seed: int
) -> tuple[Selection, Selection, str | None]:
    if tree.heldout_split is None:
        # Older layout: no separate test folder, the held-out images are the split's test part.
        return _iid_protocol(tree, bucket, seed)
    everything = list(range(len(tree.samples[tree.pool_split][bucket])))
    held_out = list(range(len(tree.samples[tree.heldout_split][bucket])))
    return (tree.pool_split, everything), (tree.heldout_split, held_out), None


PROTOCOLS: dict[str, Callable[[ClearTree, str, int], tuple[Selection, Selection, str | None]]] = {
    "streaming": _streaming_protocol,
    "iid": _iid_protocol,
}
"""Protocol -> per-bucket ``(train selection, held-out selection, iid split source)``."""


def _read_fewshot(
    tree: ClearTree, shot: int, seed: int, bucket: str, allowed: list[int]
) -> list[int]:
    path = tree.fewshot_file(shot, seed, bucket)
    if not path.is_file():
        raise ConfigError(
            f"{path}: missing ({shot}-shot indices of bucket {bucket!r} for seed {seed}); "
            f"write them with {FEWSHOT_WRITER}"
        )
    data = read_json(path, "few-shot indices")
    if not isinstance(data, list) or not all(isinstance(i, int) for i in data):
        raise ConfigError(f"{path}: expected a JSON list of image indices")
    allowed_set = set(allowed)
    for i in data:
        if i not in allowed_set:
            raise ConfigError(
                f"{path}: index {i} is not in the training part of bucket {bucket!r} for seed "
                f"{seed}; regenerate with {FEWSHOT_WRITER}"
            )
    return data


@dataclass
class ClearPlan:
    """Which images every experience trains and is tested on (pure data, no dataset built yet).

    Args:
        tree: the parsed dataset.
        train: one :class:`SampleSet` per bucket (training experience t = bucket t).
        test: one :class:`SampleSet` per bucket (held-out images of bucket t).
        seed: the split seed used (None when no split was needed).
        iid_split_source: 'files', 'computed', or None (no iid split used).
    """

    tree: ClearTree
    train: list[SampleSet]
    test: list[SampleSet]
    seed: int | None
    iid_split_source: str | None


def _check_choice(key: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))}")


def _check_int(key: str, value: Any, minimum: int) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < minimum
    ):
        raise ConfigError(f"{key}: expected None or an integer >= {minimum}, got {value!r}")


def plan_clear(
    data_name: str = "clear10",
    dataset_root: str | os.PathLike | None = None,
    evaluation_protocol: str = "streaming",
    seed: int | None = None,
    shot: int | None = None,
) -> ClearPlan:
    """Reads the tree and decides every experience's train and held-out images.

    Args: see :func:`build_clear`.

    Raises:
        ConfigError: bad keys, or a malformed tree (naming the file at fault).
    """
    _check_choice("scenario.data_name", data_name, list(CLEAR_DATA_NAMES))
    _check_choice("scenario.evaluation_protocol", evaluation_protocol, list(PROTOCOLS))
    _check_int("scenario.seed", seed, 0)
    _check_int("scenario.shot", shot, 1)
    if dataset_root is None:
        raise ConfigError(
            "scenario.dataset_root: required (the folder holding the unpacked CLEAR release; "
            "nothing is ever downloaded, see docs/clear.md)"
        )
    tree = read_clear_tree(dataset_root, CLEAR_DATA_NAMES[data_name])
    split_seed = 0 if seed is None else seed
    protocol = PROTOCOLS[evaluation_protocol]
    train, test, sources = [], [], set()
    for bucket in tree.buckets:
        (train_split, train_idx), (test_split, test_idx), source = protocol(
            tree, bucket, split_seed
        )
        if shot is not None:
            train_idx = _read_fewshot(tree, shot, split_seed, bucket, train_idx)
        train.append(SampleSet.take(tree, train_split, bucket, train_idx))
        test.append(SampleSet.take(tree, test_split, bucket, test_idx))
        sources.add(source)
    source = "+".join(sorted(s for s in sources if s)) or None
    used_seed = split_seed if (source is not None or shot is not None) else None
    return ClearPlan(tree, train, test, used_seed, source)


# ----------------------------------------------------------------------------- datasets
def load_bucket_features(path: Path, expected: BucketSamples) -> torch.Tensor:
    """Loads ``all.pth`` = ``torch.save((features[N, D], labels))`` and checks it against a bucket.

    Args:
        path: the features file.
        expected: the bucket's samples (row i = image i of the canonical order).

    Returns:
        torch.Tensor: float32 ``[N, D]``.
    """
    if not path.is_file():
        raise ConfigError(
            f"{path}: missing (precomputed features); write them with {FEATURES_WRITER}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise ConfigError(f"{path}: cannot load ({err})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ConfigError(f"{path}: expected a saved tuple (features[N, D], labels)")
    features, labels = obj
    if isinstance(features, (list, tuple)):
        features = torch.stack([torch.as_tensor(f) for f in features])
    features = torch.as_tensor(features)
    if features.ndim != 2:
        raise ConfigError(f"{path}: features must be a [N, D] tensor, got {tuple(features.shape)}")
    labels = torch.as_tensor(labels).long().view(-1)
    if len(features) != len(expected) or len(labels) != len(expected):
        raise ConfigError(
            f"{path}: {len(features)} feature rows / {len(labels)} labels, but bucket "
            f"{expected.bucket!r} has {len(expected)} images ({expected.source})"
        )
    wrong = (labels != torch.as_tensor(expected.targets)).nonzero()
    if len(wrong):
        i = int(wrong[0])
        raise ConfigError(
            f"{path}: row {i} has label {int(labels[i])} but {expected.source} says "
            f"{expected.targets[i]} (features computed for another file order?)"
        )
    return features.float()


def _feature_dataset(tree: ClearTree, samples: SampleSet, bucket: str, feature_type: str, cache):
    key = (samples.split, bucket)
    if key not in cache:
        path = tree.features_file(samples.split, feature_type, bucket)
        cache[key] = load_bucket_features(path, tree.samples[samples.split][bucket])
    features = cache[key][torch.as_tensor(samples.indices, dtype=torch.long)]
    return TensorImageDataset(features, torch.as_tensor(samples.targets, dtype=torch.long))


IMAGE_CHECKS = ("header", "decode", "none")


def bad_image(path: Path, check: str) -> str | None:
    """Why ``path`` does not open as an image (None: it does). ``header``: PIL's ``verify`` (format,
    header, PNG checksums; cheap); ``decode``: a full decode (also catches truncated JPEGs)."""
    try:
        with Image.open(path) as img:
            if check == "decode":
                img.load()
            else:
                img.verify()
    except (OSError, ValueError, SyntaxError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def _drop_bad_images(
    sets: list[SampleSet], check: str, skip: bool
) -> tuple[list[SampleSet], list[str]]:
    """The sample sets without undecodable images, and those images' paths.

    Raises:
        ConfigError: an undecodable image when ``skip`` is False (naming the file).
    """
    if check == "none":
        return sets, []
    skipped: list[str] = []
    out = []
    for samples in sets:
        keep = []
        for k, path in enumerate(samples.paths):
            why = bad_image(Path(path), check)
            if why is None:
                keep.append(k)
                continue
            if not skip:
                raise ConfigError(
                    f"{path}: cannot decode image ({why}); fix or remove it, or set "
                    "scenario.skip_bad_images=True to train without it"
                )
            skipped.append(str(path))
        out.append(
            SampleSet(
                samples.split,
                [samples.indices[k] for k in keep],
                [samples.paths[k] for k in keep],
                [samples.targets[k] for k in keep],
            )
        )
    return out, skipped


@SCENARIOS.register_module(name="CLEAR")
def build_clear(
    data_name: str = "clear10",
    dataset_root: str | os.PathLike | None = None,
    evaluation_protocol: str = "streaming",
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    feature_type: str | None = None,
    seed: int | None = None,
    shot: int | None = None,
    task_labels: bool = False,
    check_images: str = "header",
    skip_bad_images: bool = False,
) -> BuiltScenario:
    """CLEAR-10 / CLEAR-100: one experience per time bucket, from a local copy of the release.

    Experience t trains on bucket t's training images; the test stream has one experience per
    bucket with its held-out images (never an image trained on), so evaluating on the whole test
    stream after every experience gives the accuracy matrix (in-domain diagonal, next-domain
    super-diagonal, backward / forward transfer).

    Args:
        data_name: 'clear10', 'clear100' (newer layout: ``train/`` or ``train_image_only/`` +
            ``test/``), 'clear10_neurips2021', 'clear100_cvpr2022' (older layout:
            ``training_folder/``).
        dataset_root: the unpacked release (e.g. 'dataset/CLEAR-10-PUBLIC/').
        evaluation_protocol: 'streaming': train on all of bucket t's training images, test on every
            bucket's held-out images (newer layout: ``test/``; older layout: the test part of
            split ``seed`` or 0). 'iid': the seeded 70/30 split of every bucket (split files when
            present, else the official recipe).
        train_transform: built pipeline for training images (ignored with ``feature_type``).
        eval_transform: built pipeline for test images (ignored with ``feature_type``).
        feature_type: None for images, or a precomputed feature type ('moco_b0', 'moco_imagenet',
            'byol_imagenet', 'imagenet', or any written by ``get_pretrained_features``).
        seed: iid split seed (official files exist for 0-4; None means 0).
        shot: train on ``shot`` images per class per bucket (files written by
            ``tools/clear_dataset.py: get_fewshot_indices``), or None for all.
        task_labels: task label t for bucket t (multi-head); False gives task label 0 everywhere.
        check_images: how every selected image is checked when the scenario is built: 'header'
            (PIL ``verify``: cheap, catches non-images and damaged headers), 'decode' (a full
            decode, also catches truncated files; slower) or 'none'.
        skip_bad_images: False: an image that fails the check is a one-line error naming it;
            True: it is left out, and the count (and paths) go to ``info['skipped_images']``.

    Raises:
        ConfigError: bad keys or a malformed tree, naming the file (and line or entry) at fault.
    """
    if feature_type is not None and (not isinstance(feature_type, str) or not feature_type):
        raise ConfigError(f"scenario.feature_type: expected None or a name, got {feature_type!r}")
    _check_choice("scenario.check_images", check_images, IMAGE_CHECKS)
    plan = plan_clear(data_name, dataset_root, evaluation_protocol, seed, shot)
    tree = plan.tree
    skipped: list[str] = []
    if feature_type is None:
        plan.train, bad_train = _drop_bad_images(plan.train, check_images, skip_bad_images)
        plan.test, bad_test = _drop_bad_images(plan.test, check_images, skip_bad_images)
        skipped = bad_train + bad_test
        if skipped:
            print(
                f"warning: scenario.skip_bad_images: left out {len(skipped)} undecodable "
                f"image(s), e.g. {skipped[0]}",
                file=sys.stderr,
            )
    cache: dict = {}
    train_sets, test_sets = [], []
    for t, bucket in enumerate(tree.buckets):
        task = t if task_labels else 0
        for samples, out in ((plan.train[t], train_sets), (plan.test[t], test_sets)):
            if feature_type is None:
                base = ClearImageDataset(samples.paths, samples.targets)
                out.append(make_dataset(base, train_transform, eval_transform, task_label=task))
            else:
                base = _feature_dataset(tree, samples, bucket, feature_type, cache)
                out.append(make_dataset(base, task_label=task))
    feature_dim = int(next(iter(cache.values())).shape[1]) if cache else None
    info = {
        "data_name": data_name,
        "layout": tree.layout,
        "dataset_root": str(tree.root),
        "evaluation_protocol": evaluation_protocol,
        "buckets": list(tree.buckets),
        "feature_type": feature_type,
        "feature_dim": feature_dim,
        "seed": plan.seed,
        "shot": shot,
        "task_labels": bool(task_labels),
        "iid_split_source": plan.iid_split_source,
        "train_folder": tree.pool_dir.name,
        "skipped_images": {"count": len(skipped), "paths": skipped[:20]},
        "train_class_counts": _counts(plan.train, len(tree.class_names)),
        "test_class_counts": _counts(plan.test, len(tree.class_names)),
    }
    return BuiltScenario(
        benchmark=make_benchmark(train_sets, test_sets),
        num_classes=len(tree.class_names),
        class_names=list(tree.class_names),
        info=info,
    )


def _counts(sets: list[SampleSet], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for samples in sets:
        for y in samples.targets:
            counts[y] += 1
    return counts
