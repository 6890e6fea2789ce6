"""Writes a real-pixel CLEAR-format stream from CIFAR-100 (newer layout) for CPU-sized experiments.

The 20 superclasses are the classes; bucket b draws most of superclass s's images from fine class b
of s, so the look of every class drifts over time, as in CLEAR (which cannot be had offline).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from avalanche_ext.datasets.cifar import load_cifar100  # noqa: E402
from avalanche_ext.errors import ConfigError  # noqa: E402

__all__ = ["FINE_PER_SUPERCLASS", "fine_classes_by_superclass", "make_cifar_clear", "main"]

FINE_PER_SUPERCLASS = 5
MARKER = "cifar_clear.json"
FIRST_YEAR = 2004


def fine_classes_by_superclass(fine: np.ndarray, coarse: np.ndarray) -> list[list[int]]:
    """Superclass s -> its fine class ids, ascending (fine class b of s = ``[s][b]``)."""
    out = [sorted({int(f) for f in fine[coarse == s]}) for s in range(int(coarse.max()) + 1)]
    for s, fines in enumerate(out):
        if len(fines) != FINE_PER_SUPERCLASS:
            raise ConfigError(f"CIFAR-100 superclass {s} has {len(fines)} fine classes, expected 5")
    return out


def _draw(
    pools: dict[int, list[int]], fines: list[int], bucket: int, count: int, purity: float, rng
) -> list[int]:
    # round(purity * count) images of fine class ``bucket``, the rest spread over the other four
    # fine classes of the superclass (random order, one at a time).
    main = int(round(purity * count))
    others = [f for i, f in enumerate(fines) if i != bucket]
    picks = [fines[bucket]] * main + [
        others[int(rng.integers(len(others)))] for _ in range(count - main)
    ]
    out = []
    for fine in picks:
        if not pools[fine]:
            raise ConfigError(
                f"CIFAR-100 fine class {fine} has no images left: ask for fewer images per class"
            )
        out.append(pools[fine].pop())
    return out


def _write_split(
    folder: Path,
    images: np.ndarray,
    fine: np.ndarray,
    coarse_names: list[str],
    fine_names: list[str],
    by_super: list[list[int]],
    num_buckets: int,
    per_class: int,
    purity: float,
    cifar_split: str,
    id_offset: int,
    rng,
) -> None:
    pools = {f: rng.permutation(np.flatnonzero(fine == f)).tolist() for s in by_super for f in s}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "class_names.txt").write_text("\n".join(coarse_names), encoding="utf-8")
    index: dict[str, dict[str, str]] = {}
    for b in range(num_buckets):
        bucket = str(b + 1)
        index[bucket] = {}
        start = datetime(FIRST_YEAR + b, 1, 1)
        for s, name in enumerate(coarse_names):
            meta = {}
            for i in _draw(pools, by_super[s], b, per_class, purity, rng):
                image_id = str(id_offset + i)
                rel = f"labeled_images/{bucket}/{name}/{image_id}.png"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i].transpose(1, 2, 0)).save(folder / rel, format="PNG")
                taken = start + timedelta(seconds=int(rng.integers(0, 364 * 24 * 3600)))
                meta[image_id] = {
                    "ID": image_id,
                    "DATE_TAKEN": taken.strftime("%Y-%m-%d %H:%M:%S.0"),
                    "EXT": "png",
                    "IMG_PATH": rel,
                    "CIFAR_SPLIT": cifar_split,
                    "CIFAR_INDEX": int(i),
                    "FINE_LABEL": int(fine[i]),
                    "FINE_CLASS": fine_names[int(fine[i])],
                }
            meta_rel = f"labeled_metadata/{bucket}/{name}.json"
            (folder / meta_rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / meta_rel).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            index[bucket][name] = meta_rel
    (folder / "labeled_metadata.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def make_cifar_clear(
    out_root: str | Path,
    num_buckets: int = 5,
    train_per_class: int = 40,
    test_per_class: int = 10,
    seed: int = 0,
    dataset_root: str | Path | None = None,
    purity: float = 0.8,
) -> Path:
    """Writes ``out_root/{train,test}/`` in CLEAR's newer layout (PNG images, 32x32).

    Bucket b (1-based) of superclass s holds ``round(purity * n)`` images of the b-th fine class of
    s (fine classes in ascending id order) and the rest from s's other fine classes; train images
    come from CIFAR's train split, test images from its test split, never one image twice.
    ``cifar_clear.json`` records the arguments; calling again with the same arguments returns the
    existing tree untouched.

    Args:
        out_root: output folder (must not exist, be empty, or hold a tree made with the same args).
        num_buckets: time buckets, at most 5 (the fine classes per superclass).
        train_per_class: training images per superclass per bucket.
        test_per_class: test images per superclass per bucket.
        seed: seeds the picks and dates.
        dataset_root: where CIFAR-100 is (see ``avalanche_ext.datasets.cifar.find_cifar100``).
        purity: share of a bucket's images from its own fine class.

    Returns:
        Path: ``out_root``.
    """
    if not 1 <= num_buckets <= FINE_PER_SUPERCLASS:
        raise ConfigError(f"num_buckets: expected 1..{FINE_PER_SUPERCLASS}, got {num_buckets}")
    if train_per_class < 1 or test_per_class < 1 or not 0.0 <= purity <= 1.0:
        raise ConfigError("train_per_class / test_per_class must be >= 1 and purity in [0, 1]")
    out = Path(out_root)
    args = {
        "num_buckets": num_buckets,
        "train_per_class": train_per_class,
        "test_per_class": test_per_class,
        "seed": seed,
        "purity": purity,
    }
    marker = out / MARKER
    if marker.is_file():
        if json.loads(marker.read_text(encoding="utf-8")) == args:
            return out
        raise ConfigError(f"{marker}: {out} was made with other arguments; use another folder")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty")
    data = load_cifar100(dataset_root)
    train_fine, test_fine = data.train_labels.numpy(), data.test_labels.numpy()
    by_super = fine_classes_by_superclass(train_fine, data.train_coarse.numpy())
    rng = np.random.default_rng(seed)
    common = dict(
        coarse_names=data.coarse_names,
        fine_names=data.class_names,
        by_super=by_super,
        num_buckets=num_buckets,
        purity=purity,
        rng=rng,
    )
    train_images, test_images = data.train_images.numpy(), data.test_images.numpy()
    train_args = dict(per_class=train_per_class, cifar_split="train", id_offset=0)
    _write_split(out / "train", train_images, train_fine, **train_args, **common)
    test_args = dict(per_class=test_per_class, cifar_split="test", id_offset=len(train_fine))
    _write_split(out / "test", test_images, test_fine, **test_args, **common)
    marker.write_text(json.dumps(args, indent=2), encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python tools/make_cifar_clear.py data/cifar_clear [--num-buckets 5] ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_root")
    parser.add_argument("--num-buckets", type=int, default=5)
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--purity", type=float, default=0.8)
    parser.add_argument("--dataset-root", default=None, help="where CIFAR-100 is")
    args = parser.parse_args(argv)
    try:
        out = make_cifar_clear(
            args.out_root,
            num_buckets=args.num_buckets,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            seed=args.seed,
            dataset_root=args.dataset_root,
            purity=args.purity,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
