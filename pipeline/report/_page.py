"""The frame of the run report: one HTML page with its style inline, nothing fetched.

The page's Content-Security-Policy allows no script, no network request and
only ``data:`` images, so even a string that slipped past escaping could not
run or load anything.
"""

from __future__ import annotations

from html import escape

__all__ = ["page"]

_STYLE = """
:root { color-scheme: light; --ink: #1d1d1f; --muted: #5f6368; --line: #dadce0;
        --bar: #4c78a8; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 6px; }
p { margin: 6px 0; }
.muted, figcaption { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 0; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
        padding: 8px 14px; min-width: 140px; }
.card b { display: block; font-size: 20px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { text-align: left; vertical-align: top; padding: 3px 12px 3px 0;
         border-bottom: 1px solid var(--line); }
th { font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.bar { width: 360px; }
.bar div { height: 12px; background: var(--bar); border-radius: 2px; min-width: 1px; }
code, pre { font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
      padding: 10px 12px; overflow: auto; max-height: 480px; white-space: pre-wrap;
      word-break: break-word; }
figure { margin: 8px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line);
             image-rendering: pixelated; }
details summary { cursor: pointer; color: var(--muted); }
a { color: #1a5fb4; }
"""

_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def page(title: str, subtitle: str, body: str) -> str:
    """The whole HTML document: ``title`` and ``subtitle`` are escaped here, ``body``
    is HTML made by the report's own code (with every record string escaped).

    Examples
    --------
    >>> html = page("a <b>", "run", "<p>x</p>")
    >>> "<title>a &lt;b&gt;</title>" in html and "<p>x</p>" in html
    True
    """
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="segpipe">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        f'<h1>{escape(title)}</h1>\n<p class="muted">{escape(subtitle)}</p>\n'
        f"{body}\n</main>\n</body>\n</html>\n"
    )
