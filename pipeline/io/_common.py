"""Checks and conversions every reader shares: levels, bands, chunks."""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da

from ..errors import InputValueError

Chunks = int | Sequence[int] | None

DEFAULT_AXES = {2: "yx", 3: "zyx", 4: "czyx"}  # axes of an array that does not name its own


def check_level(level: int | None, levels: int, source: str) -> int:
    """The pyramid level to read: ``level`` validated against ``levels`` available."""
    if level is None:
        return 0
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < levels:
        raise InputValueError(
            f"{source}: level {level!r} does not exist; it has levels 0 to {levels - 1}"
        )
    return level


def band_indices(bands: Sequence[int] | None, count: int, source: str) -> list[int]:
    """0-based indices of 1-based ``bands`` (as GDAL numbers them) among ``count``."""
    if bands is None:
        return list(range(count))
    if isinstance(bands, int | str) or not bands:
        raise InputValueError(
            f"{source}: bands must be a non-empty list of band numbers from 1 to {count}; "
            f"got {bands!r}"
        )
    for band in bands:
        if isinstance(band, bool) or not isinstance(band, int) or not 1 <= band <= count:
            raise InputValueError(
                f"{source}: band {band!r} is out of range; it has bands 1 to {count}"
            )
    return [band - 1 for band in bands]


def spatial_chunks(chunks: Chunks, axes: str, default: Sequence[int]) -> tuple[int, ...]:
    """One chunk size per axis: ``chunks`` (one int or one per spatial axis) for the
    spatial axes, every band in one chunk; ``default`` (per axis) when ``chunks`` is None."""
    spatial = [i for i, axis in enumerate(axes) if axis != "c"]
    if chunks is None:
        return tuple(default)
    sizes = [chunks] * len(spatial) if isinstance(chunks, int) else list(chunks)
    if len(sizes) != len(spatial) or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes
    ):
        raise InputValueError(
            f"chunks must be a positive integer or one per spatial axis "
            f"({len(spatial)} for {axes!r}); got {chunks!r}"
        )
    out = list(default)
    for i, size in zip(spatial, sizes, strict=True):
        out[i] = size
    return tuple(out)


def rechunk(data: da.Array, chunks: Chunks, axes: str) -> da.Array:
    """``data`` rechunked to ``chunks`` on the spatial axes, bands in one chunk."""
    default = [
        int(data.shape[i] if axis == "c" else data.chunksize[i]) for i, axis in enumerate(axes)
    ]
    target = spatial_chunks(chunks, axes, default)
    return data if target == data.chunksize else data.rechunk(target)


def halvings(height: int, width: int, smallest: int) -> int:
    """How many 2x downsamplings bring the larger side down to at most ``smallest``.

    Examples
    --------
    >>> halvings(352, 349, 256), halvings(3000, 2500, 256), halvings(256, 100, 256)
    (1, 4, 0)
    """
    count, side = 0, max(height, width)
    while side > smallest:
        side = -(-side // 2)
        count += 1
    return count
