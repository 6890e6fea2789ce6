#!/usr/bin/env python
"""Classify images or a folder with a trained run (see avalanche_ext/cli/infer.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import avalanche_ext  # noqa: E402, F401  (import fixes first)
from avalanche_ext.cli.infer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
