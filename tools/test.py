#!/usr/bin/env python
"""Evaluate a checkpoint on a config's streams (see avalanche_ext/cli/test.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import avalanche_ext  # noqa: E402, F401  (import fixes first)
from avalanche_ext.cli.test import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
