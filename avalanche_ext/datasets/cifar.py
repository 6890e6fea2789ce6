"""CIFAR-100 from the shipped official pickles: found locally, unpacked once, md5-checked, never downloaded.

Images are kept as one uint8 tensor ``[N, 3, 32, 32]`` per split (150 MB for train): no per-sample decoding.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avalanche_ext.errors import ConfigError
from avalanche_ext.paths import cache_root, source_checkout, user_data_dir

__all__ = ["CIFAR100_MD5", "Cifar100", "cache_root", "find_cifar100", "load_cifar100"]

CIFAR100_MD5 = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}
ARCHIVE_NAMES = ("cifar-100-python.tar.xz", "cifar-100-python.tar.gz")
FOLDER = "cifar-100-python"
REPO_ROOT = source_checkout()  # None when installed: site-packages is never a data folder
_MEMORY: dict[str, Cifar100] = {}


@dataclass
class Cifar100:
    """Both splits of CIFAR-100 in memory.

    Args:
        train_images: uint8 ``[50000, 3, 32, 32]``.
        train_labels: int64 fine labels ``[50000]``.
        train_coarse: int64 superclass labels ``[50000]``.
        test_images: uint8 ``[10000, 3, 32, 32]``.
        test_labels: int64 ``[10000]``.
        test_coarse: int64 ``[10000]``.
        class_names: the 100 fine class names.
        coarse_names: the 20 superclass names.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    train_coarse: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    test_coarse: torch.Tensor
    class_names: list[str]
    coarse_names: list[str]


def _candidates(root: str | os.PathLike | None) -> list[Path]:
    places = []
    if root:
        places.append(Path(root))
    for var in ("AVALANCHE_EXT_DATA", "CIFAR100_ROOT"):
        if os.environ.get(var):
            places.append(Path(os.environ[var]))
    if REPO_ROOT is not None:
        places += [REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data"]
    places += [user_data_dir(), cache_root() / "data"]
    return places


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_folder(folder: Path) -> None:
    for name, md5 in CIFAR100_MD5.items():
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"{path}: missing (expected the official CIFAR-100 '{name}' pickle)")
        if _md5(path) != md5:
            raise ConfigError(
                f"{path}: md5 mismatch (expected {md5}); the file is corrupt or foreign"
            )


def _mismatch(folder: Path) -> ConfigError | None:
    try:
        _check_folder(folder)
    except ConfigError as err:
        return err
    return None


def _unpack(archive: Path) -> Path:
    """Unpacks ``archive`` into ``<cache>/data`` (replacing a damaged copy) and md5-checks it.

    Raises:
        ConfigError: the archive cannot be read, or a member fails its md5 (naming the archive).
    """
    target = cache_root() / "data"
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".unpack-{os.getpid()}"
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"{archive}: cannot unpack ({err})") from err
    bad = _mismatch(tmp / FOLDER)
    if bad is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        member = Path(str(bad).split(":", 1)[0]).name
        raise ConfigError(
            f"{archive}: its '{member}' fails the CIFAR-100 md5 check; the archive is corrupt or "
            "foreign (replace it with the official one)"
        )
    final = target / FOLDER
    if final.exists() and _mismatch(final) is not None:
        shutil.rmtree(final, ignore_errors=True)
    if not final.exists():
        os.replace(tmp / FOLDER, final)
    shutil.rmtree(tmp, ignore_errors=True)
    return final


def find_cifar100(root: str | os.PathLike | None = None) -> Path:
    """Returns an md5-checked ``cifar-100-python`` folder, unpacking a shipped archive once if needed.

    Looks in ``root``, ``$AVALANCHE_EXT_DATA``, ``$CIFAR100_ROOT``, ``<repo>/data`` and
    ``<repo>/../shared/data`` (a source checkout only), the user data folder and the cache, for either the unpacked folder or
    ``cifar-100-python.tar.xz`` / ``.tar.gz``; archives are unpacked into ``<cache>/data``. A cached
    copy whose md5 no longer matches (a damaged cache) is unpacked again from the archive, with a
    ``warning:`` line on stderr saying so.

    Args:
        root: a folder holding ``cifar-100-python/`` or the archive (or the folder itself).

    Raises:
        ConfigError: nothing found (the message lists where it looked), an md5 mismatch of a folder
            that is not our cache, or an archive that fails the md5 check (naming the archive).
    """
    places = _candidates(root)
    archives = [p / n for p in places for n in ARCHIVE_NAMES if (p / n).is_file()]
    cache = (cache_root() / "data").resolve()
    for place in places:
        for folder in (place, place / FOLDER):
            if (folder / "meta").is_file() and (folder / "train").is_file():
                bad = _mismatch(folder)
                if bad is None:
                    return folder
                if folder.resolve().parent == cache and archives:
                    print(f"warning: {bad}; unpacking {archives[0]} again", file=sys.stderr)
                    return _unpack(archives[0])
                raise bad
    if archives:
        return _unpack(archives[0])
    looked = ", ".join(str(p) for p in places)
    raise ConfigError(
        f"CIFAR-100 not found: looked for {FOLDER}/ or {ARCHIVE_NAMES[0]} in {looked} "
        f"(set scenario.dataset_root or $AVALANCHE_EXT_DATA; nothing is ever downloaded)"
    )


def _read_split(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return (
        torch.from_numpy(images.copy()),
        torch.as_tensor(entry["fine_labels"], dtype=torch.long),
        torch.as_tensor(entry["coarse_labels"], dtype=torch.long),
    )


def load_cifar100(root: str | os.PathLike | None = None) -> Cifar100:
    """Loads CIFAR-100 into memory (cached per process).

    Args:
        root: see :func:`find_cifar100`.
    """
    folder = find_cifar100(root)
    key = str(folder.resolve())
    if key not in _MEMORY:
        train = _read_split(folder / "train")
        test = _read_split(folder / "test")
        with open(folder / "meta", "rb") as f:
            meta = pickle.load(f, encoding="latin1")
        _MEMORY[key] = Cifar100(
            *train, *test, list(meta["fine_label_names"]), list(meta["coarse_label_names"])
        )
    return _MEMORY[key]
