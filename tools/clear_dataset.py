#!/usr/bin/env python
"""``python tools/clear_dataset.py ...`` in a source checkout: :mod:`avalanche_ext.cli.clear_dataset`
(``avalanche-ext-clear`` once the package is installed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avalanche_ext.cli import clear_dataset  # noqa: E402

main = clear_dataset.main


def __getattr__(name: str):
    """Everything else of the command-line module (for code that loads this file by path)."""
    return getattr(clear_dataset, name)


if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = clear_dataset  # `import tools.clear_dataset` is the module itself
