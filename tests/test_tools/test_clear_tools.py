"""CLEAR tools: tree generator, re-bucketing by DATE_TAKEN, pretrained features, CIFAR-derived tree.

All trees live in pytest's tmp folders; the CIFAR-derived one is tiny (3 buckets, 2 + 1 per class).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avalanche_ext.datasets.clear_layout import read_clear_tree
from avalanche_ext.errors import ConfigError
from avalanche_ext.transforms import ToTensor
from scenarios.clear import build_clear, plan_clear
from tools import clear_dataset
from tools import make_clear_tree as make_clear_tree_cli
from tools.clear_dataset import create_dataset, get_pretrained_features
from tools.make_cifar_clear import fine_classes_by_superclass, make_cifar_clear
from tools.make_clear_tree import make_clear_tree


@pytest.fixture(scope="module")
def new_tree(tmp_path_factory) -> Path:
    return make_clear_tree(tmp_path_factory.mktemp("tree") / "CLEAR", per_class=4, test_per_class=2)


def _dates(split_dir: Path, bucket: str, name: str) -> list[str]:
    meta = json.loads((split_dir / "labeled_metadata" / bucket / f"{name}.json").read_text())
    return [entry["DATE_TAKEN"] for entry in meta.values()]


# ----------------------------------------------------------------------------- generator
def test_generated_new_tree_has_real_jpegs_and_realistic_metadata(new_tree):
    tree = read_clear_tree(new_tree)
    assert tree.layout == "new" and tree.buckets == ["1", "2", "3"]
    samples = tree.samples["train"]["2"]
    assert len(samples) == 12 and samples.targets == [0] * 4 + [1] * 4 + [2] * 4
    with Image.open(samples.paths[0]) as img:
        assert img.format == "JPEG" and img.size == (16, 16)
    record = samples.records[0]
    assert record["ID"] == samples.keys[0] and record["EXT"] == "jpg"
    assert record["IMG_PATH"] == f"labeled_images/2/BACKGROUND/{record['ID']}.jpg"
    for bucket in ("1", "2", "3"):  # DATE_TAKEN grows with the bucket
        assert all(
            d.startswith(str(2003 + int(bucket))) for d in _dates(new_tree / "test", bucket, "bus")
        )
    assert set(tree.samples["train"]["1"].keys).isdisjoint(tree.samples["test"]["1"].keys)
    # Classes are told apart by colour: class means differ far more than images within a class.
    means = [
        np.mean(
            [
                np.asarray(Image.open(p), dtype=float).mean((0, 1))
                for p, y in zip(samples.paths, samples.targets)
                if y == c
            ],
            0,
        )
        for c in range(3)
    ]
    assert min(np.abs(means[a] - means[b]).max() for a in range(3) for b in range(a)) > 40


def test_generated_old_tree_has_the_official_split_files_and_features(tmp_path):
    root = make_clear_tree(tmp_path / "old", layout="old", num_buckets=2, features_dim=5)
    folder = root / "training_folder"
    assert json.loads((folder / "bucket_indices.json").read_text()) == [1, 2]
    lines = (folder / "filelists" / "1" / "all.txt").read_text().splitlines()
    assert len(lines) == 18
    for seed in range(5):
        random.seed(seed)
        order = list(range(18))
        random.shuffle(order)
        split = folder / "testset_ratio_0.3" / f"split_{seed}" / "1"
        assert json.loads((split / "train_indices.json").read_text()) == order[:13]
        assert json.loads((split / "test_indices.json").read_text()) == order[13:]
        assert (split / "test.txt").read_text().splitlines() == [lines[i] for i in order[13:]]
    features, labels = torch.load(folder / "features" / "moco_b0" / "2" / "all.pth")
    assert features.shape == (18, 5) and labels.tolist() == [int(x.split()[1]) for x in lines]


def test_generator_cli(tmp_path, capsys):
    assert (
        make_clear_tree_cli.main([str(tmp_path / "cli"), "--layout", "old", "--num-buckets", "2"])
        == 0
    )
    assert read_clear_tree(tmp_path / "cli").buckets == ["1", "2"]


# ----------------------------------------------------------------------------- re-bucketing
def test_rebucketing_by_date_taken_sorts_buckets_by_date(tmp_path):
    # Scramble the dates first, so that re-sorting really moves images between buckets.
    root = make_clear_tree(tmp_path / "src", num_buckets=3, per_class=4, test_per_class=2)
    rng = random.Random(0)
    for meta_file in root.glob("*/labeled_metadata/*/*.json"):
        meta = json.loads(meta_file.read_text())
        for entry in meta.values():
            entry["DATE_TAKEN"] = (
                f"{rng.randint(2004, 2014)}-{rng.randint(1, 12):02d}-01 12:00:00.0"
            )
        meta_file.write_text(json.dumps(meta))
    out = create_dataset(root, tmp_path / "by_date", num_buckets=2)
    tree = read_clear_tree(out)
    assert tree.layout == "new" and tree.buckets == ["1", "2"]
    for split in ("train", "test"):
        for name in tree.class_names:
            first, second = _dates(out / split, "1", name), _dates(out / split, "2", name)
            assert max(first) <= min(second)
            per_class = 4 if split == "train" else 2
            assert len(first) + len(second) == 3 * per_class and len(first) >= len(second)
        src = read_clear_tree(root).samples[split]
        new = tree.samples[split]
        assert sum(len(s) for s in new.values()) == sum(len(s) for s in src.values())
    sample = tree.samples["train"]["1"]
    record = sample.records[0]
    original = root / "train" / "labeled_images" / record["SOURCE_BUCKET"] / "BACKGROUND"
    assert sample.paths[0].stat().st_ino == (original / sample.paths[0].name).stat().st_ino
    built = build_clear(data_name="clear10", dataset_root=str(out), train_transform=ToTensor())
    assert [len(e.dataset) for e in built.benchmark.train_stream] == [18, 18]

    newest_first = create_dataset(
        root,
        tmp_path / "reverse",
        process=lambda xs: sorted(xs, key=lambda x: x["DATE_TAKEN"])[::-1],
    )
    assert min(_dates(newest_first / "train", "1", "bus")) >= max(
        _dates(newest_first / "train", "3", "bus")
    )


def test_rebucketing_errors(new_tree, tmp_path):
    old = make_clear_tree(tmp_path / "old", layout="old", num_buckets=1)
    with pytest.raises(ConfigError, match="newer layout"):
        create_dataset(old, tmp_path / "x")
    with pytest.raises(ConfigError, match="unknown record"):
        create_dataset(new_tree, tmp_path / "y", process=lambda xs: [dict(xs[0], IMG_PATH="z.jpg")])
    with pytest.raises(ConfigError, match="repeated record"):
        create_dataset(new_tree, tmp_path / "z", process=lambda xs: xs + xs[:1])
    with pytest.raises(ConfigError, match="bucket 7 would be empty"):
        create_dataset(new_tree, tmp_path / "w", num_buckets=7)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        create_dataset(new_tree, tmp_path / "full")


# ----------------------------------------------------------------------------- features
class _MeanColour(torch.nn.Module):
    """A tiny 'backbone': per-channel means, then a fixed linear map (deterministic features)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 4)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean((2, 3)))


