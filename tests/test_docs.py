"""README's "I want to..." table works and no document points at nothing: every command of the
table runs (as ``--dry-run``: built and checked, nothing trained), and every relative link and file
path named in README.md and docs/*.md exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import train_config
from tests.conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_ROW = re.compile(r"^\| (?P<task>[^|]+) \| `(?P<command>[^`]+)` \|$", re.MULTILINE)
_PREPARE = re.compile(r"\(after `python tools/make_cifar_clear.py (?P<root>[^`]+)`\)")
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
# A path in backquotes: starts with a top-level folder or file of the repository.
_PATH = re.compile(
    r"`(?P<path>(?:avalanche_ext|configs|docs|tools|tests|benchmarks|examples)/[^`\s*{}<>]+"
    r"|(?:train_config|strategies|scenarios)\.py|README\.md|Makefile|pyproject\.toml"
    r"|requirements\.txt)`"
)


def _table() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## I want to...", 1)[1].split("\n## ", 1)[0]
    return [(m["task"].strip(), m["command"]) for m in _ROW.finditer(section)]


def test_the_table_answers_every_task():
    tasks = " ".join(task for task, _ in _table())
    for word in ("demo", "discover", "long-tailed", "CLEAR", "processes", "resume", "seeds"):
        assert word in tasks, word
    assert "compare" in tasks and "my own plugin" in tasks


def _dry_run_argv(task: str, command: str, tmp_path: Path) -> list[str]:
    """The table's command as ``train_config.main`` arguments, with ``--dry-run``: a torchrun
    launch becomes its one-process equivalent, ``--seeds`` its first seed (a seeds run is one run
    per seed), and a CLEAR tree the row asks for is written small into ``tmp_path``."""
    argv = shlex.split(command)
    if argv[0] == "torchrun":
        argv = ["python", *argv[next(i for i, a in enumerate(argv) if a.endswith(".py")) :]]
        at = argv.index("--launcher")
        del argv[at : at + 2]
    assert argv[:2] == ["python", "train_config.py"], command
    argv = argv[2:]
    if "--seeds" in argv:
        at = argv.index("--seeds")
        argv[at : at + 2] = ["--seed", argv[at + 1]]
        while at + 2 < len(argv) and argv[at + 2].isdigit():
            del argv[at + 2]
    prepare = _PREPARE.search(task)
    if prepare:
        from tools.make_cifar_clear import make_cifar_clear  # noqa: PLC0415

        root = make_cifar_clear(tmp_path / "tree", train_per_class=1, test_per_class=1)
        argv += ["--cfg-options", f"scenario.dataset_root={root}"]
    return [*argv, "--dry-run", "--work-dir", str(tmp_path / "work")]


@pytest.mark.slow
@pytest.mark.parametrize("task, command", _table(), ids=[t for t, _ in _table()])
def test_every_table_command_runs(task, command, tmp_path, capsys, monkeypatch):
    if command.startswith("python tools/report.py"):
        from tools import report  # noqa: PLC0415

        with pytest.raises(SystemExit) as done:
            report.main(["--help"])
        assert done.value.code == 0
        return
    monkeypatch.chdir(REPO)
    code = train_config.main(_dry_run_argv(task, command, tmp_path))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert '"train_stream"' in captured.out


def _missing(document: Path) -> list[str]:
    """Links (relative to the document) and backquoted paths (relative to the repository) that name
    nothing; HTML comments are left out (a place kept for a page that does not exist yet)."""
    text = re.sub(r"<!--.*?-->", "", document.read_text(), flags=re.DOTALL)
    missing = []
    for m in _LINK.finditer(text):
        target = m["target"].split("#", 1)[0]
        if target and not re.match(r"^[a-z]+:", target) and not (document.parent / target).exists():
            missing.append(m["target"])
    for m in _PATH.finditer(text):
        if "..." not in m["path"] and not (REPO / m["path"].split("::", 1)[0]).exists():
            missing.append(m["path"])
    return missing


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_every_relative_link_and_path_exists(document):
    missing = _missing(document)
    assert not missing, f"{document.name} names what does not exist: {missing}"
