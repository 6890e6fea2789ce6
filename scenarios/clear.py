"""CLEAR-10 / CLEAR-100 (real-world temporal drift) read straight from the released on-disk formats.

No download code path: both layouts are parsed and validated locally (every error names the file and
line or entry); one experience per time bucket, with the streaming or the seeded iid protocol.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import SCENARIOS
from avalanche_ext.scenario import BuiltScenario, TensorImageDataset, make_benchmark, make_dataset

__all__ = [
    "CLEAR_DATA_NAMES",
    "FEWSHOT_WRITER",
    "FEATURES_WRITER",
    "PROTOCOLS",
    "SPLIT_FOLDER",
    "TEST_RATIO",
    "BucketSamples",
    "ClearImageDataset",
    "ClearPlan",
    "ClearTree",
    "SampleSet",
    "build_clear",
    "detect_layout",
    "iid_split",
    "load_bucket_features",
    "plan_clear",
    "read_class_names",
    "read_clear_tree",
    "read_json",
]

CLEAR_DATA_NAMES: dict[str, str] = {
    "clear10": "new",
    "clear100": "new",
    "clear10_neurips2021": "old",
    "clear100_cvpr2022": "old",
}
"""``data_name`` -> on-disk layout ('old': NeurIPS'21 / CVPR'22 filelists; 'new': per-split metadata)."""

TEST_RATIO = 0.3
SPLIT_FOLDER = "testset_ratio_0.3"
NEW_TRAIN_FOLDERS = ("train", "train_image_only")
NEW_TEST_FOLDER = "test"
FEWSHOT_WRITER = "tools/clear_dataset.py: get_fewshot_indices(root, shot, seed)"
FEATURES_WRITER = (
    "tools/clear_dataset.py: get_pretrained_features(root, feature_type, config_or_model, ...)"
)


# ----------------------------------------------------------------------------- reading the tree
def read_json(path: Path, what: str) -> Any:
    """Parses a JSON file; a missing or broken file raises a ConfigError naming it (and the line)."""
    if not path.is_file():
        raise ConfigError(f"{path}: missing ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({err})") from None


def read_class_names(path: Path) -> list[str]:
    """Reads ``class_names.txt``: one name per line, line number (from 0) = class index.

    One trailing newline is tolerated; an empty line inside the list would shift every later class
    and is an error.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: missing (CLEAR class names, one per line)")
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    names = [line.strip() for line in lines]
    if not names:
        raise ConfigError(f"{path}: no class names")
    for lineno, name in enumerate(names, 1):
        if not name:
            raise ConfigError(f"{path}:{lineno}: empty class name")
        if names.index(name) != lineno - 1:
            raise ConfigError(f"{path}:{lineno}: duplicate class name {name!r}")
    return names


