"""CLEAR scenario on generated trees of both layouts: protocols, splits, features, few-shot, errors.

Every tree is written by tools/make_clear_tree.py into pytest's tmp folders; nothing is downloaded.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image

from avalanche_ext.builders import build_scenario
from avalanche_ext.datasets.clear_layout import CLEAR_DATA_NAMES, iid_split, read_clear_tree
from avalanche_ext.errors import ConfigError
from avalanche_ext.transforms import ToTensor
from scenarios.clear import build_clear, plan_clear
from tools.clear_dataset import get_fewshot_indices
from tools.make_clear_tree import make_clear_tree

NUM_CLASSES, NUM_BUCKETS, PER_CLASS, TEST_PER_CLASS, DIM = 3, 3, 4, 2, 8
OLD_PER_BUCKET = NUM_CLASSES * (PER_CLASS + TEST_PER_CLASS)  # 18 images in every all.txt
DATA_NAME = {"new": "clear10", "old": "clear10_neurips2021"}


def _tree(tmp_path_factory, layout: str) -> Path:
    root = tmp_path_factory.mktemp(f"clear_{layout}") / "CLEAR"
    return make_clear_tree(
        root,
        layout=layout,
        num_classes=NUM_CLASSES,
        num_buckets=NUM_BUCKETS,
        per_class=PER_CLASS,
        test_per_class=TEST_PER_CLASS,
        features_dim=DIM,
    )


@pytest.fixture(scope="module")
def new_tree(tmp_path_factory) -> Path:
    return _tree(tmp_path_factory, "new")


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory) -> Path:
    return _tree(tmp_path_factory, "old")


@pytest.fixture
def new_copy(new_tree, tmp_path) -> Path:
    return Path(shutil.copytree(new_tree, tmp_path / "new" / "CLEAR"))


@pytest.fixture
def old_copy(old_tree, tmp_path) -> Path:
    return Path(shutil.copytree(old_tree, tmp_path / "old" / "CLEAR"))


def _clear(root: Path, data_name: str = "clear10", **kwargs):
    return build_clear(
        data_name=data_name,
        dataset_root=str(root),
        train_transform=ToTensor(),
        eval_transform=ToTensor(),
        **kwargs,
    )


def _bucket_images(split_dir: Path, bucket: str) -> set[Path]:
    """Image paths of one bucket, read straight from the metadata files (independent of the code)."""
    index = json.loads((split_dir / "labeled_metadata.json").read_text())
    out = set()
    for meta_rel in index[bucket].values():
        for entry in json.loads((split_dir / meta_rel).read_text()).values():
            out.add(split_dir / entry["IMG_PATH"])
    return out


def _all_txt(root: Path, bucket: str) -> list[tuple[Path, int]]:
    lines = (root / "training_folder" / "filelists" / bucket / "all.txt").read_text().splitlines()
    return [(root / line.split()[0], int(line.split()[1])) for line in lines]


def _official_split(n: int, seed: int):
    random.seed(seed)
    indices = list(range(n))
    random.shuffle(indices)
    return indices[: n - int(0.3 * n)], indices[n - int(0.3 * n) :]


def test_data_names_map_to_layouts_and_registry_finds_clear(new_tree):
    assert CLEAR_DATA_NAMES == {
        "clear10": "new",
        "clear100": "new",
        "clear10_neurips2021": "old",
        "clear100_cvpr2022": "old",
    }
    built = build_scenario(
        dict(
            dataset_type="CLEAR",
            data_name="clear10",
            dataset_root=str(new_tree),
            train_transform=[dict(type="ToTensor")],
            eval_transform=[dict(type="ToTensor")],
        )
    )
    assert built.num_classes == NUM_CLASSES
    assert built.class_names == ["BACKGROUND", "baseball", "bus"]
    x, y, t = built.benchmark.train_stream[0].dataset[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and t == 0


def test_new_layout_streaming_each_experience_holds_only_its_bucket(new_tree):
    """Avalanche 0.6 never resets its per-bucket list here: experience t got buckets 1..t."""
    built = _clear(new_tree, evaluation_protocol="streaming")
    plan = plan_clear("clear10", new_tree, "streaming")
    train_stream, test_stream = built.benchmark.train_stream, built.benchmark.test_stream
    assert len(train_stream) == len(test_stream) == NUM_BUCKETS
    all_train = set()
    for t, bucket in enumerate(["1", "2", "3"]):
        expected_train = _bucket_images(new_tree / "train", bucket)
        expected_test = _bucket_images(new_tree / "test", bucket)
        assert set(plan.train[t].paths) == expected_train
        assert set(plan.test[t].paths) == expected_test
        assert len(train_stream[t].dataset) == NUM_CLASSES * PER_CLASS
        assert len(test_stream[t].dataset) == NUM_CLASSES * TEST_PER_CLASS
        all_train |= expected_train
        # The benchmark's samples are the plan's images, in order.
        for i in (0, len(plan.train[t]) - 1):
            x, y, _ = train_stream[t].dataset[i]
            with Image.open(plan.train[t].paths[i]) as img:
                assert torch.equal(x, ToTensor()(img.convert("RGB")))
            assert y == plan.train[t].targets[i]
    test_paths = {p for s in plan.test for p in s.paths}
    assert not all_train & test_paths
    assert all(p.is_relative_to(new_tree / "test") for p in test_paths)
    info = built.info
    assert info["layout"] == "new" and info["buckets"] == ["1", "2", "3"]
    assert info["evaluation_protocol"] == "streaming" and info["seed"] is None
    assert info["train_class_counts"] == [NUM_BUCKETS * PER_CLASS] * NUM_CLASSES
    json.dumps(info)


def test_old_layout_streaming_trains_on_split_train_part_tests_on_held_out(old_tree):
    plan = plan_clear("clear10_neurips2021", old_tree, "streaming")
    n_test = int(0.3 * OLD_PER_BUCKET)
    for t, bucket in enumerate(["1", "2", "3"]):
        listed = _all_txt(old_tree, bucket)
        train, test = set(plan.train[t].paths), set(plan.test[t].paths)
        assert len(train) == OLD_PER_BUCKET - n_test and len(test) == n_test
        assert not train & test and train | test == {p for p, _ in listed}
        split = old_tree / "training_folder" / "testset_ratio_0.3" / "split_0" / bucket
        assert plan.train[t].indices == json.loads((split / "train_indices.json").read_text())
    assert plan.seed == 0 and plan.iid_split_source == "files"


@pytest.mark.parametrize("layout", ["new", "old"])
def test_iid_split_sizes_seeds_and_official_recipe(layout, request):
    root = request.getfixturevalue(f"{layout}_copy")
    data_name = DATA_NAME[layout]
    if layout == "old":  # the official files must equal what we compute without them
        files = {s: plan_clear(data_name, root, "iid", seed=s) for s in (0, 3)}
        shutil.rmtree(root / "training_folder" / "testset_ratio_0.3")
    plans = {s: plan_clear(data_name, root, "iid", seed=s) for s in (0, 3)}
    pool = PER_CLASS * NUM_CLASSES if layout == "new" else OLD_PER_BUCKET
    for seed, plan in plans.items():
        assert plan.iid_split_source == "computed"
        for t in range(NUM_BUCKETS):
            assert len(plan.train[t]) == pool - int(0.3 * pool)
            assert len(plan.test[t]) == int(0.3 * pool)
            assert (plan.train[t].indices, plan.test[t].indices) == _official_split(pool, seed)
            assert plan.train[t].split == plan.test[t].split  # iid: both from the same folder
            assert not set(plan.train[t].paths) & set(plan.test[t].paths)
            if layout == "old":
                assert files[seed].iid_split_source == "files"
                assert files[seed].train[t].indices == plan.train[t].indices
                assert files[seed].test[t].indices == plan.test[t].indices
    again = plan_clear(data_name, root, "iid", seed=3)
    assert [s.indices for s in again.train] == [s.indices for s in plans[3].train]
    assert [s.indices for s in plans[0].train] != [s.indices for s in plans[3].train]
    assert iid_split(pool, 3) == _official_split(pool, 3)


def test_iid_uses_the_requested_seeds_split_files(old_tree):
    built = _clear(old_tree, "clear10_neurips2021", evaluation_protocol="iid", seed=2)
    split = old_tree / "training_folder" / "testset_ratio_0.3" / "split_2" / "1"
    test_lines = (split / "test.txt").read_text().split()
    assert len(built.benchmark.test_stream[0].dataset) == len(test_lines) // 2
    plan = plan_clear("clear10_neurips2021", old_tree, "iid", seed=2)
    assert plan.test[0].indices == json.loads((split / "test_indices.json").read_text())
    assert built.info["seed"] == 2 and built.info["iid_split_source"] == "files"


def test_split_text_files_alone_are_used_and_checked(old_copy):
    split = old_copy / "training_folder" / "testset_ratio_0.3" / "split_1"
    expected = plan_clear("clear10_neurips2021", old_copy, "iid", seed=1)
    for path in split.glob("*/*_indices.json"):
        path.unlink()
    plan = plan_clear("clear10_neurips2021", old_copy, "iid", seed=1)
    assert plan.iid_split_source == "files"
    assert [s.indices for s in plan.test] == [s.indices for s in expected.test]
    (split / "1" / "test.txt").write_text("labeled_images/9/bus/nope.jpg 2\n")
    with pytest.raises(ConfigError, match=r"split_1/1/test.txt:1: image .*nope.jpg is not listed"):
        plan_clear("clear10_neurips2021", old_copy, "iid", seed=1)


def test_numbered_buckets_need_no_network(tmp_path, monkeypatch):
    root = make_clear_tree(tmp_path / "c", num_buckets=11, per_class=1, test_per_class=1)

    def no_network(*args, **kwargs):
        raise AssertionError("the CLEAR scenario tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    built = _clear(root)
    assert built.info["buckets"] == [str(b) for b in range(1, 12)]  # "10" after "9"
    assert [len(e.dataset) for e in built.benchmark.train_stream] == [NUM_CLASSES] * 11
    dates = [
        json.loads((root / "train" / f"labeled_metadata/{b}/bus.json").read_text()).popitem()[1]
        for b in built.info["buckets"]
    ]
    assert [d["DATE_TAKEN"] for d in dates] == sorted(d["DATE_TAKEN"] for d in dates)


@pytest.mark.parametrize("layout", ["new", "old"])
def test_features_yield_vectors_and_a_linear_probe_learns(layout, request):
    from avalanche_ext.models import MMClassifier

    root, data_name = request.getfixturevalue(f"{layout}_tree"), DATA_NAME[layout]
    built = build_clear(data_name=data_name, dataset_root=str(root), feature_type="moco_b0")
    x, y, t = built.benchmark.train_stream[0].dataset[0]
    assert x.shape == (DIM,) and x.dtype == torch.float32 and t == 0
    assert built.info["feature_type"] == "moco_b0" and built.info["feature_dim"] == DIM
    torch.manual_seed(0)
    model = MMClassifier(
        backbone=None, head=dict(type="LinearClsHead", num_classes=NUM_CLASSES, in_channels=DIM)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

    def batch(exp):
        items = [exp.dataset[i] for i in range(len(exp.dataset))]
        return torch.stack([i[0] for i in items]), torch.as_tensor([i[1] for i in items])

    xs, ys = batch(built.benchmark.train_stream[0])
    for _ in range(50):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xs), ys).backward()
        optimizer.step()
    model.eval()
    xt, yt = batch(built.benchmark.test_stream[0])
    assert (model(xt).argmax(1) == yt).float().mean() > 0.9


def test_features_that_do_not_match_the_bucket_are_rejected(old_copy):
    path = old_copy / "training_folder" / "features" / "moco_b0" / "2" / "all.pth"
    features, labels = torch.load(path)
    torch.save((features[:-1], labels[:-1]), path)
    with pytest.raises(ConfigError, match=r"moco_b0/2/all.pth: 17 feature rows"):
        build_clear(
            data_name="clear10_neurips2021", dataset_root=str(old_copy), feature_type="moco_b0"
        )
    with pytest.raises(ConfigError, match=r"imagenet/1/all.pth: missing .*get_pretrained_features"):
        build_clear(
            data_name="clear10_neurips2021", dataset_root=str(old_copy), feature_type="imagenet"
        )


@pytest.mark.parametrize("layout", ["new", "old"])
def test_few_shot_takes_k_per_class_per_bucket_seeded(layout, request):
    root, data_name = request.getfixturevalue(f"{layout}_copy"), DATA_NAME[layout]
    with pytest.raises(ConfigError, match=r"fewshot/shot_2/split_0/1.json: missing .*get_fewshot"):
        plan_clear(data_name, root, "iid", seed=0, shot=2)
    written = get_fewshot_indices(root, shot=2, seed=0)
    assert sorted(written) == ["1", "2", "3"]
    folder = "training_folder" if layout == "old" else "train"
    assert written["1"] == root / folder / "fewshot" / "shot_2" / "split_0" / "1.json"
    built = _clear(root, data_name, evaluation_protocol="iid", seed=0, shot=2)
    plan = plan_clear(data_name, root, "iid", seed=0, shot=2)
    full = plan_clear(data_name, root, "iid", seed=0)
    for t in range(NUM_BUCKETS):
        assert sorted(plan.train[t].targets) == sorted(list(range(NUM_CLASSES)) * 2)
        assert set(plan.train[t].indices) <= set(full.train[t].indices)
        assert plan.test[t].indices == full.test[t].indices
        assert len(built.benchmark.train_stream[t].dataset) == 2 * NUM_CLASSES
    assert built.info["shot"] == 2 and built.info["train_class_counts"] == [6, 6, 6]
    get_fewshot_indices(root, shot=2, seed=0)
    assert (
        plan_clear(data_name, root, "iid", seed=0, shot=2).train[0].indices == plan.train[0].indices
    )
    get_fewshot_indices(root, shot=2, seed=1)
    other = plan_clear(data_name, root, "iid", seed=1, shot=2)
    assert [s.indices for s in other.train] != [s.indices for s in plan.train]
    with pytest.raises(ConfigError, match=r"fewer than shot=9"):
        get_fewshot_indices(root, shot=9, seed=0)


def test_task_labels_give_one_task_per_bucket(new_tree):
    built = _clear(new_tree, task_labels=True)
    assert [set(e.dataset.targets_task_labels) for e in built.benchmark.train_stream] == [
        {0},
        {1},
        {2},
    ]
    assert built.benchmark.test_stream[2].dataset[0][2] == 2


# ----------------------------------------------------------------------------- malformed trees
def _break_old(root: Path, case: str) -> str:
    folder = root / "training_folder"
    filelist = folder / "filelists" / "2" / "all.txt"
    lines = filelist.read_text().splitlines()
    if case == "missing class names":
        (root / "class_names.txt").unlink()
        return r"CLEAR/class_names.txt: missing"
    if case == "missing image":
        lines[4] = "labeled_images/2/bus/404.jpg 2"
        filelist.write_text("\n".join(lines))
        return r"filelists/2/all.txt:5: image .*404.jpg does not exist"
    if case == "label out of range":
        lines[6] = lines[6].rsplit(" ", 1)[0] + " 3"
        filelist.write_text("\n".join(lines))
        return r"filelists/2/all.txt:7: class index 3 out of range 0..2"
    if case == "bad line":
        lines[0] = lines[0].replace(" ", "\t").replace("\t0", "\tzero")
        filelist.write_text("\n".join(lines))
        return r"filelists/2/all.txt:1: expected '<image path> <class index>'"
    if case == "empty bucket":
        filelist.write_text("")
        return r"filelists/2/all.txt: bucket '2' lists no images"
    if case == "bad json":
        (folder / "bucket_indices.json").write_text("[1, 2,\n 3")
        return r"bucket_indices.json:2: invalid JSON"
    if case == "empty class name":
        (root / "class_names.txt").write_text("BACKGROUND\n\nbus")
        return r"class_names.txt:2: empty class name"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing class names",
        "missing image",
        "label out of range",
        "bad line",
        "empty bucket",
        "bad json",
        "empty class name",
    ],
)
def test_malformed_old_tree_names_file_and_line(case, old_copy):
    pattern = _break_old(old_copy, case)
    with pytest.raises(ConfigError, match=pattern):
        _clear(old_copy, "clear10_neurips2021")


def _break_new(root: Path, case: str) -> str:
    train = root / "train"
    meta_file = train / "labeled_metadata" / "2" / "bus.json"
    if case == "missing class names":
        (train / "class_names.txt").unlink()
        return r"train/class_names.txt: missing"
    if case == "missing image":
        meta = json.loads(meta_file.read_text())
        key = next(iter(meta))
        meta[key]["IMG_PATH"] = "labeled_images/2/bus/404.jpg"
        meta_file.write_text(json.dumps(meta))
        return rf"labeled_metadata/2/bus.json: entry '{key}': image .*404.jpg does not exist"
    if case == "missing metadata file":
        meta_file.unlink()
        return r"labeled_metadata/2/bus.json: missing"
    if case == "empty bucket":
        for path in (train / "labeled_metadata" / "2").glob("*.json"):
            path.write_text("{}")
        return r"train/labeled_metadata.json: bucket '2' has no images"
    if case == "unknown class":
        index = json.loads((train / "labeled_metadata.json").read_text())
        index["1"]["zebra"] = "labeled_metadata/1/zebra.json"
        (train / "labeled_metadata.json").write_text(json.dumps(index))
        return r"labeled_metadata.json: bucket '1': class 'zebra' is not in .*class_names.txt"
    if case == "test classes differ":
        (root / "test" / "class_names.txt").write_text("BACKGROUND\nbus\nbaseball")
        return r"test/class_names.txt: differs from"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing class names",
        "missing image",
        "missing metadata file",
        "empty bucket",
        "unknown class",
        "test classes differ",
    ],
)
def test_malformed_new_tree_names_file_and_entry(case, new_copy):
    pattern = _break_new(new_copy, case)
    with pytest.raises(ConfigError, match=pattern):
        _clear(new_copy)


def test_unreadable_image_fails_at_load_time_with_its_path(new_copy):
    built = _clear(new_copy)
    plan = plan_clear("clear10", new_copy)
    victim = plan.train[1].paths[3]
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(ConfigError, match=rf"{victim.name}: cannot read image"):
        built.benchmark.train_stream[1].dataset[3]


def test_bad_keys_and_wrong_layout_are_config_errors(new_tree, old_tree, tmp_path):
    with pytest.raises(ConfigError, match=r"scenario.data_name: 'clear1000' is not one of"):
        _clear(new_tree, "clear1000")
    with pytest.raises(ConfigError, match=r"scenario.evaluation_protocol: 'online'"):
        _clear(new_tree, evaluation_protocol="online")
    with pytest.raises(ConfigError, match=r"scenario.seed"):
        _clear(new_tree, evaluation_protocol="iid", seed=-1)
    with pytest.raises(ConfigError, match=r"scenario.dataset_root: required"):
        build_clear(data_name="clear10")
    with pytest.raises(ConfigError, match=r"does not exist \(nothing is ever downloaded\)"):
        _clear(tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"use data_name='clear100_cvpr2022' or 'clear10_neurips"):
        _clear(old_tree, "clear10")
    with pytest.raises(ConfigError, match=r"use data_name='clear10' or 'clear100'"):
        _clear(new_tree, "clear100_cvpr2022")
    assert read_clear_tree(new_tree).layout == "new"


# ----------------------------------------------------------------------------- end to end
@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_runner_end_to_end_on_a_tiny_tree(new_tree, tmp_path):
    from mmengine.config import Config

    from avalanche_ext.runner import run

    cfg = Config(
        dict(
            scenario=dict(
                type="CLEAR",
                data_name="clear10",
                dataset_root=str(new_tree),
                evaluation_protocol="streaming",
                train_transform=[dict(type="ToTensor")],
                eval_transform=[dict(type="ToTensor")],
            ),
            model=dict(
                type="MMClassifier",
                backbone=dict(type="CifarResNet", depth=8),
                neck=dict(type="GlobalAveragePooling"),
                head=dict(type="LinearClsHead", num_classes=NUM_CLASSES, in_channels=64),
            ),
            cl_strategy=dict(
                type="Naive",
                train_mb_size=6,
                eval_mb_size=18,
                train_epochs=1,
                optimizer=dict(type="SGD", lr=0.05, momentum=0.9),
                scheduler=None,
                loss=dict(type="CrossEntropyLoss", loss_weight=1.0),
                plugins=[],
            ),
            metrics=[dict(type="accuracy_metrics", experience=True, stream=True)],
            loggers=[],
            seed=0,
        )
    )
    results = run(cfg, device="cpu", work_dir=str(tmp_path / "work"))
    matrix = results["accuracy_matrix"]
    assert len(matrix) == NUM_BUCKETS and all(len(row) == NUM_BUCKETS for row in matrix)
    assert results["scenario"]["buckets"] == ["1", "2", "3"]
    assert [e["size"] for e in results["scenario"]["train_stream"]] == [12, 12, 12]
    assert [e["size"] for e in results["scenario"]["test_stream"]] == [6, 6, 6]
    assert set(results["streaming"]) >= {"in_domain", "next_domain", "backward_transfer"}


def test_undecodable_image_is_named_at_build_time_or_skipped_and_counted(new_copy, capsys):
    plan = plan_clear("clear10", new_copy)
    victim = plan.train[1].paths[3]
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(ConfigError) as err:
        _clear(new_copy)
    assert str(err.value).startswith(f"{victim}: cannot decode image")
    assert "scenario.skip_bad_images" in str(err.value)
    built = _clear(new_copy, skip_bad_images=True)
    assert built.info["skipped_images"] == {"count": 1, "paths": [str(victim)]}
    assert len(built.benchmark.train_stream[1].dataset) == len(plan.train[1]) - 1
    assert "left out 1 undecodable image" in capsys.readouterr().err
    assert _clear(new_copy, check_images="none").info["skipped_images"]["count"] == 0
    with pytest.raises(ConfigError, match="scenario.check_images"):
        _clear(new_copy, check_images="full")
