"""Post-processing of the stitched labels: work on whole objects, never on chunk pieces."""

from __future__ import annotations

from typing import Annotated

import dask
import dask.array as da
import numpy as np
from pydantic import Field

from .._batches import compute_batched
from ..measure._sizes import id_counts
from ._base import Step, register
from ._units import Physical, one


@register
class RemoveSmall(Step):
    """Remove objects smaller than ``min_size`` pixels, measured AFTER stitching.

    An object cut by chunk seams keeps its whole size: sizes are counted per
    chunk and summed per label over the whole image. The remaining objects are
    renumbered 1..n in their previous order.

    Parameters
    ----------
    min_size
        Smallest object kept, >= 1: pixels (voxels in 3D), or an area in 2D
        (``"20 um2"``) or a volume in 3D (``"500 um3"``), converted with the
        pixel area or voxel volume and rounded to the nearest whole pixel. An
        area on a 3D image, or a volume on a 2D one, is an error.
    """

    name = "remove_small"
    output = "labels"
    accepts = ("labels",)

    min_size: Annotated[float | str, Physical("size", ge=1, integer=True, per_axis=False)] = Field(
        description="smallest object kept: pixels, an area or a volume"
    )

    def finish(self, labels: da.Array, num: int) -> tuple[da.Array, int]:
        keep = object_sizes(labels, num) >= one(self, "min_size")
        return keep_only(labels, keep)


@register
class KeepLargest(Step):
    """Keep only the largest object (by pixels over the whole stitched map) as label 1.

    Ties go to the object with the smallest id. An image with no objects stays empty.
    """

    name = "keep_largest"
    output = "labels"
    accepts = ("labels",)

    def finish(self, labels: da.Array, num: int) -> tuple[da.Array, int]:
        sizes = object_sizes(labels, num)
        keep = np.zeros(num + 1, dtype=bool)
        if num:
            keep[1 + int(np.argmax(sizes[1:]))] = True
        return keep_only(labels, keep)


@register
class ClearBorder(Step):
    """Remove the objects that touch the image border, as
    ``skimage.segmentation.clear_border``; the rest are renumbered 1..n in order.

    After ``invert`` of an edge mask and ``label``, what remains are the regions
    enclosed by edges.
    """

    name = "clear_border"
    output = "labels"
    accepts = ("labels",)

    def finish(self, labels: da.Array, num: int) -> tuple[da.Array, int]:
        keep = np.ones(num + 1, dtype=bool)
        keep[border_ids(labels)] = False
        return keep_only(labels, keep)


def drop_invalid(labels: da.Array, num: int, valid: da.Array) -> tuple[da.Array, int]:
    """Labels with the pixels outside ``valid`` set to 0; objects left with no
    pixel are dropped and the rest renumbered 1..n in their previous order."""
    inside = da.where(valid, labels, 0).astype(labels.dtype)
    return keep_only(inside, object_sizes(inside, num) > 0)


def border_ids(labels: da.Array) -> np.ndarray:
    """The ids found on the image border (0 included when background touches it)."""
    unique = dask.delayed(np.unique, pure=True)
    parts = []
    for axis in range(labels.ndim):
        for index in (0, -1):
            cut: list[slice | int] = [slice(None)] * labels.ndim
            cut[axis] = index
            parts += [unique(block) for block in labels[tuple(cut)].to_delayed().ravel()]
    return np.unique(np.concatenate(compute_batched(parts)))


def classes_of_objects(labels: da.Array, classes: da.Array, num: int) -> np.ndarray:
    """The class of each object (index = label - 1), from a class map labelled by value."""
    pair = dask.delayed(_chunk_classes, pure=True)
    parts = compute_batched(
        [
            pair(a, b)
            for a, b in zip(
                labels.to_delayed().ravel(),
                classes.rechunk(labels.chunks).to_delayed().ravel(),
                strict=True,
            )
        ]
    )
    found = np.zeros(num + 1, dtype=np.uint8)
    for ids, values in parts:
        found[ids] = values
    return found[1:]


def _chunk_classes(labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids, first = np.unique(labels.ravel(), return_index=True)
    inside = ids != 0
    return ids[inside], classes.ravel()[first[inside]]


def keep_only(labels: da.Array, keep: np.ndarray) -> tuple[da.Array, int]:
    """Labels where ``keep[id]``, renumbered 1..n in their previous order; the rest 0."""
    keep = keep.copy()
    keep[0] = False
    table = dask.delayed((np.cumsum(keep) * keep).astype(labels.dtype), pure=True)
    meta = np.empty((0,) * labels.ndim, dtype=labels.dtype)
    kept = da.map_blocks(_lookup, labels, table, dtype=labels.dtype, meta=meta)
    return kept, int(keep.sum())


def object_sizes(labels: da.Array, num: int) -> np.ndarray:
    """Pixels per label (index = label id) over the whole image, from per-chunk counts."""
    count = dask.delayed(id_counts, pure=True)
    parts = compute_batched([count(block) for block in labels.to_delayed().ravel()])
    ids = np.concatenate([part[0] for part in parts])
    counts = np.concatenate([part[1] for part in parts])
    sizes: np.ndarray = np.bincount(ids, weights=counts, minlength=num + 1).astype(np.int64)
    return sizes


def _lookup(block: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[block]
