"""The one exception type that the CLI turns into ``error: ...`` and exit code 2."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A user mistake in a config, a command line, a data folder or a checkpoint.

    The message names the config key or the path at fault; the CLI prints it on one line.
    """
