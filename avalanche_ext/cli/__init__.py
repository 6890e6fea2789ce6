"""The command lines (console scripts ``avalanche-ext-*``, over :mod:`avalanche_ext.api` and the
runner); each module's ``main(argv)`` returns the exit code and ends a user mistake with one
``error:`` line and exit code 2. In a checkout ``train_config.py`` and ``tools/*.py`` call the same
functions."""

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
