"""One static HTML page of report sections: a figure (PNG beside the page) and a table under each, no server.

Every section carries the settings that produced its numbers and the seconds it took; the page header carries
the model, its dtype and the structure. Nothing is shown without its setting (issue 27, "Honesty").
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlip.files import atomic_write_text

__all__ = ["Section", "write_page"]


@dataclass
class Section:
    """A report section: ``image`` (PNG file name in the report folder, or None), ``rows`` of the table under it
    (first row = header), the ``settings`` behind the numbers, the ``seconds`` it took, and free-text ``notes``
    (a flagged imaginary mode, a stability verdict)."""

    title: str
    rows: list[list[Any]]
    settings: dict[str, Any]
    seconds: float
    image: str | None = None
    notes: list[str] = field(default_factory=list)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return html.escape(str(value))


def _table(rows: list[list[Any]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{_cell(v)}</th>" for v in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(section: Section) -> str:
    parts = [f"<section><h2>{html.escape(section.title)}</h2>"]
    if section.image:
        parts.append(f'<img src="{html.escape(section.image)}" alt="{html.escape(section.title)}">')
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
    parts.append(_table(section.rows))
    settings = "; ".join(f"{k}: {v}" for k, v in section.settings.items())
    parts.append(f'<p class="settings">Settings: {html.escape(settings)}. Took {section.seconds:.1f} s.</p></section>')
    return "\n".join(parts)


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
img{max-width:100%}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:2px 8px;
text-align:right}th{background:#eee}.settings{color:#555;font-size:90%}.note{font-weight:bold;color:#a40}"""


def write_page(folder: str | Path, title: str, header: dict[str, Any], sections: list[Section]) -> Path:
    """Write ``folder/index.html`` (atomically) for ``sections`` under a header table; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    head_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in header.items())
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n<table>{head_rows}</table>\n"
            + "\n".join(_section(s) for s in sections) + "\n</body></html>\n")
    path = folder / "index.html"
    atomic_write_text(path, page)
    return path
