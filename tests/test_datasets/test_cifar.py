"""CIFAR-100 from the shipped pickles: found, md5-checked, never downloaded; clear errors otherwise."""

from __future__ import annotations

import pytest
import torch

from avalanche_ext.datasets import cifar
from avalanche_ext.errors import ConfigError


def test_shipped_data_loads_as_uint8_tensors():
    data = cifar.load_cifar100()
    assert data.train_images.shape == (50000, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (10000, 3, 32, 32)
    assert torch.bincount(data.train_labels).tolist() == [500] * 100
    assert len(data.class_names) == 100 and len(data.coarse_names) == 20
    assert data.class_names[0] == "apple"


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("AVALANCHE_EXT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AVALANCHE_EXT_DATA", raising=False)
    monkeypatch.delenv("CIFAR100_ROOT", raising=False)
    with pytest.raises(ConfigError) as info:
        cifar.find_cifar100(tmp_path / "nowhere")
    msg = str(info.value)
    assert (
        "nowhere" in msg
        and "cifar-100-python.tar.xz" in msg
        and "nothing is ever downloaded" in msg
    )


def test_corrupt_file_is_named(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match=r"train: md5 mismatch"):
        cifar.find_cifar100(tmp_path)


def test_truncated_archive_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("AVALANCHE_EXT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cifar-100-python.tar.xz").write_bytes(b"\xfd7zXZ\x00 truncated")
    with pytest.raises(ConfigError, match="cifar-100-python.tar.xz: cannot unpack"):
        cifar.find_cifar100(tmp_path)
