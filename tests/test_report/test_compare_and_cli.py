"""Tests of run resolution, the comparison of two recorded runs and the report command line.

The CLI is called in-process through ``main(argv)``; one test runs the real script for its exit code.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from avalanche_ext.errors import ConfigError
from avalanche_ext.report import compare_runs, resolve_run_dir

__all__: list[str] = []

TOOL = Path(__file__).resolve().parents[2] / "tools" / "report.py"


@pytest.fixture(scope="module")
def report_tool():
    spec = importlib.util.spec_from_file_location("report_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _second_run(results: dict) -> dict:
    """A worse run: a naive fine-tuning baseline without discovery."""
    other = copy.deepcopy(results)
    other["accuracy_matrix"] = [[0.8, 0.0, 0.0], [0.1, 0.7, 0.0], [0.0, 0.05, 0.6]]
    other["final"] = {"stream_accuracy": 0.16, "stream_forgetting": 0.725}
    del other["discovery"]
    return other


@pytest.mark.parametrize("latest", ["symlink", "file", None])
def test_resolve_work_dir_to_latest_run(make_run, example_results, latest):
    make_run(example_results, stamp="20250101_000000")
    newest = make_run(example_results, stamp="20250102_000000", latest=latest)
    assert resolve_run_dir(newest.parent).resolve() == newest.resolve()
    assert resolve_run_dir(newest) == newest


def test_resolve_errors_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        resolve_run_dir(tmp_path / "missing")
    with pytest.raises(ConfigError, match=str(tmp_path)):
        resolve_run_dir(tmp_path)


def test_compare_two_runs(make_run, example_results, tmp_path):
    first = make_run(example_results, work_dir="gate_lwf", latest="symlink")
    second = make_run(
        {**_second_run(example_results), "precision": "bfloat16 autocast"}, work_dir="naive"
    )
    comparison = compare_runs([first.parent, second], tmp_path / "cmp")
    rows = {row["name"]: row for row in comparison["rows"]}
    assert set(rows) == {"gate_lwf", "naive"}
    # seen-experience curve of the fixture: 0.8125, (0.735 + 0.6575) / 2, (0.74 + 0.4525 + 0.285) / 3
    assert rows["gate_lwf"]["curve"] == pytest.approx([0.8125, 0.69625, 0.4925])
    assert rows["naive"]["backward_transfer"] == pytest.approx(0.05)  # (0.1 + 0.0 + 0.05) / 3
    assert rows["naive"]["all_acc"] is None and "all_acc" in comparison["columns"]
    for name in ("comparison.md", "comparison.html", "accuracy_curves.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 1000 or name.endswith(".md")
    md = (tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8")
    assert "| gate_lwf | cifar_known_novel | 53.40% | 13.87% |" in md
    assert "| naive | cifar_known_novel | 16.00% | 72.50% |" in md
    # a run in bf16 says so beside its throughput (a run recorded before the field: blank)
    assert rows["naive"]["precision"] == "bfloat16 autocast" and "| precision |" in md
    assert "bfloat16 autocast |" in md.split("| naive |")[1].splitlines()[0]
    html = (tmp_path / "cmp" / "comparison.html").read_text(encoding="utf-8")
    # the accuracy curves and (the fixture has class counts) the long-tail per-class bars
    assert html.count("data:image/png;base64,") == 2


def test_cli_rerenders_one_run(report_tool, make_run, example_results, capsys):
    run_dir = make_run(example_results, latest="file")
    assert report_tool.main([str(run_dir.parent)]) == 0
    saved = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert saved["streaming"]["in_domain"] == pytest.approx(0.585)
    assert saved["artifacts"]["report_html"] == "report.html"
    assert (run_dir / "report.html").exists() and "report_md:" in capsys.readouterr().out


def test_cli_out_leaves_the_run_untouched(report_tool, make_run, example_results, tmp_path):
    run_dir = make_run(example_results)
    before = (run_dir / "results.json").read_text(encoding="utf-8")
    assert report_tool.main([str(run_dir), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "report.md").exists()
    assert (run_dir / "results.json").read_text(encoding="utf-8") == before
    assert not (run_dir / "report.md").exists()


def test_cli_compares_several_runs(report_tool, make_run, example_results, tmp_path):
    first = make_run(example_results, work_dir="a")
    second = make_run(_second_run(example_results), work_dir="b")
    out = tmp_path / "cmp"
    assert report_tool.main([str(first), str(second), "--out", str(out)]) == 0
    assert (out / "comparison.html").exists() and (out / "accuracy_curves.png").exists()


def test_cli_bad_input_exits_2_with_one_line(report_tool, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert report_tool.main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and err.count("\n") == 1

    (tmp_path / "empty").mkdir()
    assert report_tool.main([str(tmp_path / "empty")]) == 2
    assert str(tmp_path / "empty") in capsys.readouterr().err

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json", encoding="utf-8")
    assert report_tool.main([str(broken)]) == 2
    err = capsys.readouterr().err
    assert "invalid JSON" in err and str(broken / "results.json") in err


@pytest.mark.slow  # a fresh interpreter imports torch and avalanche: 5-10 s
def test_cli_script_exit_code_on_missing_dir(tmp_path):
    missing = tmp_path / "missing_work_dir"
    proc = subprocess.run(
        [sys.executable, str(TOOL), str(missing)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {missing}: no such directory"
