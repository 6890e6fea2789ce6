"""The on-disk layouts of CLEAR-10 / CLEAR-100, parsed and validated (every error names the file and
line or entry): the released NeurIPS'21 / CVPR'22 filelists ('old') and the per-split metadata of the
current release ('new'), and the lazy image dataset over them. The CLEAR scenario and
``tools/clear_dataset.py`` both read the tree through :func:`read_clear_tree`.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from avalanche_ext.errors import ConfigError

__all__ = [
    "CLEAR_DATA_NAMES",
    "FEATURES_WRITER",
    "FEWSHOT_WRITER",
    "SPLIT_FOLDER",
    "TEST_RATIO",
    "BucketSamples",
    "ClearImageDataset",
    "ClearTree",
    "detect_layout",
    "iid_split",
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
