"""Image-folder datasets (``root/{train,test}/<class>/<image>``) listed at once, decoded on demand.

Scenarios select the images they need first, then decode just those into uint8 ``[N, C, H, W]``
tensors, so a capped Tiny-ImageNet run decodes a few thousand files, not 110,000.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from avalanche_ext.errors import ConfigError

__all__ = ["FolderSplits", "ImageFiles", "load_image_folder"]

TEST_FOLDER_NAMES = ("test", "val")


class ImageFiles:
    """Image files read as uint8 CHW tensors: ``files[i]`` is ``[C, H, W]``, ``files[idx]`` stacked.

    Holds only paths; nothing is decoded until indexed.

    Args:
        paths: image file paths.
        image_size: resize every image to ``image_size x image_size`` (None: keep; then all images
            must share one size to be stacked).
    """

    def __init__(self, paths: list[str], image_size: int | None = None):
        self.paths = list(paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as img:
            img = img.convert("RGB")
            if self.image_size is not None:
                img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)) or (torch.is_tensor(index) and index.ndim == 0):
            return self._read(int(index))
        images = [self._read(int(i)) for i in index]
        if not images:
            size = self.image_size or 1
            return torch.empty((0, 3, size, size), dtype=torch.uint8)
        shapes = {tuple(img.shape) for img in images}
        if len(shapes) > 1:
            raise ConfigError(
                f"{Path(self.paths[0]).parents[1]}: images have different sizes {sorted(shapes)[:2]}; "
                "set scenario.image_size to resize them on load"
            )
        return torch.stack(images)


@dataclass
class FolderSplits:
    """Both splits of an image-folder dataset.

    Args:
        train_images: :class:`ImageFiles` of ``train/``.
        train_labels: int64 ``[N]``, index into ``class_names``.
        test_images: :class:`ImageFiles` of ``test/`` (or ``val/``).
        test_labels: int64 ``[M]``.
        class_names: the class folder names, sorted (torchvision's ``ImageFolder`` order).
    """

    train_images: ImageFiles
    train_labels: torch.Tensor
    test_images: ImageFiles
    test_labels: torch.Tensor
    class_names: list[str]


def _list_split(folder: Path, class_to_idx: dict[str, int]) -> tuple[list[str], torch.Tensor]:
    samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    paths = [path for path, _ in samples]
    labels = torch.as_tensor([label for _, label in samples], dtype=torch.long)
    return paths, labels


def load_image_folder(
    root: str | os.PathLike, image_size: int | None = None, key: str = "scenario.dataset"
) -> FolderSplits:
    """Lists ``root/train`` and ``root/test`` (or ``root/val``) the way ``ImageFolder`` does.

    Args:
        root: folder with ``train/`` and ``test/`` (or ``val/``) subfolders of class folders.
        image_size: see :class:`ImageFiles`.
        key: config key named in errors.

    Raises:
        ConfigError: missing folders, no images, or train and test with different classes.
    """
    root = Path(root)
    train_dir = root / "train"
    test_dir = next((root / n for n in TEST_FOLDER_NAMES if (root / n).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise ConfigError(
            f"{key}: {root} is not an image-folder dataset root "
            f"(expected train/ and test/ (or val/) subfolders of class folders)"
        )
    try:
        train_classes, class_to_idx = find_classes(str(train_dir))
        test_classes, _ = find_classes(str(test_dir))
    except FileNotFoundError as err:
        raise ConfigError(f"{key}: {err}") from None
    if train_classes != test_classes:
        only = sorted(set(train_classes) ^ set(test_classes))[:5]
        raise ConfigError(
            f"{key}: {train_dir} and {test_dir} have different class folders (e.g. {only})"
        )
    try:
        train_paths, train_labels = _list_split(train_dir, class_to_idx)
        test_paths, test_labels = _list_split(test_dir, class_to_idx)
    except FileNotFoundError as err:
        raise ConfigError(f"{key}: {err}") from None
    return FolderSplits(
        train_images=ImageFiles(train_paths, image_size),
        train_labels=train_labels,
        test_images=ImageFiles(test_paths, image_size),
        test_labels=test_labels,
        class_names=list(train_classes),
    )
