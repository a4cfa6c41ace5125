"""Annotations of a trained or seeded step, as annotated pixels of the image.

Inline pixel coordinates (points, polygons), a raster on the image's grid, or
a vector file all become the same thing: the annotated pixels' coordinates
(pixels x axes) and their classes. A vector file is read once the image is
opened (in the steps' ``on_grid``, with
:func:`pipeline.io._vectors.read_annotations`), and its pixels are kept on the
client: only a fit or a seed selection uses them, so the step pickled into
the tasks sent to workers carries its parameters, never its annotations.
"""

from __future__ import annotations

from typing import Any, Self

import dask
import numpy as np
from pydantic import PrivateAttr
from skimage.draw import polygon as polygon_pixels

from .._batches import compute_batched
from ..errors import InputValueError
from ._base import Grid, Step

AXES = {2: "yx", 3: "zyx"}


class KeptPixels:
    """Pixels annotated from a vector file (coordinates, classes), kept on the client.

    Pickled as empty: a step is pickled into every task sent to the workers,
    which need its parameters only.
    """

    __slots__ = ("classes", "coords")

    def __init__(self, coords: np.ndarray | None = None, classes: np.ndarray | None = None):
        self.coords = coords
        self.classes = classes

    def __reduce__(self) -> tuple[type[KeptPixels], tuple[()]]:
        return KeptPixels, ()


