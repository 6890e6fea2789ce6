"""The stack fixes in avalanche_ext._compat are needed, and they work."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from avalanche_ext import _compat
from tests.conftest import REPO


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_torchvision_imports_through_the_package():
    import torchvision
    from torchvision.transforms import v2

    assert torchvision.__version__.startswith("0.28")
    assert v2.RandomCrop(4)(__import__("torch").zeros(3, 8, 8)).shape == (3, 4, 4)


def test_placeholders_only_when_the_extension_is_missing():
    proc = _python("import torchvision")
    if not _compat.torchvision_ops_missing():
        assert proc.returncode == 0
        pytest.skip("torchvision's compiled ops load here: no placeholder needed")
    # the fix is needed: without it, importing torchvision fails exactly as documented
    assert proc.returncode != 0
    assert "torchvision::nms does not exist" in proc.stderr


def test_avalanche_does_not_need_a_writable_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    code = "import avalanche_ext, avalanche.training; print('ok')"
    env = {"HOME": str(home), "AVALANCHE_EXT_CACHE": str(tmp_path / "cache")}
    proc = _python(code, env)
    assert proc.returncode == 0, proc.stderr
    assert not (home / ".avalanche").exists()
    assert (tmp_path / "cache" / ".avalanche" / "config.json").is_file()


def test_wandb_logger_runs_offline_with_current_wandb(tmp_path):
    code = f"""
import avalanche_ext, os
from avalanche_ext.registry import LOGGERS, build
logger = build(LOGGERS, dict(type='WandBLogger', project_name='t', run_name='r'),
               work_dir={str(tmp_path)!r})
logger.log_single_metric('Top1_Acc_Stream/eval_phase/test_stream', 0.5, 1)
logger.close()
print('MODE', os.environ.get('WANDB_MODE'))
"""
    os.environ.pop("WANDB_MODE", None)
    proc = _python(code, {"WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MODE offline" in proc.stdout, "no run may need the network"
    assert (tmp_path / "wandb").is_dir()


def test_avalanche_wandb_logger_is_broken_without_the_fix(tmp_path):
    code = f"""
import avalanche_ext
from avalanche.logging import WandBLogger
WandBLogger(project_name='t', run_name='r', dir={str(tmp_path)!r}, save_code=False)
"""
    proc = _python(code, {"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert proc.returncode != 0
    assert "generate_id" in proc.stderr
