"""Where data and caches live: never derived from where the package is installed.

* data: ``$AVALANCHE_EXT_DATA``, then (a source checkout only) ``<repo>/data`` and
  ``<repo>/../shared/data``, then the user's data folder (``$XDG_DATA_HOME/avalanche-ext``, default
  ``~/.local/share/avalanche-ext``);
* caches (unpacked archives, features): ``$AVALANCHE_EXT_CACHE``, else ``<repo>/.cache`` in a source
  checkout, else the user's cache folder (``$XDG_CACHE_HOME/avalanche-ext``, default
  ``~/.cache/avalanche-ext``).

A source checkout is recognised by the ``pyproject.toml`` beside the package folder; an installed
package (site-packages) has none, so nothing is ever read from or written next to it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "source_checkout", "user_cache_dir", "user_data_dir"]


def source_checkout() -> Path | None:
    """The repository root when the package is imported from a source checkout, else None."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def _xdg(var: str, default: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / default) / "avalanche-ext"


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/avalanche-ext`` (default ``~/.local/share/avalanche-ext``)."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/avalanche-ext`` (default ``~/.cache/avalanche-ext``)."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def cache_root() -> Path:
    """The cache folder: ``$AVALANCHE_EXT_CACHE``, else ``<repo>/.cache`` in a source checkout, else
    :func:`user_cache_dir`."""
    if os.environ.get("AVALANCHE_EXT_CACHE"):
        return Path(os.environ["AVALANCHE_EXT_CACHE"])
    root = source_checkout()
    return root / ".cache" if root is not None else user_cache_dir()
