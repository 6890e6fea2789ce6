"""Prepares CLEAR folders for the CLEAR scenario: few-shot index files, re-bucketed trees, features.

Every function reads the tree through ``avalanche_ext.datasets.clear_layout.read_clear_tree`` (same
validation, same canonical image order) and writes where the scenario looks (see docs/clear.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from avalanche_ext.datasets.clear_layout import (  # noqa: E402
    ClearImageDataset,
    ClearTree,
    read_clear_tree,
)
from avalanche_ext.errors import ConfigError  # noqa: E402

__all__ = [
    "by_date_taken",
    "create_dataset",
    "get_fewshot_indices",
    "get_pretrained_features",
    "main",
]


# ----------------------------------------------------------------------------- few-shot
def get_fewshot_indices(
    root: str | os.PathLike, shot: int, seed: int = 0, layout: str | None = None
) -> dict[str, Path]:
    """Picks ``shot`` training images per class per bucket and writes them where the scenario reads.

    The pick is drawn from the training part of the iid split ``seed`` (so the iid test part stays
    unseen), class by class, with ``random.Random(seed)`` over the buckets in time order. Files:
    ``<root>/training_folder/fewshot/shot_<shot>/split_<seed>/<bucket>.json`` (older layout) or
    ``<root>/<train folder>/fewshot/...`` (newer layout), each a JSON list of image indices in the
    bucket's canonical order.

    Args:
        root: a CLEAR folder.
        shot: images per class per bucket.
        seed: the iid split seed and the pick's seed.
        layout: 'old' or 'new'; None detects it.

    Returns:
        dict[str, Path]: bucket -> file written.

    Raises:
        ConfigError: a class has fewer than ``shot`` training images in some bucket.
    """
    if isinstance(shot, bool) or not isinstance(shot, int) or shot < 1:
        raise ConfigError(f"shot: expected a positive integer, got {shot!r}")
    tree = read_clear_tree(root, layout)
    rng = random.Random(seed)
    written = {}
    for bucket in tree.buckets:
        train, _, _ = tree.iid_indices(bucket, seed)
        targets = tree.samples[tree.pool_split][bucket].targets
        chosen: list[int] = []
        for label, name in enumerate(tree.class_names):
            candidates = sorted(i for i in train if targets[i] == label)
            if len(candidates) < shot:
                raise ConfigError(
                    f"{tree.samples[tree.pool_split][bucket].source}: bucket {bucket!r} has "
                    f"{len(candidates)} training images of class {name!r} (split seed {seed}), "
                    f"fewer than shot={shot}"
                )
            chosen += rng.sample(candidates, shot)
        path = tree.fewshot_file(shot, seed, bucket)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(chosen), encoding="utf-8")
        written[bucket] = path
    return written


# ----------------------------------------------------------------------------- re-bucketing
by_date_taken: Callable[[list[dict]], list[dict]] = functools.partial(
    sorted, key=lambda record: record["DATE_TAKEN"]
)
"""The default ``process``: order a class's images by ``DATE_TAKEN`` (CLEAR's own time axis)."""


def _cut(items: list, num_buckets: int) -> list[list]:
    # Equal buckets; when the count does not divide, the first buckets get one more item.
    size, extra = divmod(len(items), num_buckets)
    out, start = [], 0
    for b in range(num_buckets):
        stop = start + size + (1 if b < extra else 0)
        out.append(items[start:stop])
        start = stop
    return out


def _place(source: Path, target: Path, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not allowed: copy instead
            pass
    shutil.copy2(source, target)


def _rebucket_split(
    tree: ClearTree, split: str, out: Path, process: Callable, num_buckets: int, link: bool
) -> None:
    folder = tree.split_dirs[split]
    new_buckets = [str(b) for b in range(1, num_buckets + 1)]
    index: dict[str, dict[str, str]] = {b: {} for b in new_buckets}
    per_bucket: dict[str, int] = dict.fromkeys(new_buckets, 0)
    for label, name in enumerate(tree.class_names):
        records, origin = [], {}
        for bucket in tree.buckets:
            samples = tree.samples[split][bucket]
            for path, y, record, key in zip(
                samples.paths, samples.targets, samples.records, samples.keys
            ):
                if y == label:
                    records.append(dict(record))
                    origin[record["IMG_PATH"]] = (path, key, bucket)
        ordered = process([dict(r) for r in records])
        seen = set()
        for record in ordered:
            rel = record.get("IMG_PATH") if isinstance(record, dict) else None
            if rel not in origin or rel in seen:
                what = "an unknown" if rel not in origin else "a repeated"
                raise ConfigError(
                    f"create_dataset: process returned {what} record ({rel!r}) for class {name!r} "
                    f"of {folder}; it must return the given metadata dicts, re-ordered"
                )
            seen.add(rel)
        for new_bucket, chunk in zip(new_buckets, _cut(list(ordered), num_buckets)):
            meta = {}
            for record in chunk:
                source, key, old_bucket = origin[record["IMG_PATH"]]
                new_rel = f"labeled_images/{new_bucket}/{name}/{source.name}"
                if key in meta or (out / new_rel).exists():
                    raise ConfigError(f"{source}: two images would share {out / new_rel}")
                _place(source, out / new_rel, link)
                meta[key] = dict(record, IMG_PATH=new_rel, SOURCE_BUCKET=old_bucket)
            meta_rel = f"labeled_metadata/{new_bucket}/{name}.json"
            (out / meta_rel).parent.mkdir(parents=True, exist_ok=True)
            (out / meta_rel).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            index[new_bucket][name] = meta_rel
            per_bucket[new_bucket] += len(meta)
    empty = [b for b, n in per_bucket.items() if n == 0]
    if empty:
        raise ConfigError(
            f"create_dataset: {folder} has too few images for {num_buckets} buckets "
            f"(bucket {empty[0]} would be empty)"
        )
    (out / "class_names.txt").write_text("\n".join(tree.class_names), encoding="utf-8")
    (out / "labeled_metadata.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def create_dataset(
    root: str | os.PathLike,
    new_root: str | os.PathLike,
    process: Callable[[list[dict]], list[dict]] | None = None,
    num_buckets: int | None = None,
    link: bool = True,
) -> Path:
    """Builds a new CLEAR tree (newer layout) whose buckets come from re-ordering the metadata.

    For every split folder (``train``/``train_image_only`` and ``test``) and every class,
    ``process`` receives the metadata dicts of that class across all buckets (in bucket order) and
    returns them in the new order (it may drop some); the result is cut into ``num_buckets`` equal
    buckets "1".."N" (the first ones get one more image when the count does not divide). Images are
    hard-linked (copied when linking fails, or with ``link=False``); every new metadata entry
    keeps its fields, with the new ``IMG_PATH`` and ``SOURCE_BUCKET`` (the bucket it came from).
    Precomputed features are not carried over: recompute them with :func:`get_pretrained_features`.

    Args:
        root: a newer-layout CLEAR folder.
        new_root: output folder (must not exist, or be empty).
        process: re-orders one class's metadata dicts; default :data:`by_date_taken`, e.g.
            ``functools.partial(sorted, key=lambda x: x['DATE_TAKEN'])``.
        num_buckets: buckets of the new tree; None keeps the original count.
        link: hard-link images instead of copying them.

    Returns:
        Path: ``new_root``.
    """
    root, new_root = Path(root), Path(new_root)
    tree = read_clear_tree(root)
    if tree.layout != "new":
        raise ConfigError(
            f"{root}: re-bucketing needs the newer layout's labeled metadata (clear10 / clear100); "
            "the older layout has no DATE_TAKEN"
        )
    if new_root.exists() and any(new_root.iterdir()):
        raise ConfigError(f"{new_root}: exists and is not empty")
    if new_root.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"{new_root}: must not be inside the source tree {root}")
    num_buckets = len(tree.buckets) if num_buckets is None else int(num_buckets)
    if num_buckets < 1:
        raise ConfigError(f"num_buckets: expected a positive integer, got {num_buckets}")
    process = by_date_taken if process is None else process
    for split, folder in tree.split_dirs.items():
        _rebucket_split(tree, split, new_root / folder.name, process, num_buckets, link)
    return new_root


# ----------------------------------------------------------------------------- features
def _model_and_pipeline(config_or_model: Any, pipeline: Any) -> tuple[nn.Module, Callable | None]:
    from avalanche_ext.transforms import ToTensor, build_pipeline

    if isinstance(config_or_model, nn.Module):
        built = build_pipeline(pipeline, "pipeline") if pipeline is not None else ToTensor()
        return config_or_model, built
    from avalanche_ext.builders import build_model
    from avalanche_ext.config import load_config

    cfg = config_or_model
    if isinstance(cfg, (str, os.PathLike)):
        cfg = load_config(str(cfg))
    elif isinstance(cfg, dict) and not hasattr(cfg, "filename"):
        from mmengine.config import Config

        cfg = Config(cfg)
    if "model" not in cfg:
        raise ConfigError("config: has no 'model' to extract features with")
    if pipeline is None:
        pipeline = cfg.get("test_pipeline") or [dict(type="ToTensor")]
    return build_model(cfg.model), build_pipeline(pipeline, "test_pipeline")


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model.extract_features(x) if hasattr(model, "extract_features") else model(x)
    if isinstance(out, (tuple, list)):
        out = out[-1]
    return out.flatten(1)


@torch.no_grad()
def get_pretrained_features(
    root: str | os.PathLike,
    feature_type: str,
    config_or_model: Any,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    pipeline: Sequence[dict] | Callable | None = None,
    layout: str | None = None,
) -> list[Path]:
    """Computes the features of every image of a CLEAR tree and writes them for ``feature_type``.

    Output: ``<split folder>/features/<feature_type>/<bucket>/all.pth`` =
    ``torch.save((features float32 [N, D], labels int64 [N]))`` with rows in the bucket's canonical
    order, for every split folder (older layout: ``training_folder``; newer: train and test).

    Args:
        root: a CLEAR folder.
        feature_type: the name the scenario's ``feature_type`` will use (e.g. 'moco_b0', 'r18_b1').
        config_or_model: a config path / ``Config`` / dict with ``model`` (built with
            ``avalanche_ext.builders.build_model``), or an ``nn.Module``.
        checkpoint: a checkpoint whose ``model`` state dict is loaded into the model.
        device: torch device.
        batch_size: images per forward.
        pipeline: image pipeline; default the config's ``test_pipeline`` (``ToTensor`` for a module).
        layout: 'old' or 'new'; None detects it.

    Returns:
        list[Path]: the files written.
    """
    tree = read_clear_tree(root, layout)
    model, transform = _model_and_pipeline(config_or_model, pipeline)
    if checkpoint is not None:
        from avalanche_ext.runner import load_weights

        load_weights(model, str(checkpoint), key="checkpoint")
    model.eval().to(device)
    written = []
    for split, per_bucket in tree.samples.items():
        for bucket, samples in per_bucket.items():
            dataset = ClearImageDataset(samples.paths, samples.targets)
            loader = DataLoader(
                dataset,
                batch_size=batch_size,
                collate_fn=lambda batch: (
                    torch.stack([transform(img) if transform else img for img, _ in batch]),
                    torch.as_tensor([y for _, y in batch]),
                ),
            )
            chunks = [_features(model, x.to(device)).float().cpu() for x, _ in loader]
            path = tree.features_file(split, feature_type, bucket)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save((torch.cat(chunks), dataset.targets.clone()), path)
            written.append(path)
    return written


# ----------------------------------------------------------------------------- CLI
def _fewshot_command(args: argparse.Namespace) -> list[Path]:
    return list(get_fewshot_indices(args.root, args.shot, args.seed).values())


def _rebucket_command(args: argparse.Namespace) -> list[Path]:
    return [create_dataset(args.root, args.new_root, None, args.num_buckets, not args.copy)]


def _features_command(args: argparse.Namespace) -> list[Path]:
    return get_pretrained_features(
        args.root, args.feature_type, args.config, args.checkpoint, args.device, args.batch_size
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``fewshot ROOT --shot 5 --seed 0`` | ``rebucket ROOT NEW_ROOT [--num-buckets N]`` |
    ``features ROOT --feature-type T --config CFG [--checkpoint CKPT]``; prints the files written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fewshot = sub.add_parser("fewshot", help="write few-shot index files")
    fewshot.add_argument("root")
    fewshot.add_argument("--shot", type=int, required=True)
    fewshot.add_argument("--seed", type=int, default=0)
    fewshot.set_defaults(command_fn=_fewshot_command)
    rebucket = sub.add_parser("rebucket", help="re-bucket a newer-layout tree by DATE_TAKEN")
    rebucket.add_argument("root")
    rebucket.add_argument("new_root")
    rebucket.add_argument("--num-buckets", type=int, default=None)
    rebucket.add_argument("--copy", action="store_true", help="copy images instead of linking")
    rebucket.set_defaults(command_fn=_rebucket_command)
    features = sub.add_parser("features", help="compute features with a config's model")
    features.add_argument("root")
    features.add_argument("--feature-type", required=True)
    features.add_argument("--config", required=True)
    features.add_argument("--checkpoint", default=None)
    features.add_argument("--device", default="cpu")
    features.add_argument("--batch-size", type=int, default=64)
    features.set_defaults(command_fn=_features_command)
    args = parser.parse_args(argv)
    try:
        written = args.command_fn(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
