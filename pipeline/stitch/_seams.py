"""Equivalences across chunk seams, from the chunks' faces only.

Two chunks touch when their grid positions differ by ``d`` in ``{-1, 0, 1}^ndim``.
Only a chunk's forward neighbours are visited (``d`` whose first non-zero entry
is +1), so every touching pair is looked at once. A pixel of chunk A touches a
pixel of chunk B = A + d through neighbour offset ``o`` when ``o`` crosses exactly
the axes where ``d`` is non-zero::

    axis with d = +1:   A[..., -1]  |  B[..., 0]     (A's last slice, B's first)
    axis with d =  0:   shared extent, shifted by o within the slab
    d = (1, 1) in 2D:   A[-1, -1] touches B[0, 0] only: a corner contact

so a face seam, an edge seam and a corner seam are the same computation on
slabs of different dimension.
"""

from __future__ import annotations

import itertools

import numpy as np

from ._local import ChunkSummary, Face
from ._neighbourhood import Neighbourhood

Direction = tuple[int, ...]


def seam_directions(nbh: Neighbourhood) -> tuple[tuple[Direction, tuple[Direction, ...]], ...]:
    """Forward grid directions with the neighbour offsets that cross into them.

    A direction with no crossing offset (a diagonal one under connectivity 1) is
    left out, so its chunks are never paired.
    """
    found = []
    for d in itertools.product((-1, 0, 1), repeat=nbh.ndim):
        nonzero = [x for x in d if x]
        if not nonzero or nonzero[0] != 1:
            continue
        crossing = tuple(
            o for o in nbh.offsets if all(ok == dk for ok, dk in zip(o, d, strict=True) if dk)
        )
        if crossing:
            found.append((d, crossing))
    return tuple(found)


def _slab(faces: dict[Face, np.ndarray], d: Direction, forward: bool) -> np.ndarray:
    """The part of a chunk that touches its neighbour at ``+d`` (or ``-d``)."""
    sides = {axis: int((step > 0) == forward) for axis, step in enumerate(d) if step}
    first = min(sides)
    slab = faces[(first, sides[first])]
    index = [slice(None)] * len(d)
    for axis, side in sides.items():
        index[axis] = slice(0, 1) if side == 0 else slice(-1, None)
    return slab[tuple(index)]


def seam_pairs(
    a: ChunkSummary,
    b: ChunkSummary,
    d: Direction,
    offsets: tuple[Direction, ...],
) -> np.ndarray:
    """Unique ``(label in a, label in b)`` pairs that touch, chunk b being at ``a + d``."""
    a_labels, b_labels = _slab(a.labels, d, True), _slab(b.labels, d, False)
    a_values = b_values = None
    if a.values is not None and b.values is not None:
        a_values, b_values = _slab(a.values, d, True), _slab(b.values, d, False)
    keys = []
    for offset in offsets:
        a_cut, b_cut = [], []
        for axis, (step, shift) in enumerate(zip(d, offset, strict=True)):
            if step:
                a_cut.append(slice(None))
                b_cut.append(slice(None))
                continue
            n = a_labels.shape[axis]
            a_cut.append(slice(max(0, -shift), n - max(0, shift)))
            b_cut.append(slice(max(0, shift), n - max(0, -shift)))
        la = a_labels[tuple(a_cut)].ravel().astype(np.uint64)
        lb = b_labels[tuple(b_cut)].ravel().astype(np.uint64)
        touch = (la != 0) & (lb != 0)
        if a_values is not None and b_values is not None:
            touch &= a_values[tuple(a_cut)].ravel() == b_values[tuple(b_cut)].ravel()
        keys.append((la[touch] << np.uint64(32)) | lb[touch])
    unique = np.unique(np.concatenate(keys))
    return np.stack([unique >> np.uint64(32), unique & np.uint64(0xFFFFFFFF)], axis=1)


def chunk_equivalences(
    summary: ChunkSummary,
    neighbours: list[ChunkSummary],
    steps: list[Direction],
    crossings: dict[Direction, tuple[Direction, ...]],
) -> tuple[int, list[tuple[Direction, np.ndarray]]]:
    """A chunk's count and its seam pairs with each forward neighbour (a dask task).

    ``neighbours[k]`` is the chunk at grid step ``steps[k]`` from this one.
    """
    pairs = []
    for d, other in zip(steps, neighbours, strict=True):
        found = seam_pairs(summary, other, d, crossings[d])
        if len(found):
            pairs.append((d, found))
    return summary.count, pairs
