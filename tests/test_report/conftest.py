"""Fixtures of the report tests: the recorded results.json and run folders built from it.

``make_run`` lays a results dict out as the runner does (work dir / timestamped run / latest).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

__all__: list[str] = []

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results_example.json"


@pytest.fixture(scope="session")
def _recorded_results() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture
def example_results(_recorded_results: dict) -> dict:
    """A fresh copy of tests/fixtures/results_example.json (3 experiences, 10 classes)."""
    return copy.deepcopy(_recorded_results)


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Writes ``results`` as ``<tmp>/<work_dir>/<stamp>/results.json``; returns the run folder.

    With ``latest="symlink"`` or ``"file"`` the work dir also gets a ``latest`` entry.
    """

    def make(
        results: dict,
        work_dir: str = "work",
        stamp: str = "20250101_120000",
        latest: str | None = None,
    ) -> Path:
        run_dir = tmp_path / work_dir / stamp
        run_dir.mkdir(parents=True)
        results = dict(results, work_dir=str(tmp_path / work_dir), run_dir=str(run_dir))
        (run_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
        if latest == "symlink":
            (tmp_path / work_dir / "latest").symlink_to(stamp, target_is_directory=True)
        elif latest == "file":
            (tmp_path / work_dir / "latest").write_text(stamp + "\n", encoding="utf-8")
        return run_dir

    return make