def test_pretrained_features_from_a_module_and_from_a_config(new_tree, tmp_path):
    import shutil

    root = Path(shutil.copytree(new_tree, tmp_path / "CLEAR"))
    module = _MeanColour()
    written = get_pretrained_features(root, "mean_colour", module, batch_size=5)
    assert len(written) == 6  # train and test, 3 buckets each
    assert written[0] == root / "train" / "features" / "mean_colour" / "1" / "all.pth"
    built = build_clear(data_name="clear10", dataset_root=str(root), feature_type="mean_colour")
    x, y, _ = built.benchmark.test_stream[2].dataset[1]
    path = plan_clear("clear10", root).test[2].paths[1]
    with Image.open(path) as img:
        expected = module.extract_features(ToTensor()(img.convert("RGB"))[None])[0]
    assert torch.allclose(x, expected, atol=1e-5)

    # From a config dict + a checkpoint in the runner's format ({"model": state_dict}).
    from avalanche_ext.builders import build_model

    model_cfg = dict(
        type="MMClassifier",
        backbone=dict(type="CifarResNet", depth=8),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(type="LinearClsHead", num_classes=3, in_channels=64),
    )
    torch.manual_seed(1)
    trained = build_model(model_cfg).eval()
    torch.save({"model": trained.state_dict()}, tmp_path / "ckpt.pth")
    cfg = dict(model=model_cfg, test_pipeline=[dict(type="ToTensor")])
    get_pretrained_features(root, "r8", cfg, checkpoint=tmp_path / "ckpt.pth")
    built = build_clear(data_name="clear10", dataset_root=str(root), feature_type="r8")
    x, _, _ = built.benchmark.train_stream[0].dataset[0]
    with Image.open(plan_clear("clear10", root).train[0].paths[0]) as img:
        expected = trained.extract_features(ToTensor()(img.convert("RGB"))[None])[0]
    assert x.shape == (64,) and torch.allclose(x, expected, atol=1e-4)


