"""Old top-level import paths kept working in a source checkout: ``strategies.lwf`` is the module
:mod:`avalanche_ext.plugins.lwf`, ``scenarios.clear`` is :mod:`avalanche_ext.scenarios.clear`.

The root of a checkout holds two one-line modules, ``strategies.py`` and ``scenarios.py``, that call
:func:`alias_package`; the wheel ships neither (generic top-level names would clash with other
projects), so installed code and new configs use the ``avalanche_ext`` paths. An alias is the very
module object, not a copy: nothing registers twice and private names import as before.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["alias_package"]


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``<old>.<name>`` as the first of ``<new>.<name>`` that exists."""

    def __init__(self, old: str, new: Sequence[str]):
        self.old, self.new = old, tuple(new)

    def _target(self, fullname: str) -> str | None:
        prefix = self.old + "."
        if not fullname.startswith(prefix):
            return None
        rest = fullname[len(prefix) :]
        for package in self.new:
            if importlib.util.find_spec(f"{package}.{rest.split('.')[0]}") is not None:
                return f"{package}.{rest}"
        return None

    def find_spec(self, fullname, path=None, target=None):
        if self._target(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        return importlib.import_module(self._target(spec.name))

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its own name."""


def alias_package(old: str, new: Sequence[str]) -> None:
    """Makes the module ``old`` a package whose submodules are those of the ``new`` packages.

    Args:
        old: the old package name (the calling module: ``__name__``).
        new: the packages that hold its modules now, searched in order.
    """
    module = sys.modules[old]
    module.__path__ = []  # a package without a folder: only the finder knows its submodules
    if not any(isinstance(f, _AliasFinder) and f.old == old for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder(old, new))  # before any installed copy of the old name
