"""Command lines over :mod:`avalanche_ext.api` (console scripts; ``tools/`` holds the same as
scripts). Each ``main(argv)`` ends a user mistake with one ``error:`` line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from avalanche_ext.errors import ConfigError

__all__ = ["EXIT_USER_ERROR", "guarded"]

EXIT_USER_ERROR = 2


def guarded(body: Callable[[], int], debug: bool = False) -> int:
    """Runs ``body``; a :class:`ConfigError` becomes ``error: ...`` on stderr and exit code 2."""
    try:
        return body()
    except ConfigError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
