"""Object sizes of a chunked label map, as a distribution, from one look at each chunk.

A report needs how many objects have each size, not which object has which,
and a map of 200 million objects holds only a few thousand distinct sizes.
So each chunk sorts its objects in two::

    chunk ──range bincount──> (id, pixels) for every id present
        ids on none of its faces ──> whole objects: (size, how many) pairs
        ids on a face             ──> pieces: (id, pixels), summed by id later

An object of a connected label map that reaches beyond its chunk crosses one
of the chunk's faces, so an id found on no face is whole. Only the pieces,
bounded by the chunks' surfaces, travel as ids; the whole objects travel as a
short size distribution. When objects may be disconnected (instance maps),
every id is a piece.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SizeCounts:
    """Object sizes as a distribution: ``objects[i]`` objects have ``pixels[i]`` pixels.

    ``pixels`` is ascending and unique; both are int64.
    """

    pixels: np.ndarray
    objects: np.ndarray

    @classmethod
    def of(cls, sizes: Sequence[int] | np.ndarray) -> SizeCounts:
        """The distribution of a list of sizes, one per object."""
        pixels, objects = np.unique(np.asarray(sizes, dtype=np.int64), return_counts=True)
        return cls(pixels, objects.astype(np.int64))

    @classmethod
    def merged(cls, parts: Iterable[SizeCounts]) -> SizeCounts:
        """The distribution of all objects of ``parts`` together."""
        parts = list(parts)
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))
        pixels, where = np.unique(np.concatenate([p.pixels for p in parts]), return_inverse=True)
        weights = np.concatenate([p.objects for p in parts]).astype(np.float64)
        return cls(pixels, np.bincount(where, weights=weights).astype(np.int64))

    @property
    def count(self) -> int:
        """The number of objects."""
        return int(self.objects.sum())


@dataclass(frozen=True)
class ChunkSizes:
    """One chunk's objects: those whole in it as a distribution, the rest as pieces."""

    whole: SizeCounts
    ids: np.ndarray  # int64, ascending: objects that may reach beyond the chunk
    pixels: np.ndarray  # int64: their pixels in this chunk


def chunk_sizes(block: np.ndarray, *, connected: bool) -> ChunkSizes:
    """Sort the objects of one chunk of a label map (0 is background) into whole and pieces.

    ``connected``: every object of the whole map is connected, so an id on none
    of the chunk's faces lies wholly inside it.
    """
    ids, pixels = id_counts(block)
    foreground = ids != 0
    ids, pixels = ids[foreground], pixels[foreground]
    inside = ~np.isin(ids, _face_ids(block), assume_unique=True) if connected else None
    if inside is None or not inside.any():
        return ChunkSizes(SizeCounts.of([]), ids, pixels)
    return ChunkSizes(SizeCounts.of(pixels[inside]), ids[~inside], pixels[~inside])


def component_sizes(
    labels: np.ndarray, count: int, foreground: np.ndarray | None = None
) -> ChunkSizes:
    """:func:`chunk_sizes` of a chunk's own connected components, numbered ``1..count``.

    The ids are known to lie in ``0..count``, so one count over that range does,
    however large the final ids will be; the pieces keep their local ids (map
    them to final ids before :func:`combine_sizes`). ``foreground``, the bool
    mask the chunk was labelled from (``labels != 0`` if not given), lets the
    count skip the background: a count of each background pixel into the same
    bin is the slow part of counting a whole chunk.
    """
    inside = labels[labels != 0 if foreground is None else foreground]
    pixels = np.bincount(inside.astype(np.intp, copy=False), minlength=count + 1)[1:]
    on_face = np.zeros(count + 1, dtype=bool)
    on_face[_face_ids(labels)] = True
    pieces = on_face[1:]
    ids = np.flatnonzero(pieces).astype(np.int64) + 1
    return ChunkSizes(SizeCounts.of(pixels[~pieces]), ids, pixels[pieces])


def combine_sizes(parts: Iterable[ChunkSizes]) -> SizeCounts:
    """The size distribution of the whole map from every chunk's :func:`chunk_sizes`."""
    parts = list(parts)
    ids = np.concatenate([np.zeros(0, np.int64), *(p.ids for p in parts)])
    pixels = np.concatenate([np.zeros(0, np.int64), *(p.pixels for p in parts)])
    _, where = np.unique(ids, return_inverse=True)
    pieced = np.bincount(where, weights=pixels.astype(np.float64)).astype(np.int64)
    return SizeCounts.merged([*(p.whole for p in parts), SizeCounts.of(pieced)])


def id_counts(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids in ``block`` (ascending, int64) and their pixel counts.

    A chunk's ids mostly lie in a narrow range (its own objects, and those it
    shares with chunks before it), so they are counted in that range, a linear
    pass; a sort only when the range is wide.
    """
    flat = block.ravel()
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    low, high = int(flat.min()), int(flat.max())
    if high - low > 4 * flat.size:
        ids, counts = np.unique(flat, return_counts=True)
        return ids.astype(np.int64), counts.astype(np.int64)
    counts = np.bincount(flat - flat.dtype.type(low), minlength=high - low + 1)
    present = np.flatnonzero(counts)
    return present + low, counts[present].astype(np.int64)


def _face_ids(block: np.ndarray) -> np.ndarray:
    """The ids on the chunk's outermost slices, every axis, both sides."""
    faces = [
        np.take(block, index, axis=axis).ravel()
        for axis in range(block.ndim)
        for index in (0, block.shape[axis] - 1)
    ]
    return np.unique(np.concatenate(faces)).astype(np.int64)
