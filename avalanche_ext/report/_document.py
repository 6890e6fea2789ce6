"""A tiny document model (sections of text, tables, images) written both as Markdown and as HTML.

The run report and the run comparison build one ``Document`` and write it twice, so the two agree.
"""

from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Document", "Section", "format_value", "format_percent"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 9px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
code { background: #f5f5f5; padding: 0 3px; }
"""


def format_value(value: Any, digits: int = 4) -> str:
    """A table cell: floats rounded, None / NaN as ``n/a``, lists joined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v, digits) for v in value)
    return str(value)


def format_percent(value: float | None, digits: int = 2) -> str:
    """A fraction in 0..1 written as a percentage (``n/a`` when undefined)."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{100.0 * value:.{digits}f}%"


@dataclass
class Section:
    """One titled part of a document: an ordered list of blocks."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def text(self, text: str) -> Section:
        """Adds a paragraph (plain text; ``code`` spans in backticks are kept)."""
        self.blocks.append(("text", text))
        return self

    def table(self, header: list[str], rows: list[list[Any]]) -> Section:
        """Adds a table; cells are formatted with :func:`format_value` unless already strings."""
        cells = [[c if isinstance(c, str) else format_value(c) for c in row] for row in rows]
        self.blocks.append(("table", [str(h) for h in header], cells))
        return self

    def image(self, path: str, alt: str) -> Section:
        """Adds an image given by its path relative to the document's folder."""
        self.blocks.append(("image", path, alt))
        return self


@dataclass
class Document:
    """A titled list of sections, written by :meth:`to_markdown` and :meth:`to_html`."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        """Appends and returns a new section."""
        self.sections.append(Section(title))
        return self.sections[-1]

    def to_markdown(self) -> str:
        """The document as GitHub-flavoured Markdown (images linked by relative path)."""
        lines = [f"# {self.title}", ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for block in section.blocks:
                if block[0] == "text":
                    lines += [block[1], ""]
                elif block[0] == "table":
                    header, rows = block[1], block[2]
                    lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                    lines.append("|" + "|".join(_md_alignment(header, rows)) + "|")
                    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                    lines.append("")
                elif block[0] == "image":
                    lines += [f"![{block[2]}]({block[1]})", ""]
        return "\n".join(lines).rstrip() + "\n"

    def to_html(self, base_dir: str) -> str:
        """The document as one self-contained HTML page: inline CSS, images as base64 data URIs.

        Args:
            base_dir: folder the image paths are relative to.
        """
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for section in self.sections:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
            for block in section.blocks:
                if block[0] == "text":
                    parts.append(f"<p>{_html_text(block[1])}</p>")
                elif block[0] == "table":
                    header, rows = block[1], block[2]
                    parts.append("<table><thead><tr>")
                    parts += [f"<th>{html.escape(h)}</th>" for h in header]
                    parts.append("</tr></thead><tbody>")
                    for row in rows:
                        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
                        parts.append(f"<tr>{cells}</tr>")
                    parts.append("</tbody></table>")
                elif block[0] == "image":
                    with open(os.path.join(base_dir, block[1]), "rb") as handle:
                        data = base64.b64encode(handle.read()).decode("ascii")
                    parts.append(
                        f'<img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">'
                    )
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


def _is_number(text: str) -> bool:
    """Whether a formatted cell is a number, a percentage or ``n/a`` (right-aligned)."""
    try:
        float(text.rstrip("%").replace(",", ""))
    except ValueError:
        return text == "n/a"
    return True


def _md_alignment(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown column alignment: numbers to the right, text (and the first column) to the left."""
    return [
        "--:" if j and rows and all(_is_number(row[j]) for row in rows if j < len(row)) else "---"
        for j in range(len(header))
    ]


def _md_cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _html_text(text: str) -> str:
    """Escapes a paragraph and turns Markdown backtick spans into ``<code>``."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
