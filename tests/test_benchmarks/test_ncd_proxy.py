"""The proxy task that chooses discovery settings reads only the known classes' training images
(no real novel class, no test image), and the flagship with its overrides is a valid config whose
scenario has 64 known and 16 hidden proxy-novel classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avalanche_ext.builders import build_scenario
from avalanche_ext.config import load_config
from avalanche_ext.datasets.cifar import Cifar100

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxy(load_benchmark):
    return load_benchmark("ncd_proxy")


def _fake_cifar(per_class: int) -> Cifar100:
    """Train image i of class c is filled with c (+ 100 for test images), so a written PNG tells
    which class and which split it came from."""
    labels = torch.arange(100).repeat_interleave(per_class)
    images = labels.view(-1, 1, 1, 1).expand(-1, 3, 32, 32).to(torch.uint8).clone()
    images[:, 1] = torch.arange(len(labels)).view(-1, 1, 1) % 256  # images differ within a class
    test_labels = torch.arange(100).repeat_interleave(2)
    test = (test_labels + 100).view(-1, 1, 1, 1).expand(-1, 3, 32, 32).to(torch.uint8).clone()
    zeros = torch.zeros_like(labels)
    return Cifar100(
        images, labels, zeros, test, test_labels, torch.zeros_like(test_labels),
        [f"n{i}" for i in range(100)], [f"s{i}" for i in range(20)],
    )  # fmt: skip


def test_proxy_folder_holds_known_training_images_only(proxy, tmp_path, monkeypatch):
    monkeypatch.setattr(proxy, "load_cifar100", lambda: _fake_cifar(12))
    monkeypatch.setattr(proxy, "PER_CLASS_VAL", 3)
    folder = proxy.write_proxy_folder(tmp_path / "proxy")
    for split, count in (("train", 9), ("val", 3)):
        classes = sorted(p.name for p in (folder / split).iterdir())
        assert classes == [f"c{c:02d}" for c in range(80)]  # the 20 real novel classes: absent
        for c in (0, 41, 79):
            files = sorted((folder / split / f"c{c:02d}").iterdir())
            assert len(files) == count
            red = {int(np.asarray(Image.open(f))[0, 0, 0]) for f in files}
            assert red == {c}  # its own class, from the training split (test images read >= 100)
    train = {p.name for p in (folder / "train" / "c05").iterdir()}
    val = {p.name for p in (folder / "val" / "c05").iterdir()}
    assert not train & val


def test_proxy_overrides_make_a_64_known_16_novel_task(proxy, tmp_path):
    for split, per in (("train", 40), ("val", 2)):
        for c in range(80):
            (tmp_path / split / f"c{c:02d}").mkdir(parents=True)
            for i in range(per):
                image = np.full((8, 8, 3), c, dtype=np.uint8)
                Image.fromarray(image).save(tmp_path / split / f"c{c:02d}" / f"{i}.png")
    cfg = load_config(
        ROOT / "configs/ncd/ncd_resnet14_cpu-24e_cifar100-80+20lt.py",
        proxy.proxy_overrides(tmp_path),
    )
    plugins = {p["type"]: p for p in cfg.cl_strategy.plugins}
    assert plugins["ConfidenceGatedPoolPlugin"]["score_kwargs"]["k"] == 16
    assert plugins["PseudoLabelClusteringPlugin"]["num_clusters"] == 16
    assert cfg.model.head.num_classes == 64
    scenario = build_scenario(cfg.scenario)
    info = scenario.info
    assert info["num_known"] == 64 and info["novel_classes"] == list(range(64, 80))
    hidden = scenario.hidden_labels[1]
    assert (hidden[hidden >= 64] < 80).all() and (hidden >= 64).sum() == 16 * 40


def test_a_config_without_the_gate_is_refused_in_one_line(proxy, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        proxy.proxy_overrides(tmp_path, str(ROOT / "configs/demo.py"))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: " + str(ROOT / "configs/demo.py") + (
        ": cl_strategy.plugins has no ConfidenceGatedPoolPlugin"
    )
