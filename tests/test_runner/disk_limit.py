"""A plugin for tests/test_runner/test_failures.py (imported by its configs through
``custom_imports``; not a test module): after the second experience's training it lowers this
process's file-size limit to ``FILE_LIMIT_BYTES`` (an environment variable; unset: nothing
happens), so the operating system refuses every larger write from then on (``EFBIG``, as a full
disk refuses them with ``ENOSPC``)."""

from __future__ import annotations

import os
import resource
import signal

from avalanche.core import SupervisedPlugin

from avalanche_ext.registry import PLUGINS


@PLUGINS.register_module(name="_DiskLimitPlugin", force=True)
class _DiskLimitPlugin(SupervisedPlugin):
    def after_training_exp(self, strategy, **kwargs):
        limit = os.environ.get("FILE_LIMIT_BYTES")
        if limit and strategy.experience.current_experience == 1:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write, not a killed process
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), hard))

    def state_dict(self) -> dict:
        return {}  # nothing to keep: a resumed run checkpoints and resumes it like any plugin

    def load_state_dict(self, state: dict) -> None:
        pass
