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


def _fake_archive(tmp_path, monkeypatch, contents: dict[str, bytes]):
    """A tiny ``cifar-100-python.tar.gz`` whose members are ``contents``; the expected md5s are
    those of ``good`` bytes (so a member with other bytes fails the check)."""
    import hashlib
    import io
    import tarfile

    good = {name: f"official {name}".encode() for name in ("train", "test", "meta")}
    monkeypatch.setattr(
        cifar, "CIFAR100_MD5", {n: hashlib.md5(b).hexdigest() for n, b in good.items()}
    )
    monkeypatch.setattr(cifar, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("AVALANCHE_EXT_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(data / "cifar-100-python.tar.gz", "w:gz") as tar:
        for name, blob in {**good, **contents}.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return data, good


def test_damaged_cache_is_unpacked_again_and_says_so(tmp_path, monkeypatch, capsys):
    data, good = _fake_archive(tmp_path, monkeypatch, {})
    folder = cifar.find_cifar100(data)
    assert folder == tmp_path / "cache" / "data" / "cifar-100-python"
    (folder / "test").write_bytes(b"bit rot")
    again = cifar.find_cifar100(data)
    assert again == folder and (folder / "test").read_bytes() == good["test"]
    assert "md5 mismatch" in capsys.readouterr().err
    assert not list((tmp_path / "cache" / "data").glob(".unpack-*"))


def test_archive_failing_md5_is_one_error_naming_it(tmp_path, monkeypatch):
    data, _ = _fake_archive(tmp_path, monkeypatch, {"train": b"foreign"})
    with pytest.raises(ConfigError) as err:
        cifar.find_cifar100(data)
    assert str(err.value).startswith(f"{data / 'cifar-100-python.tar.gz'}: its 'train' fails")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache" / "data" / "cifar-100-python").exists()


def test_an_installed_package_looks_in_user_folders_never_beside_itself(tmp_path, monkeypatch):
    """Installed (no source checkout), data comes from $AVALANCHE_EXT_DATA or the user's data
    folder, and the cache is the user's cache folder: nothing under site-packages."""
    monkeypatch.setattr(cifar, "REPO_ROOT", None)
    monkeypatch.setattr(cifar, "cache_root", lambda: tmp_path / "cache")
    monkeypatch.setenv("AVALANCHE_EXT_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.delenv("CIFAR100_ROOT", raising=False)
    places = cifar._candidates(None)
    assert places == [
        tmp_path / "mine",
        tmp_path / "share" / "avalanche-ext",
        tmp_path / "cache" / "data",
    ]


def test_the_cache_follows_the_environment_then_the_checkout_then_the_user(tmp_path, monkeypatch):
    from avalanche_ext import paths  # noqa: PLC0415

    monkeypatch.setenv("AVALANCHE_EXT_CACHE", str(tmp_path / "c"))
    assert paths.cache_root() == tmp_path / "c"
    monkeypatch.delenv("AVALANCHE_EXT_CACHE")
    assert paths.cache_root() == paths.source_checkout() / ".cache"  # this is a checkout
    monkeypatch.setattr(paths, "source_checkout", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == tmp_path / "xdg" / "avalanche-ext"
