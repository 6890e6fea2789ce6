"""Decoding images given by a user (files, bytes, uploads) safely: Pillow's decompression-bomb guard
as an error, a byte and a pixel limit, and one clear :class:`ConfigError` for anything that is not
an image."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from avalanche_ext.errors import ConfigError

__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "decode_image", "open_image"]

MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""Largest encoded image accepted (10 MiB)."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Largest decoded image accepted (width x height); Pillow's own bomb guard is 89 M pixels."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """An RGB ``PIL.Image`` from encoded bytes.

    Args:
        data: the file's bytes.
        name: what to call it in errors (file name).

    Raises:
        ConfigError: too large, not an image, truncated, or a decompression bomb.
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise ConfigError(
            f"{name}: {len(data) / 2**20:.1f} MiB is over the {MAX_IMAGE_BYTES // 2**20} MiB limit"
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that: both refuse here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ConfigError(
                        f"{name}: {width}x{height} pixels is over the {MAX_IMAGE_PIXELS} pixel limit"
                    )
                probe.verify()
            with Image.open(io.BytesIO(data)) as img:
                return img.convert("RGB")
    except ConfigError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ConfigError(f"{name}: refused: too many pixels (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ConfigError(f"{name}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ConfigError(f"{name}: broken image ({err})") from None


def open_image(path: str | os.PathLike) -> Image.Image:
    """:func:`decode_image` of a file.

    Raises:
        ConfigError: missing or unreadable file, or see :func:`decode_image`.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_IMAGE_BYTES:
            raise ConfigError(f"{p}: over the {MAX_IMAGE_BYTES // 2**20} MiB limit")
        data = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read ({err.strerror or err})") from None
    return decode_image(data, str(p))
