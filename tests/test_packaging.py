"""The package as a user installs it: the declared dependency ranges hold for the exact lock, and a
wheel built from this checkout, installed where the checkout cannot be seen, trains a seconds-long
synthetic config through its console script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from tests.conftest import REPO


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_name(name)] = version
    return pins


def test_every_declared_range_holds_for_the_lock():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [
        r for group in project["optional-dependencies"].values() for r in group
    ]
    pins = _lock()
    assert pins["torch"] == "2.13.0"
    for text in declared:
        requirement = Requirement(text)
        pin = pins.get(_name(requirement.name))
        assert pin is not None, f"{requirement.name} is declared but not in requirements.txt"
        assert requirement.specifier.contains(pin, prereleases=True), (text, pin)
    assert {"dev", "wandb", "ui"} <= set(project["optional-dependencies"])


def _build_wheel(tmp: Path) -> Path:
    """A wheel from a copy of the sources (setuptools writes build/ and egg-info next to them)."""
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "avalanche_ext", src / "avalanche_ext", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    out = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    return next(out.glob("avalanche_ext-*.whl"))


def _fresh_venv(tmp: Path) -> Path:
    """A virtual environment that sees the lock's installed packages through a .pth file naming
    this interpreter's site-packages (the .pth files inside it, among them the checkout's
    editable install, are not read), and nothing of the checkout."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "lock_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.mark.slow
def test_the_wheel_trains_through_its_console_script_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True
    ).stdout
    assert "avalanche_ext/plugins/lwf.py" in names and "avalanche_ext/scenarios/clear.py" in names
    assert not re.search(r"^\s*(strategies|scenarios|tests|tools)/", names, re.MULTILINE)

    venv = _fresh_venv(tmp_path)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
        + ["--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["AVALANCHE_EXT_CACHE"] = str(tmp_path / "cache")
    where = subprocess.run(
        [str(python), "-c", "import avalanche_ext; print(avalanche_ext.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), where
    config = "configs/synthetic/naive_resnet8_1ep_synthetic.py"
    proc = subprocess.run(
        [str(venv / "bin" / "avalanche-ext-train"), config, "--work-dir", "work"]
        + ["--cfg-options", "loggers=[]"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "work" / "latest" / "results.json").is_file()
    assert "results:" in proc.stderr or "results:" in proc.stdout
