"""The pieces the report is built of: escaped cells, tables, sections, links.

Every value from the record reaches the page through :func:`cell` (or
:func:`html.escape` directly); only markup made in this package is wrapped in
:class:`Html` and passed through as is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

LONG = 300
"""Characters of a value shown in a table cell before it is cut."""


class Html(str):
    """Markup made by this package, with any record string in it already escaped."""


def as_text(value: Any) -> str:
    """A record value as text for a cell: numbers grouped, lists and mappings as JSON."""
    if value is None:
        return "not recorded"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    text = json.dumps(value, default=str)
    return text if len(text) <= LONG else text[: LONG - 1] + "\u2026"


def cell(value: Any) -> str:
    """The HTML of a table cell: :class:`Html` as is, anything else as escaped text.

    Examples
    --------
    >>> cell("<script>"), cell(1234567), cell(Html("<b>x</b>"))
    ('&lt;script&gt;', '1,234,567', '<b>x</b>')
    """
    return value if isinstance(value, Html) else escape(as_text(value))


def table(
    rows: Iterable[Sequence[Any]],
    header: Sequence[str] = (),
    classes: Mapping[int, str] | None = None,
) -> Html:
    """A table of ``rows``; ``classes`` gives columns a CSS class (``num``, ``bar``)."""
    styles = {i: f' class="{name}"' for i, name in (classes or {}).items()}

    def row(cells: Sequence[Any], tag: str) -> str:
        inner = "".join(f"<{tag}{styles.get(i, '')}>{cell(c)}</{tag}>" for i, c in enumerate(cells))
        return f"<tr>{inner}</tr>"

    head = f"<thead>{row(header, 'th')}</thead>" if header else ""
    return Html(f"<table>{head}<tbody>{''.join(row(r, 'td') for r in rows)}</tbody></table>")


def section(key: str, title: str, *content: str) -> Html:
    """A ``<section>`` with an ``<h2>`` ``title`` around ``content`` (markup made here)."""
    return Html(
        f'<section id="{key}">\n<h2>{escape(title)}</h2>\n' + "\n".join(content) + "\n</section>"
    )


def note(text: str) -> Html:
    """A muted paragraph of plain ``text``."""
    return Html(f'<p class="muted">{escape(text)}</p>')


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one: records may lack any key."""
    return value if isinstance(value, Mapping) else {}


def link(target: str, folder: Path) -> Html:
    """A link to ``target`` relative to ``folder``; URLs other than http(s) as plain text.

    A relative ``target`` is taken from the current folder; folders (zarr
    stores) get a trailing ``/``.

    Examples
    --------
    >>> link("/runs/out/labels & more.tif", Path("/runs/reports"))
    '<a href="../out/labels%20%26%20more.tif">../out/labels &amp; more.tif</a>'
    >>> link("s3://bucket/labels.zarr", Path("/runs"))
    '<code>s3://bucket/labels.zarr</code>'
    """
    if "://" in target:
        if target.startswith(("http://", "https://")):
            return Html(f'<a href="{escape(target)}">{escape(target)}</a>')
        return Html(f"<code>{escape(target)}</code>")
    absolute = Path(os.path.abspath(target))
    try:
        relative = Path(os.path.relpath(absolute, folder)).as_posix()
    except ValueError:  # on another drive than the page (Windows): no relative path
        return Html(f'<a href="{escape(absolute.as_uri())}">{escape(str(absolute))}</a>')
    href = quote(relative) + ("/" if absolute.is_dir() else "")
    return Html(f'<a href="{escape(href)}">{escape(relative)}</a>')


def duration(seconds: float) -> str:
    """Seconds for people: ``0.42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
