"""Figures of the run report, drawn as inline SVG text: no plotting library, no files.

Every string placed in a figure passes through :func:`html.escape`.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

from ..measure._sizes import SizeCounts

__all__ = ["size_bins", "size_histogram"]

_BAR = "#4c78a8"
_AXIS = "#555"
_GRID = "#e4e4e4"


def size_bins(sizes: SizeCounts, *, per_decade: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Counts of objects by size in log-spaced bins, and the bins' edges.

    The edges are ``10 ** (k / per_decade)`` from the decade below the
    smallest size to the decade above the largest; the last bin includes its
    upper edge.

    Examples
    --------
    >>> counts, edges = size_bins(SizeCounts.of([1, 2, 3, 10, 40, 99]), per_decade=2)
    >>> counts.tolist(), np.round(edges, 1).tolist()
    ([3, 0, 1, 2], [1.0, 3.2, 10.0, 31.6, 100.0])
    """
    low = math.floor(math.log10(max(float(sizes.pixels[0]), 1.0)))
    high = max(math.ceil(math.log10(max(float(sizes.pixels[-1]), 1.0))), low + 1)
    steps = np.arange(low * per_decade, high * per_decade + 1)
    edges = 10.0 ** (steps / per_decade)
    pixels = np.clip(sizes.pixels.astype(np.float64), edges[0], edges[-1])
    counts, _ = np.histogram(pixels, bins=edges, weights=sizes.objects)
    return counts.astype(np.int64), edges


def size_histogram(sizes: SizeCounts, *, width: int = 640, height: int = 240) -> str:
    """An SVG histogram of object sizes (pixels), in log-spaced bins (4 per decade).

    Each bar carries a tooltip with its range and count; empty bins have no bar.

    Examples
    --------
    >>> svg = size_histogram(SizeCounts.of([1, 5, 5, 120, 3000]))
    >>> svg.startswith("<svg"), svg.count("<rect"), "3.2 to 5.6 pixels: 2 objects" in svg
    (True, 4, True)
    """
    counts, edges = size_bins(sizes)
    left, right, top, bottom = 56, 12, 12, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    base = top + plot_h
    tallest = max(int(counts.max()), 1)
    bar_w = plot_w / counts.size
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        'aria-label="Histogram of object sizes in pixels, log-spaced bins" '
        'font-family="sans-serif" font-size="11">'
    ]
    for value in _ticks(tallest):  # count axis, with grid lines behind the bars
        y = base - plot_h * value / tallest
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{_GRID}"/>'
            f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="{_AXIS}"/>'
            f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end">{value:,}</text>'
        )
    for i, count in enumerate(counts):
        if not count:
            continue
        h = plot_h * int(count) / tallest
        noun = "object" if count == 1 else "objects"
        tip = f"{_size(edges[i])} to {_size(edges[i + 1])} pixels: {int(count):,} {noun}"
        parts.append(
            f'<rect x="{left + i * bar_w + 1:.1f}" y="{base - h:.1f}" '
            f'width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" fill="{_BAR}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    parts.append(
        f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="{_AXIS}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="{_AXIS}"/>'
    )
    per_decade = round((edges.size - 1) / math.log10(edges[-1] / edges[0]))
    for i in range(0, edges.size, per_decade):  # size axis: a tick per decade
        x = left + i * bar_w
        parts.append(
            f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="{_AXIS}"/>'
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle">'
            f"{escape(_size(edges[i]))}</text>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        "object size (pixels, log scale)</text>"
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">objects</text></svg>'
    )
    return "".join(parts)


def _size(value: float) -> str:
    """A bin edge for people.

    Examples
    --------
    >>> [_size(v) for v in (1, 3.162, 17.78, 100, 562.3, 1778, 1e5, 3.2e6)]
    ['1', '3.2', '18', '100', '562', '1.8k', '100k', '3.2M']
    """
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")):
        if value >= limit or not suffix:
            scaled = value / limit
            text = f"{scaled:.1f}".rstrip("0").rstrip(".") if scaled < 10 else f"{scaled:.0f}"
            return text + suffix
    raise AssertionError("unreachable: the last limit has no suffix")


def _ticks(tallest: int) -> list[int]:
    """Round values from 0 to ``tallest`` for the count axis: 3 to 6 of them.

    Examples
    --------
    >>> _ticks(1), _ticks(7), _ticks(103)
    ([0, 1], [0, 2, 4, 6], [0, 50, 100])
    """
    steps = (m * 10**e for e in range(19) for m in (1, 2, 5))
    step = next(s for s in steps if tallest / s <= 5)
    return list(range(0, tallest + 1, step))
