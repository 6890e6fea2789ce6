#!/usr/bin/env python
"""Train, infer and compare in a browser: ``python app.py`` then open http://127.0.0.1:7860
(docs/app.md). A thin entry point over :func:`avalanche_ext.app.server.main`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import avalanche_ext  # noqa: E402, F401  (import fixes first)
from avalanche_ext.app.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
