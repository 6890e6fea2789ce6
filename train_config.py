#!/usr/bin/env python
"""``python train_config.py CONFIG ...`` in a source checkout: the training command line of
:mod:`avalanche_ext.cli.train` (``avalanche-ext-train CONFIG ...`` once the package is installed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from avalanche_ext.cli import train  # noqa: E402

main = train.main


def __getattr__(name: str):
    """Everything else of the command-line module (for code that loads this file by path)."""
    return getattr(train, name)


if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = train  # `import train_config` is the command-line module itself
