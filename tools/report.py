#!/usr/bin/env python
"""``python tools/report.py WORK_DIR ...`` in a source checkout: :mod:`avalanche_ext.cli.report`
(``avalanche-ext-report`` once the package is installed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avalanche_ext.cli import report  # noqa: E402

main = report.main


def __getattr__(name: str):
    """Everything else of the command-line module (for code that loads this file by path)."""
    return getattr(report, name)


if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = report  # `import tools.report` is the command-line module itself
