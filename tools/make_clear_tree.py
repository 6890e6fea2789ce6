"""Writes small CLEAR trees (both on-disk layouts) with real JPEG files and realistic metadata.

Used by the tests and for trying configs without the real release: every image carries its class
as a colour, so a model can learn; DATE_TAKEN increases with the bucket, as in CLEAR.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import random
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["CLEAR10_CLASS_NAMES", "make_clear_tree", "main"]

CLEAR10_CLASS_NAMES = [
    "BACKGROUND",
    "baseball",
    "bus",
    "camera",
    "cosplay",
    "dress",
    "hockey",
    "laptop",
    "racing",
    "soccer",
    "sweater",
]
FIRST_YEAR = 2004
SPLIT_SEEDS = range(5)


def _class_names(num_classes: int) -> list[str]:
    if num_classes <= len(CLEAR10_CLASS_NAMES):
        return CLEAR10_CLASS_NAMES[:num_classes]
    return CLEAR10_CLASS_NAMES + [
        f"class_{i}" for i in range(len(CLEAR10_CLASS_NAMES), num_classes)
    ]


def _class_colour(label: int, num_classes: int) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(label / num_classes, 0.8, 0.85)
    return np.array([r, g, b]) * 255


def _write_image(path: Path, label: int, bucket: int, num_classes: int, size: int, rng) -> None:
    # Class signal = the colour; the bucket adds a slow brightness drift; noise keeps samples apart.
    base = _class_colour(label, num_classes) * (1.0 - 0.05 * bucket)
    pixels = base + rng.normal(0, 18, size=(size, size, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=95)


def _metadata(flickr_id: int, bucket: int, rel_path: str, class_name: str, rng) -> dict:
    taken = datetime(FIRST_YEAR + bucket - 1, 1, 1) + timedelta(
        seconds=int(rng.integers(0, 364 * 24 * 3600))
    )
    uploaded = taken + timedelta(days=int(rng.integers(0, 30)), seconds=int(rng.integers(0, 86400)))
    server, secret = int(rng.integers(1000, 9999)), f"{int(rng.integers(0, 16**10)):010x}"
    farm = int(rng.integers(1, 9))
    user = f"{int(rng.integers(10**7, 10**8))}@N0{int(rng.integers(0, 8))}"
    return {
        "ID": str(flickr_id),
        "USER_ID": user,
        "NICKNAME": f"user{int(rng.integers(0, 10**5))}",
        "DATE_TAKEN": taken.strftime("%Y-%m-%d %H:%M:%S.0"),
        "DATE_UPLOADED": str(int(uploaded.replace(tzinfo=timezone.utc).timestamp())),
        "CAPTURE_DEVICE": "Canon+EOS+350D+DIGITAL",
        "TITLE": f"{class_name}+{taken.year}",
        "DESCRIPTION": "",
        "USER_TAGS": f"{class_name},{taken.year}",
        "MACHINE_TAGS": "",
        "LON": f"{rng.uniform(-180, 180):.6f}",
        "LAT": f"{rng.uniform(-90, 90):.6f}",
        "GEO_ACCURACY": str(int(rng.integers(1, 17))),
        "PAGE_URL": f"http://www.flickr.com/photos/{user}/{flickr_id}/",
        "DOWNLOAD_URL": f"http://farm{farm}.staticflickr.com/{server}/{flickr_id}_{secret}.jpg",
        "LICENSE_NAME": "Attribution-NonCommercial-ShareAlike License",
        "LICENSE_URL": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
        "SERVER_ID": str(server),
        "FARM_ID": str(farm),
        "SECRET": secret,
        "SECRET_ORIGINAL": f"{int(rng.integers(0, 16**10)):010x}",
        "EXT": "jpg",
        "MARKER": "0",
        "IMG_PATH": rel_path,
        "IMG_URL": f"https://farm{farm}.staticflickr.com/{server}/{flickr_id}_{secret}.jpg",
    }


def _write_features(path: Path, labels: Sequence[int], bucket: int, dim: int, rng) -> None:
    # Class means are fixed for the whole tree (seeded by dim), so a linear probe can learn them.
    means = torch.from_numpy(np.random.default_rng(dim).normal(0, 1, size=(max(labels) + 1, dim)))
    noise = torch.from_numpy(rng.normal(0, 0.5, size=(len(labels), dim)))
    features = (means[list(labels)] * (1.0 + 0.05 * bucket) + noise).float()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save((features, torch.as_tensor(list(labels), dtype=torch.long)), path)


def _flickr_ids(rng):
    # Flickr ids are 10-digit and grow with upload time, like the buckets.
    flickr_id = int(rng.integers(2 * 10**9, 3 * 10**9))
    while True:
        flickr_id += int(rng.integers(1, 10**5))
        yield flickr_id


def _official_split(num_samples: int, seed: int) -> tuple[list[int], list[int]]:
    # The curation code's recipe, literally (global random), so tests can compare our own
    # implementation against it; the caller's random state is restored.
    state = random.getstate()
    try:
        random.seed(seed)
        indices = list(range(num_samples))
        random.shuffle(indices)
    finally:
        random.setstate(state)
    num_train = num_samples - int(0.3 * num_samples)
    return indices[:num_train], indices[num_train:]


def _make_new(root: Path, names, num_buckets, counts, size, rng, features_dim, feature_types):
    next_id = _flickr_ids(rng)
    for split, per_class in counts.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "class_names.txt").write_text("\n".join(names), encoding="utf-8")
        index: dict[str, dict[str, str]] = {}
        for b in range(1, num_buckets + 1):
            bucket = str(b)
            index[bucket] = {}
            labels = []
            for label, name in enumerate(names):
                meta = {}
                for _ in range(per_class):
                    flickr_id = int(next(next_id))
                    rel = f"labeled_images/{bucket}/{name}/{flickr_id}.jpg"
                    _write_image(folder / rel, label, b, len(names), size, rng)
                    meta[str(flickr_id)] = _metadata(flickr_id, b, rel, name, rng)
                    labels.append(label)
                meta_rel = f"labeled_metadata/{bucket}/{name}.json"
                (folder / meta_rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / meta_rel).write_text(json.dumps(meta, indent=2), encoding="utf-8")
                index[bucket][name] = meta_rel
            for feature_type in feature_types if features_dim else ():
                path = folder / "features" / feature_type / bucket / "all.pth"
                _write_features(path, labels, b, features_dim, rng)
        (folder / "labeled_metadata.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def _make_old(root: Path, names, num_buckets, per_class, size, rng, features_dim, feature_types):
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_names.txt").write_text("\n".join(names), encoding="utf-8")
    folder = root / "training_folder"
    folder.mkdir(parents=True, exist_ok=True)
    buckets = list(range(1, num_buckets + 1))
    (folder / "bucket_indices.json").write_text(json.dumps(buckets), encoding="utf-8")
    next_id = _flickr_ids(rng)
    for b in buckets:
        lines, labels = [], []
        for label, name in enumerate(names):
            for _ in range(per_class):
                rel = f"labeled_images/{b}/{name}/{int(next(next_id))}.jpg"
                _write_image(root / rel, label, b, len(names), size, rng)
                lines.append(f"{rel} {label}")
                labels.append(label)
        filelist = folder / "filelists" / str(b) / "all.txt"
        filelist.parent.mkdir(parents=True, exist_ok=True)
        filelist.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for seed in SPLIT_SEEDS:
            train, test = _official_split(len(lines), seed)
            split_dir = folder / "testset_ratio_0.3" / f"split_{seed}" / str(b)
            split_dir.mkdir(parents=True, exist_ok=True)
            for part, indices in (("train", train), ("test", test)):
                text = "\n".join(lines[i] for i in indices) + "\n"
                (split_dir / f"{part}.txt").write_text(text, encoding="utf-8")
                (split_dir / f"{part}_indices.json").write_text(json.dumps(indices))
        for feature_type in feature_types if features_dim else ():
            path = folder / "features" / feature_type / str(b) / "all.pth"
            _write_features(path, labels, b, features_dim, rng)


def make_clear_tree(
    root: str | Path,
    layout: str = "new",
    num_classes: int = 3,
    num_buckets: int = 3,
    per_class: int = 4,
    test_per_class: int = 2,
    image_size: int = 16,
    seed: int = 0,
    features_dim: int | None = None,
    feature_types: Sequence[str] = ("moco_b0",),
) -> Path:
    """Writes a small CLEAR tree.

    Newer layout ('new', as clear10 / clear100): ``train/`` with ``per_class`` and ``test/`` with
    ``test_per_class`` images per class per bucket, buckets "1".."N", metadata with Flickr-like
    fields. Older layout ('old', as clear10_neurips2021): ``per_class + test_per_class`` images per
    class per bucket in ``training_folder/filelists/<b>/all.txt``, the official iid split files
    for seeds 0-4 (``testset_ratio_0.3/split_<s>/<b>/``), bucket keys 1..N.

    Args:
        root: output folder (created).
        layout: 'new' or 'old'.
        num_classes: classes (CLEAR-10's names first, BACKGROUND = 0).
        num_buckets: time buckets.
        per_class: training images per class per bucket.
        test_per_class: test images per class per bucket.
        image_size: side of the square JPEG images.
        seed: seeds images, ids and dates.
        features_dim: also write ``features/<type>/<b>/all.pth`` with this feature size.
        feature_types: the feature types written when ``features_dim`` is set.

    Returns:
        Path: ``root``.
    """
    if layout not in ("new", "old"):
        raise ValueError(f"layout must be 'new' or 'old', got {layout!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = _class_names(num_classes)
    if layout == "new":
        counts = {"train": per_class, "test": test_per_class}
        _make_new(root, names, num_buckets, counts, image_size, rng, features_dim, feature_types)
    else:
        total = per_class + test_per_class
        _make_old(root, names, num_buckets, total, image_size, rng, features_dim, feature_types)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python tools/make_clear_tree.py OUT [--layout old] [--num-classes 11] ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="output folder")
    parser.add_argument("--layout", choices=["new", "old"], default="new")
    parser.add_argument("--num-classes", type=int, default=3)
    parser.add_argument("--num-buckets", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--test-per-class", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features-dim", type=int, default=None)
    args = parser.parse_args(argv)
    root = make_clear_tree(
        args.root,
        layout=args.layout,
        num_classes=args.num_classes,
        num_buckets=args.num_buckets,
        per_class=args.per_class,
        test_per_class=args.test_per_class,
        image_size=args.image_size,
        seed=args.seed,
        features_dim=args.features_dim,
    )
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