class VectorAnnotated(Step):
    """Base of the steps whose annotations may be a vector file, read on the image's grid."""

    _pixels: KeptPixels = PrivateAttr(default_factory=KeptPixels)

    def _read_vectors(
        self, grid: Grid, path: str, geometries: Any, class_field: str | None
    ) -> Self:
        """A copy of this step holding the pixels the features of ``path`` annotate."""
        from ..io._vectors import read_annotations

        coords, classes = read_annotations(
            path,
            grid.shape,
            crs=grid.crs,
            transform=grid.transform,
            geometries=geometries,
            class_field=class_field,
        )
        step = self.model_copy()
        step._pixels = KeptPixels(coords, classes)
        return step

    def _vector_pixels(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        """The pixels read from ``path`` by :meth:`on_grid`."""
        coords, classes = self._pixels.coords, self._pixels.classes
        if coords is None or classes is None:
            raise InputValueError(
                f"{self.name}: {path} is read on the image's grid: call "
                "step.on_grid(grid) with the image's Grid first (a workflow run does)"
            )
        return coords, classes


def inline_points(points: dict[int, list[list[int]]], shape: tuple[int, ...]) -> tuple[Any, Any]:
    """The pixels of ``{class_id: [[y, x], ...]}`` pixel coordinates, checked on ``shape``."""
    axes = list(AXES.get(len(shape), "?" * len(shape)))
    coords, classes = [], []
    for class_id, items in points.items():
        for point in items:
            if len(point) != len(shape):
                raise InputValueError(
                    f"pixel_classifier: point {point} of class {class_id} has {len(point)} "
                    f"coordinates but the image is {len(shape)}D (shape {shape}); points are "
                    f"{axes} pixel coordinates"
                )
            if not all(0 <= c < s for c, s in zip(point, shape, strict=True)):
                raise InputValueError(
                    f"pixel_classifier: point {point} of class {class_id} is outside the "
                    f"image of shape {shape}; points are {axes} pixel coordinates from 0"
                )
            coords.append(point)
            classes.append(class_id)
    return np.asarray(coords, dtype=np.int64), np.asarray(classes, dtype=np.uint8)


def inline_polygons(
    polygons: dict[int, list[list[list[float]]]], shape: tuple[int, ...]
) -> tuple[Any, Any]:
    """The pixels whose centre is inside each ``[y, x]`` ring (``skimage.draw.polygon``)."""
    if len(shape) != 2:
        raise InputValueError(
            f"pixel_classifier: polygons are 2D, the image is {len(shape)}D (shape {shape}); "
            "annotate a volume with points or a labels raster"
        )
    coords, classes = [], []
    for class_id, rings in polygons.items():
        for ring in rings:
            vertices = np.asarray(ring, dtype=np.float64)
            if np.any(vertices < 0) or np.any(vertices > np.asarray(shape) - 1):
                raise InputValueError(
                    f"pixel_classifier: polygon {ring} of class {class_id} reaches outside the "
                    f"image of shape {shape}; vertices are [y, x] pixel coordinates from 0"
                )
            rows, cols = polygon_pixels(vertices[:, 0], vertices[:, 1], shape=shape)
            if rows.size == 0:
                raise InputValueError(
                    f"pixel_classifier: polygon {ring} of class {class_id} covers no pixel centre"
                )
            coords.append(np.stack([rows, cols], axis=1))
            classes.append(np.full(rows.size, class_id, dtype=np.uint8))
    return np.concatenate(coords).astype(np.int64), np.concatenate(classes)


def raster_pixels(path: str, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """The annotated pixels of a label raster, read chunk by chunk (one pass)."""
    from ..io import open_image

    image = open_image(path)
    labels = image.data
    if image.axes.startswith("c"):
        if labels.shape[0] != 1:
            raise InputValueError(
                f"{path}: an annotation raster has one band of class ids; it has {labels.shape[0]}"
            )
        labels = labels[0]
    if tuple(labels.shape) != shape:
        raise InputValueError(
            f"{path}: the annotation raster is {tuple(labels.shape)} pixels but the image is "
            f"{shape}; draw the annotations on the image's own grid (same size, same level)"
        )
    if labels.dtype.kind not in "iub":
        raise InputValueError(
            f"{path}: an annotation raster holds integer class ids; it is {labels.dtype}"
        )
    offsets = [np.cumsum((0, *sizes[:-1])) for sizes in labels.chunks]
    find = dask.delayed(_nonzero, pure=True)
    parts = [
        find(block, tuple(int(o[i]) for o, i in zip(offsets, index, strict=True)), shape)
        for index, block in np.ndenumerate(labels.to_delayed())
    ]
    found = compute_batched(parts)
    flat = np.concatenate([f for f, _ in found])
    values = np.concatenate([v for _, v in found])
    bad = np.unique(values[(values < 1) | (values > 255)])
    if bad.size:
        raise InputValueError(
            f"{path}: class ids are 1 to 255 (0 is not annotated); the raster holds "
            f"{bad[:10].tolist()}"
        )
    present = np.unique(values)
    if present.size < 2:
        raise InputValueError(
            f"{path}: a classifier needs annotations of at least 2 classes; the raster holds "
            f"{present.tolist() or 'none'}"
        )
    coords = np.stack(np.unravel_index(flat, shape), axis=1).astype(np.int64)
    return coords, values.astype(np.uint8)


def _nonzero(
    block: np.ndarray, offset: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices in the whole image and values of the non-zero pixels of ``block``."""
    local = np.nonzero(block)
    where = tuple(index + start for index, start in zip(local, offset, strict=True))
    return np.ravel_multi_index(where, shape).astype(np.int64), block[local].astype(np.int64)


def merge_pixels(
    coords: np.ndarray, classes: np.ndarray, shape: tuple[int, ...]
) -> tuple[Any, Any]:
    """One entry per annotated pixel, in pixel order; a pixel given two classes is refused."""
    flat = np.ravel_multi_index(tuple(coords.T), shape)
    order = np.lexsort((classes, flat))
    flat, classes, coords = flat[order], classes[order], coords[order]
    first = np.ones(flat.size, dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    clash = ~first & (classes != np.roll(classes, 1))
    if np.any(clash):
        pixel = coords[np.flatnonzero(clash)[0]].tolist()
        raise InputValueError(
            f"pixel_classifier: {int(clash.sum())} pixels are annotated with two classes, "
            f"e.g. pixel {pixel}; give each pixel one class"
        )
    return coords[first], classes[first]
