"""Per-block numpy reductions and their combines, for :func:`~pipeline._batches.reduce_blocks`.

Each block function gets the blocks at one place of the arrays' shared block
grid and returns a partial result; each combine turns a list of partial
results into one of the same kind.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

Range = tuple[Any, Any, int] | None
"""``(min, max, count)`` of some values, or ``None`` when there are none."""


def banded(data: da.Array, valid: da.Array | None) -> list[da.Array]:
    """``data`` (band axis first) with all bands in one block, and ``valid`` (spatial)
    as a bool ``valid[None]`` on the same block grid: arrays to reduce together."""
    data = data.rechunk({0: -1})
    if valid is None:
        return [data]
    return [data, valid[None].astype(bool).rechunk(((1,), *data.chunks[1:]))]


def add(parts: list[np.ndarray]) -> np.ndarray:
    """The sum of partial counts (histograms)."""
    total: np.ndarray = np.sum(parts, axis=0)
    return total


def value_range(block: np.ndarray, mask: np.ndarray | None = None) -> Range:
    """The :data:`Range` of ``block[mask]`` (of the whole block without a mask), in
    the block's dtype; a NaN among the values makes both ends NaN, as in ``np.min``.

    ``mask`` broadcasts to the block (``valid[None]`` for all bands).
    """
    values = block if mask is None else block[np.broadcast_to(mask, block.shape)]
    if values.size == 0:
        return None
    return values.min(), values.max(), int(values.size)


def widest(parts: list[Range]) -> Range:
    """The :data:`Range` of several: the least minimum, the greatest maximum (NaN if
    either is NaN anywhere), the summed count."""
    ranges = [part for part in parts if part is not None]
    if not ranges:
        return None
    lows, highs, counts = zip(*ranges, strict=True)
    return np.min(lows), np.max(highs), sum(counts)


def value_counts(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Pixels per value of an integer (or bool) block, ``valid`` ones only: index ``i``
    counts the value ``i + np.iinfo(dtype).min`` (uint8's for bool), over the whole
    dtype's range (int64)."""
    info = np.iinfo(values.dtype) if values.dtype.kind != "b" else np.iinfo(np.uint8)
    picked = values if valid is None else values[valid.astype(bool)]
    if picked.dtype.itemsize == 1:
        counts = byte_counts(picked)
        # int8's byte b holds b - 256 from 128 up: its counts start at byte 128.
        return np.roll(counts, 128) if picked.dtype.kind == "i" else counts
    offset, span = int(info.min), int(info.max) - int(info.min) + 1
    return np.bincount(picked.ravel().astype(np.int64) - offset, minlength=span)


def byte_counts(values: np.ndarray) -> np.ndarray:
    """Pixels per byte value (0..255, int64) of a one-byte array.

    Counted two bytes at a time, over the 65,536 pairs: half the elements for
    ``np.bincount`` to widen, about twice as fast as counting the bytes.
    """
    flat = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
    even = flat[: flat.size - flat.size % 2]
    pairs = np.bincount(even.view(np.uint16), minlength=1 << 16).reshape(256, 256)
    counts = pairs.sum(axis=0) + pairs.sum(axis=1)
    if flat.size % 2:
        counts[flat[-1]] += 1
    return counts.astype(np.int64)