@dataclass
class BucketSamples:
    """The images of one time bucket in one split folder, in their canonical order.

    The canonical order is the order of ``filelists/<b>/all.txt`` (older layout) or classes in
    ``class_names.txt`` order, then entries in metadata-file order (newer layout); split index files,
    few-shot files and precomputed features all index into it.

    Args:
        bucket: the bucket key.
        source: the file that lists the bucket's images (named in errors).
        paths: absolute image paths.
        targets: class indices.
        records: the metadata dict of every image (newer layout), else None.
        keys: the metadata key (Flickr id) of every image (newer layout), else None.
    """

    bucket: str
    source: Path
    paths: list[Path]
    targets: list[int]
    records: list[dict[str, Any]] | None = field(default=None, repr=False)
    keys: list[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class ClearTree:
    """A parsed and validated CLEAR folder.

    Args:
        root: the dataset root.
        layout: 'old' or 'new'.
        class_names: index = class id.
        class_names_file: where the names come from.
        buckets: bucket keys in time order.
        split_dirs: split name -> folder; 'all' (older layout) or 'train' and 'test' (newer layout).
        samples: split name -> bucket -> samples.
        pool_split: the split iid splits, few-shot picks and training draw from.
        heldout_split: the split of held-out test images (newer layout: 'test'), or None (older
            layout: the held-out images are the iid split's test part).
    """

    root: Path
    layout: str
    class_names: list[str]
    class_names_file: Path
    buckets: list[str]
    split_dirs: dict[str, Path]
    samples: dict[str, dict[str, BucketSamples]]
    pool_split: str
    heldout_split: str | None

    @property
    def pool_dir(self) -> Path:
        """Folder holding ``testset_ratio_0.3/``, ``fewshot/`` and the pool's ``features/``."""
        return self.split_dirs[self.pool_split]

    def split_file_dir(self, seed: int, bucket: str) -> Path:
        """``<pool>/testset_ratio_0.3/split_<seed>/<bucket>/``."""
        return self.pool_dir / SPLIT_FOLDER / f"split_{seed}" / bucket

    def fewshot_file(self, shot: int, seed: int, bucket: str) -> Path:
        """``<pool>/fewshot/shot_<shot>/split_<seed>/<bucket>.json``."""
        return self.pool_dir / "fewshot" / f"shot_{shot}" / f"split_{seed}" / f"{bucket}.json"

    def features_file(self, split: str, feature_type: str, bucket: str) -> Path:
        """``<split folder>/features/<feature_type>/<bucket>/all.pth``."""
        return self.split_dirs[split] / "features" / feature_type / bucket / "all.pth"

    def iid_indices(self, bucket: str, seed: int) -> tuple[list[int], list[int], str]:
        """The seeded 70/30 split of a bucket's pool images: ``(train, test, source)``.

        Uses the split files under :meth:`split_file_dir` when present (``*_indices.json``, else
        ``train.txt`` / ``test.txt`` matched by path), else computes :func:`iid_split`, which
        reproduces the official files exactly. ``source`` is 'files' or 'computed'.
        """
        pool = self.samples[self.pool_split][bucket]
        folder = self.split_file_dir(seed, bucket)
        train_json, test_json = folder / "train_indices.json", folder / "test_indices.json"
        train_txt, test_txt = folder / "train.txt", folder / "test.txt"
        if train_json.is_file() or test_json.is_file():
            train = _read_index_list(train_json, len(pool))
            test = _read_index_list(test_json, len(pool))
        elif train_txt.is_file() or test_txt.is_file():
            lookup = {str(p): i for i, p in reversed(list(enumerate(pool.paths)))}
            train = _read_split_filelist(train_txt, self.root, lookup, pool)
            test = _read_split_filelist(test_txt, self.root, lookup, pool)
        else:
            train, test = iid_split(len(pool), seed)
            return train, test, "computed"
        if len(set(train) | set(test)) != len(pool) or set(train) & set(test):
            raise ConfigError(
                f"{folder}: the train/test split files do not partition the {len(pool)} images of "
                f"bucket {bucket!r} listed in {pool.source}"
            )
        return train, test, "files"


def _read_index_list(path: Path, size: int) -> list[int]:
    data = read_json(path, "iid split indices")
    if not isinstance(data, list) or not all(isinstance(i, int) for i in data):
        raise ConfigError(f"{path}: expected a JSON list of image indices")
    bad = [i for i in data if not 0 <= i < size]
    if bad:
        raise ConfigError(f"{path}: index {bad[0]} out of range 0..{size - 1}")
    return data


def _read_split_filelist(
    path: Path, root: Path, lookup: dict[str, int], pool: BucketSamples
) -> list[int]:
    if not path.is_file():
        raise ConfigError(f"{path}: missing (iid split file list)")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        rel = line.rsplit(maxsplit=1)[0]
        index = lookup.get(str(root / rel))
        if index is None:
            raise ConfigError(f"{path}:{lineno}: image {rel} is not listed in {pool.source}")
        out.append(index)
    return out


def _read_filelist(path: Path, root: Path, bucket: str, num_classes: int) -> BucketSamples:
    if not path.is_file():
        raise ConfigError(f"{path}: missing (file list of bucket {bucket!r})")
    paths, targets = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ConfigError(
                f"{path}:{lineno}: expected '<image path> <class index>', got {line!r}"
            )
        label = int(parts[1])
        if not 0 <= label < num_classes:
            raise ConfigError(
                f"{path}:{lineno}: class index {label} out of range 0..{num_classes - 1} "
                f"(class_names.txt has {num_classes} classes)"
            )
        image = root / parts[0]
        if not image.is_file():
            raise ConfigError(f"{path}:{lineno}: image {image} does not exist")
        paths.append(image)
        targets.append(label)
    if not paths:
        raise ConfigError(f"{path}: bucket {bucket!r} lists no images")
    return BucketSamples(bucket, path, paths, targets)


def _read_old_layout(root: Path) -> ClearTree:
    class_file = root / "class_names.txt"
    class_names = read_class_names(class_file)
    folder = root / "training_folder"
    index_file = folder / "bucket_indices.json"
    keys = read_json(index_file, "JSON list of bucket keys")
    if not isinstance(keys, list) or not keys:
        raise ConfigError(f"{index_file}: expected a non-empty JSON list of bucket keys")
    buckets = [str(k) for k in keys]
    if len(set(buckets)) != len(buckets):
        raise ConfigError(f"{index_file}: duplicate bucket keys {buckets}")
    samples = {
        b: _read_filelist(folder / "filelists" / b / "all.txt", root, b, len(class_names))
        for b in buckets
    }
    return ClearTree(
        root=root,
        layout="old",
        class_names=class_names,
        class_names_file=class_file,
        buckets=buckets,
        split_dirs={"all": folder},
        samples={"all": samples},
        pool_split="all",
        heldout_split=None,
    )


def _bucket_order(keys: list[str]) -> list[str]:
    # Bucket keys "1".."10" sort numerically ("10" after "9"); other keys keep the file's order.
    return sorted(keys, key=int) if all(k.isdigit() for k in keys) else keys


def _read_new_split(folder: Path, class_names: list[str]) -> dict[str, BucketSamples]:
    index_file = folder / "labeled_metadata.json"
    index = read_json(index_file, "bucket -> class -> metadata file")
    if not isinstance(index, dict) or not index:
        raise ConfigError(f"{index_file}: expected a non-empty JSON object bucket -> class -> file")
    out = {}
    for bucket in _bucket_order([str(k) for k in index]):
        per_class = index[bucket]
        if not isinstance(per_class, dict):
            raise ConfigError(f"{index_file}: bucket {bucket!r}: expected an object class -> file")
        unknown = sorted(set(per_class) - set(class_names))
        if unknown:
            raise ConfigError(
                f"{index_file}: bucket {bucket!r}: class {unknown[0]!r} is not in "
                f"{folder / 'class_names.txt'}"
            )
        paths, targets, records, keys = [], [], [], []
        for label, name in enumerate(class_names):
            if name not in per_class:
                raise ConfigError(
                    f"{index_file}: bucket {bucket!r} has no entry for class {name!r}"
                )
            meta_file = folder / str(per_class[name])
            meta = read_json(meta_file, f"metadata of class {name!r} in bucket {bucket!r}")
            if not isinstance(meta, dict):
                raise ConfigError(f"{meta_file}: expected a JSON object id -> metadata")
            for key, entry in meta.items():
                rel = entry.get("IMG_PATH") if isinstance(entry, dict) else None
                if not isinstance(rel, str) or not rel:
                    raise ConfigError(f"{meta_file}: entry {key!r} has no IMG_PATH")
                image = folder / rel
                if not image.is_file():
                    raise ConfigError(f"{meta_file}: entry {key!r}: image {image} does not exist")
                paths.append(image)
                targets.append(label)
                records.append(entry)
                keys.append(str(key))
        if not paths:
            raise ConfigError(
                f"{index_file}: bucket {bucket!r} has no images (every class's metadata is empty)"
            )
        out[bucket] = BucketSamples(bucket, index_file, paths, targets, records, keys)
    return out


def _new_train_folder(root: Path) -> Path | None:
    for name in NEW_TRAIN_FOLDERS:
        if (root / name / "labeled_metadata.json").is_file():
            return root / name
    return None


def _read_new_layout(root: Path) -> ClearTree:
    train_dir = _new_train_folder(root)
    if train_dir is None:
        looked = " or ".join(str(root / n / "labeled_metadata.json") for n in NEW_TRAIN_FOLDERS)
        raise ConfigError(f"{root}: missing training split ({looked})")
    class_file = train_dir / "class_names.txt"
    class_names = read_class_names(class_file)
    split_dirs = {"train": train_dir}
    samples = {"train": _read_new_split(train_dir, class_names)}
    buckets = list(samples["train"])
    test_dir = root / NEW_TEST_FOLDER
    if test_dir.exists():
        test_names = read_class_names(test_dir / "class_names.txt")
        if test_names != class_names:
            raise ConfigError(
                f"{test_dir / 'class_names.txt'}: differs from {class_file} (classes must match)"
            )
        split_dirs["test"] = test_dir
        samples["test"] = _read_new_split(test_dir, class_names)
        if list(samples["test"]) != buckets:
            raise ConfigError(
                f"{test_dir / 'labeled_metadata.json'}: buckets {list(samples['test'])} differ "
                f"from {train_dir / 'labeled_metadata.json'}: {buckets}"
            )
    return ClearTree(
        root=root,
        layout="new",
        class_names=class_names,
        class_names_file=class_file,
        buckets=buckets,
        split_dirs=split_dirs,
        samples=samples,
        pool_split="train",
        heldout_split="test" if "test" in samples else None,
    )


LAYOUT_READERS: dict[str, Callable[[Path], ClearTree]] = {
    "old": _read_old_layout,
    "new": _read_new_layout,
}


def detect_layout(root: str | os.PathLike) -> str:
    """'old' when ``root`` has ``training_folder/``, 'new' when it has a ``train``/``train_image_only``
    split with ``labeled_metadata.json``; a ConfigError otherwise."""
    root = Path(root)
    if (root / "training_folder").is_dir():
        return "old"
    if _new_train_folder(root) is not None:
        return "new"
    raise ConfigError(
        f"{root}: not a CLEAR folder (expected training_folder/ for clear10_neurips2021 / "
        "clear100_cvpr2022, or train/labeled_metadata.json for clear10 / clear100)"
    )


def read_clear_tree(root: str | os.PathLike, layout: str | None = None) -> ClearTree:
    """Parses and validates a CLEAR folder: class names, buckets, every image listed exists.

    Args:
        root: the dataset root.
        layout: 'old' or 'new'; None detects it.

    Raises:
        ConfigError: naming the file (and line or metadata entry) at fault.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: CLEAR dataset root does not exist (nothing is ever downloaded)")
    found = detect_layout(root)
    layout = layout or found
    if layout != found:
        names = sorted(n for n, lay in CLEAR_DATA_NAMES.items() if lay == found)
        raise ConfigError(
            f"{root}: holds the {found}er CLEAR layout, not the {layout}er one expected by this "
            f"data_name; use data_name={' or '.join(repr(n) for n in names)}"
        )
    return LAYOUT_READERS[layout](root)


def iid_split(num_samples: int, seed: int, test_ratio: float = TEST_RATIO):
    """The official CLEAR train/test split of one bucket's images.

    ``random.seed(seed)``, shuffle ``range(num_samples)``, first ``N - int(test_ratio * N)`` train,
    the rest test (a private ``random.Random`` gives the same sequence without touching the global
    state).

    Returns:
        tuple[list[int], list[int]]: train indices, test indices.
    """
    indices = list(range(num_samples))
    random.Random(seed).shuffle(indices)
    num_test = int(test_ratio * num_samples)
    return indices[: num_samples - num_test], indices[num_samples - num_test :]


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
class ClearImageDataset(Dataset):
    """Images read lazily from disk with PIL (RGB); yields ``(PIL image, class index)``.

    Args:
        paths: image files.
        targets: class indices.
    """

    def __init__(self, paths: Sequence[Path], targets: Sequence[int]):
        self.paths = list(paths)
        self.targets = torch.as_tensor(list(targets), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: cannot read image ({err})") from None
        return image, int(self.targets[index])


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
