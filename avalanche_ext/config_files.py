"""The files behind one config (the file and its ``_base_`` files, followed recursively) and the
names they read: a ``_base_`` cycle becomes one error naming its files, and a top-level name that
another key reads is recognised as an OpenMMLab helper variable (``img_norm_cfg``, ``batch_size``).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from mmengine.config import Config

from avalanche_ext.errors import ConfigError

__all__ = ["base_files", "config_files", "helper_variables", "read_names"]


def base_files(path: Path) -> list[Path]:
    """The local ``_base_`` files that ``path`` lists, resolved against its folder (package
    references such as ``mmpretrain::...`` are left to mmengine).

    Raises:
        ConfigError: the file cannot be parsed (naming it).
    """
    try:
        listed = Config._get_base_files(str(path))
    except Exception as err:  # mmengine raises SyntaxError, its own parsing error, ValueError...
        raise ConfigError(f"{path}: cannot load config ({type(err).__name__}: {err})") from None
    return [
        (path.parent / name).resolve()
        for name in listed
        if isinstance(name, str) and "::" not in name
    ]


def config_files(path: str | os.PathLike) -> list[Path]:
    """``path`` and every ``_base_`` file it reaches, each once, in the order first met.

    Raises:
        ConfigError: a ``_base_`` cycle (naming the files around it) or an unparsable file.
    """
    seen: list[Path] = []

    def visit(file: Path, chain: list[Path]) -> None:
        if file in chain:
            loop = chain[chain.index(file) :] + [file]
            raise ConfigError(
                f"_base_: the config files include each other in a cycle: "
                f"{' -> '.join(str(p) for p in loop)}"
            )
        if file in seen or not file.is_file():
            return  # a missing base is mmengine's to report, with its own message
        seen.append(file)
        for base in base_files(file):
            visit(base, chain + [file])

    visit(Path(path).resolve(), [])
    return seen


def read_names(file: Path) -> set[str]:
    """Names that ``file`` reads: plain names (``**img_norm_cfg``) and ``_base_.name`` /
    ``{{_base_.name}}`` references to a base file's variable."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "_base_"
        ):
            names.add(node.attr)
    return names


def helper_variables(files: list[Path], keys: list[str], known: set[str]) -> set[str]:
    """The top-level ``keys`` outside ``known`` that some file of the config reads: helper
    variables, whose values already live in the keys that read them.

    Decision: "read by another key" is the line between a helper and a typo. OpenMMLab configs
    (mmpretrain's own) name helpers without a leading underscore; a typo'd key (``chekpoint_config``)
    is read by nothing, so it is still refused.
    """
    read: set[str] = set()
    for file in files:
        read |= read_names(file)
    return {k for k in keys if k not in known and not k.startswith("_") and k in read}