def test_clear_dataset_cli(new_tree, tmp_path, capsys):
    import shutil

    root = Path(shutil.copytree(new_tree, tmp_path / "CLEAR"))
    assert clear_dataset.main(["fewshot", str(root), "--shot", "1", "--seed", "4"]) == 0
    assert (root / "train" / "fewshot" / "shot_1" / "split_4" / "3.json").is_file()
    assert (
        clear_dataset.main(["rebucket", str(root), str(tmp_path / "rb"), "--num-buckets", "2"]) == 0
    )
    assert read_clear_tree(tmp_path / "rb").buckets == ["1", "2"]
    assert clear_dataset.main(["fewshot", str(tmp_path / "nowhere"), "--shot", "1"]) == 2
    assert "error: " in capsys.readouterr().err


# ----------------------------------------------------------------------------- CIFAR-derived tree
def test_cifar_clear_tree_classes_are_superclasses_drifting_over_fine_classes(tmp_path):
    from avalanche_ext.datasets.cifar import load_cifar100

    out = make_cifar_clear(
        tmp_path / "cc", num_buckets=3, train_per_class=2, test_per_class=1, purity=1.0
    )
    data = load_cifar100()
    tree = read_clear_tree(out)
    assert tree.class_names == data.coarse_names and tree.buckets == ["1", "2", "3"]
    by_super = fine_classes_by_superclass(data.train_labels.numpy(), data.train_coarse.numpy())
    seen = set()
    for split, images in (("train", data.train_images), ("test", data.test_images)):
        for b, bucket in enumerate(tree.buckets):
            samples = tree.samples[split][bucket]
            assert len(samples) == 20 * (2 if split == "train" else 1)
            for path, label, record in zip(samples.paths, samples.targets, samples.records):
                assert record["CIFAR_SPLIT"] == split
                assert record["FINE_LABEL"] == by_super[label][b]  # purity 1: fine class b only
                with Image.open(path) as img:
                    pixels = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
                assert torch.equal(pixels, images[record["CIFAR_INDEX"]])
                assert (split, record["CIFAR_INDEX"]) not in seen
                seen.add((split, record["CIFAR_INDEX"]))
    assert (
        make_cifar_clear(
            tmp_path / "cc", num_buckets=3, train_per_class=2, test_per_class=1, purity=1.0
        )
        == out
    )
    with pytest.raises(ConfigError, match="other arguments"):
        make_cifar_clear(tmp_path / "cc", num_buckets=2)
    with pytest.raises(ConfigError, match="num_buckets"):
        make_cifar_clear(tmp_path / "c6", num_buckets=6)

    mixed = make_cifar_clear(
        tmp_path / "mixed", num_buckets=2, train_per_class=10, test_per_class=5, purity=0.8
    )
    records = read_clear_tree(mixed).samples["train"]["2"]
    own = sum(r["FINE_LABEL"] == by_super[y][1] for y, r in zip(records.targets, records.records))
    assert own == 20 * 8  # round(0.8 * 10) per superclass from fine class 1
