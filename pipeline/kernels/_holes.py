"""Filling holes in the stitched objects: exact whatever the chunks, even for huge holes."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
from dask.array.overlap import overlap
from scipy import ndimage

from .._batches import compute_batched
from ..stitch import label
from ._base import Step, register
from ._postprocess import border_ids


@register
class FillHoles(Step):
    """Fill every hole in the objects.

    A hole is a background region (its pixels joined through faces) that does
    not reach the image border; the foreground afterwards equals
    ``scipy.ndimage.binary_fill_holes(labels > 0)`` exactly. A hole takes the
    id of the object around it; when several objects border it (an island in
    a lake, a gap between touching cells) it takes the largest of their ids.
    No objects are merged or renumbered. Holes are found with
    :func:`pipeline.label` on the whole background, so a hole cut by seams,
    or larger than a chunk, is filled the same.
    """

    name = "fill_holes"
    output = "labels"
    accepts = ("labels",)

    def finish(self, labels: da.Array, num: int) -> tuple[da.Array, int]:
        background, count = label(labels == 0, connectivity=1)
        if count == 0:
            return labels, num
        inside = np.ones(count + 1, dtype=bool)
        inside[0] = False
        inside[border_ids(background)] = False
        owner = _owners(labels, background, inside, count)
        table = dask.delayed(owner, pure=True)
        meta = np.empty((0,) * labels.ndim, dtype=labels.dtype)
        filled = da.map_blocks(_fill, labels, background, table, dtype=labels.dtype, meta=meta)
        return filled, num


def _owners(labels: da.Array, background: da.Array, inside: np.ndarray, count: int) -> np.ndarray:
    """For each background id that is a hole, the largest object id next to it (else 0)."""
    cross = ndimage.generate_binary_structure(labels.ndim, 1)
    depth = dict.fromkeys(range(labels.ndim), 1)
    padded_labels = overlap(labels, depth=depth, boundary=0)
    padded_background = overlap(background, depth=depth, boundary=0)
    task = dask.delayed(_chunk_owners, pure=True)
    parts = compute_batched(
        [
            task(a, b, inside, cross)
            for a, b in zip(
                padded_labels.to_delayed().ravel(),
                padded_background.to_delayed().ravel(),
                strict=True,
            )
        ]
    )
    high = np.zeros(count + 1, dtype=np.int64)
    for ids, highs in parts:
        np.maximum.at(high, ids, highs)
    return np.where(inside, high, 0)


def _chunk_owners(
    labels: np.ndarray, background: np.ndarray, inside: np.ndarray, cross: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per hole pixel in this chunk next to an object: the hole's id and the largest
    object id next to the pixel."""
    core = tuple(slice(1, -1) for _ in range(labels.ndim))
    ids = background[core]
    holes = inside[ids]
    if not holes.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    high = ndimage.maximum_filter(labels.astype(np.int64), footprint=cross, mode="constant")
    high = high[core][holes]
    ids = ids[holes].astype(np.int64)
    return ids[high > 0], high[high > 0]


def _fill(labels: np.ndarray, background: np.ndarray, owner: np.ndarray) -> np.ndarray:
    fill = owner[background]
    return np.where(fill > 0, fill, labels).astype(labels.dtype, copy=False)
