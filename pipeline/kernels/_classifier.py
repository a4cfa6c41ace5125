"""Pixel classification: a random forest on multi-scale features, trained on sparse annotations.

Like ilastik's pixel classification: every pixel is described by
``skimage.feature.multiscale_basic_features`` (Gaussian-smoothed intensity,
Sobel edges and Hessian eigenvalues at sigmas ``sigma_min``, ``2 sigma_min``,
... up to ``sigma_max``, for every band); a random forest learns the classes
of the annotated pixels and predicts a class for every pixel.

Halo geometry (one spatial axis, sigma_max = s)::

    |<------------- h ------------->|<------- chunk ------->|<------ h ------>|
    [ int(4 s + 0.5)      | 2       |    features exact     |     context     ]
      Gaussian reach        two np.gradient steps (Hessian; Sobel needs 1)

    h = int(4 s + 0.5) + 2 with texture, + 1 with edges only, + 0 with
    intensity only (the reach of the largest of the sigmas scikit-image uses).

scikit-image smooths with scipy's Gaussian truncated at 4 sigma
(``mode="nearest"``), takes Sobel with ``mode="reflect"`` and the Hessian
with ``np.gradient`` (one-sided differences at the array border). Each of
those only sees ``h`` pixels around a pixel away from the array border, so
features computed on a chunk plus its halo equal, bit for bit, the features of
the image padded by ``h`` pixels by reflection (``np.pad(mode="symmetric")``,
what the fused map does at the image border). That padded-image result is
this step's whole-image definition (:func:`pixel_features`): it equals
scikit-image on the unpadded image except within ``h`` pixels of the image
border, where scikit-image's own border handling differs.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator
from skimage.draw import polygon as polygon_pixels
from skimage.feature import multiscale_basic_features

from .._batches import compute_batched
from ..errors import InputValueError
from ._base import Step, register, resolve_path

TRUNCATE = 4.0  # scipy's gaussian_filter default, which scikit-image keeps
AXES = {2: "yx", 3: "zyx"}


@register
class PixelClassifier(Step):
    """Classes from a random forest trained on sparse annotations (ilastik-like).

    Annotations, exactly one of:

    - ``labels``: path of a raster on the image's grid holding class ids 1 to
      255 on the annotated pixels and 0 elsewhere;
    - ``points``: ``{class_id: [[y, x], ...]}`` (``[z, y, x]`` in 3D), pixel
      coordinates (row, column from 0);
    - ``polygons``: ``{class_id: [[[y, x], ...], ...]}`` in 2D pixel
      coordinates, each filled with ``skimage.draw.polygon`` (pixels whose
      centre is inside).

    ``fit`` computes the features only where there are annotations: per chunk
    holding annotated pixels, on the box around them plus the halo; the
    features of the annotated pixels with data (``valid``, no NaN band) are
    gathered (pixels x features float32; features = bands x sigmas x
    (intensity + edges + ndim texture)), put in pixel order, so the training
    set does not depend on the chunking, and train
    ``sklearn.ensemble.RandomForestClassifier(n_estimators=trees,
    max_depth=max_depth, random_state=seed, n_jobs=1)``, the state.

    ``apply`` computes the features of the padded block and predicts the
    pixels at least the halo away from the block's edge (the others, which
    the map trims, get 0); a pixel with a NaN band gets 0.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> image = np.zeros((1, 12, 12), dtype=np.uint8)
    >>> image[:, :, 6:] = 200
    >>> points = {1: [[1, 1], [5, 2], [9, 3]], 2: [[1, 10], [5, 9], [9, 8]]}
    >>> step = PixelClassifier(points=points, sigma_max=1, trees=10)
    >>> step.halo(2)
    (6, 6)
    >>> forest = step.fit(da.from_array(image, chunks=(1, 6, 6)), None)
    >>> padded = np.pad(image, ((0, 0), (6, 6), (6, 6)), mode="symmetric")
    >>> step.apply(padded, forest)[6:-6, 6:-6][5]  # the halo was cut off
    array([1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2], dtype=uint8)
    """

    name = "pixel_classifier"
    output = "classes"

    labels: str | None = Field(default=None, description="annotation raster on the image grid")
    points: dict[int, list[list[int]]] | None = Field(
        default=None, description="{class_id: [[y, x], ...]} pixel coordinates"
    )
    polygons: dict[int, list[list[list[float]]]] | None = Field(
        default=None, description="{class_id: [[[y, x], ...], ...]} 2D pixel coordinates"
    )
    trees: int = Field(default=50, ge=1, description="trees in the forest")
    max_depth: int | None = Field(default=None, ge=1, description="depth limit of the trees")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="seed of the forest")
    sigma_min: float = Field(default=1.0, gt=0, description="smallest feature scale, pixels")
    sigma_max: float = Field(default=16.0, gt=0, description="largest feature scale, pixels")
    intensity: bool = True
    edges: bool = True
    texture: bool = True

    @field_validator("labels")
    @classmethod
    def _from_the_workflow_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else str(resolve_path(value, info))

    @field_validator("points", "polygons")
    @classmethod
    def _class_ids_fit_in_uint8(cls, value: dict[int, Any] | None) -> dict[int, Any] | None:
        for class_id in value or {}:
            if not 1 <= class_id <= 255:
                raise ValueError(
                    f"class id {class_id} is out of range; class ids are 1 to 255 (0 is no class)"
                )
        return value

    @field_validator("points")
    @classmethod
    def _points_have_one_dimension(
        cls, value: dict[int, list[list[int]]] | None
    ) -> dict[int, list[list[int]]] | None:
        lengths = {len(point) for points in (value or {}).values() for point in points}
        if not lengths <= {2, 3} or len(lengths) > 1:
            raise ValueError(
                "points are [y, x] in 2D or [z, y, x] in 3D, all of one kind; "
                f"got points of {sorted(lengths)} coordinates"
            )
        return value

    @field_validator("polygons")
    @classmethod
    def _polygons_are_2d_rings(
        cls, value: dict[int, list[list[list[float]]]] | None
    ) -> dict[int, list[list[list[float]]]] | None:
        for class_id, rings in (value or {}).items():
            for ring in rings:
                if len(ring) < 3 or any(len(vertex) != 2 for vertex in ring):
                    raise ValueError(
                        f"polygon {ring} of class {class_id}: a polygon is at least 3 "
                        "[y, x] vertices"
                    )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PixelClassifier:
        given = [k for k in ("labels", "points", "polygons") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of labels (a raster path), points or polygons; "
                f"got {', '.join(given) or 'none'}"
            )
        sparse = self.points if self.points is not None else self.polygons
        if sparse is not None:
            annotated = sorted(c for c, items in sparse.items() if items)
            if len(annotated) < 2:
                raise ValueError(
                    f"a classifier needs annotations of at least 2 classes; got {annotated}"
                )
        if self.sigma_max < self.sigma_min:
            raise ValueError(
                f"sigma_max {self.sigma_max} is smaller than sigma_min {self.sigma_min}"
            )
        if not (self.intensity or self.edges or self.texture):
            raise ValueError("turn on at least one of intensity, edges, texture")
        return self

    def describe(self) -> str:
        """The parameters, with the annotations summed up rather than listed."""
        params = self.model_dump(exclude={"labels", "points", "polygons"})
        if self.labels is not None:
            note = f"labels={self.labels!r}"
        elif self.points is not None:
            note = "points={" + ", ".join(f"{c}: {len(p)}" for c, p in self.points.items()) + "}"
        else:
            shapes = self.polygons or {}
            note = "polygons={" + ", ".join(f"{c}: {len(p)}" for c, p in shapes.items()) + "}"
        return f"{self.name}({note}, " + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"

    def halo(self, ndim: int) -> tuple[int, ...]:
        reach = max(int(TRUNCATE * float(sigma) + 0.5) for sigma in self.sigmas())
        derivative = 2 if self.texture else 1 if self.edges else 0
        return (reach + derivative,) * ndim

    def sigmas(self) -> np.ndarray:
        """The feature scales, as ``multiscale_basic_features`` picks them."""
        count = int(np.log2(self.sigma_max) - np.log2(self.sigma_min) + 1)
        return np.logspace(
            np.log2(self.sigma_min), np.log2(self.sigma_max), num=count, base=2, endpoint=True
        )

    def features(self, block: np.ndarray) -> np.ndarray:
        """Features of ``block`` (band axis first): float32, spatial shape x features."""
        return np.asarray(
            multiscale_basic_features(
                block,
                intensity=self.intensity,
                edges=self.edges,
                texture=self.texture,
                sigma_min=self.sigma_min,
                sigma_max=self.sigma_max,
                workers=1,
                channel_axis=0,
            )
        )

    def fit(self, data: da.Array, valid: da.Array | None) -> Any:
        shape = tuple(int(size) for size in data.shape[1:])
        coords, classes = self._annotations(shape)
        self._check_halo(shape)
        _, values, targets = _training_set(self, data, valid, coords, classes)
        found = np.unique(targets)
        if found.size < 2:
            raise InputValueError(
                f"{self.name}: annotated pixels with data hold class {found.tolist()} only; "
                "annotate at least 2 classes where the image has data"
            )
        from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

        forest = RandomForestClassifier(
            n_estimators=self.trees, max_depth=self.max_depth, random_state=self.seed, n_jobs=1
        )
        return forest.fit(values, targets)

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        halo = self.halo(block.ndim - 1)
        inner = tuple(
            slice(h, max(h, size - h)) for h, size in zip(halo, block.shape[1:], strict=True)
        )
        features = self.features(block)[inner]
        classes = np.zeros(block.shape[1:], dtype=np.uint8)
        if features.size:
            predicted = state.predict(features.reshape(-1, features.shape[-1]))
            predicted = predicted.astype(np.uint8).reshape(features.shape[:-1])
            predicted[np.isnan(block[(slice(None), *inner)]).any(axis=0)] = 0
            classes[inner] = predicted
        return classes

    def _check_halo(self, shape: tuple[int, ...]) -> None:
        halo = self.halo(len(shape))
        names = AXES.get(len(shape), "?" * len(shape))
        for axis, size, need in zip(names, shape, halo, strict=True):
            if need > size:
                raise InputValueError(
                    f"{self.describe()} needs a halo of {need} pixels, more than the image's "
                    f"{size} pixels along {axis}; lower sigma_max (the halo is about "
                    "4 * sigma_max)"
                )

    def _annotations(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Annotated pixels (coordinates, pixels x axes) and their classes, in pixel order."""
        if self.points is not None:
            coords, classes = _points(self.points, shape)
        elif self.polygons is not None:
            coords, classes = _polygons(self.polygons, shape)
        elif self.labels is not None:
            coords, classes = _raster(self.labels, shape)
        else:  # the validator makes this unreachable
            raise InputValueError(f"{self.name}: give labels, points or polygons")
        return _merge(coords, classes, shape)


def pixel_features(image: np.ndarray, step: PixelClassifier) -> np.ndarray:
    """The features of a whole image (band axis first) as the chunked step computes them.

    The image is padded by the step's halo by reflection, as the fused map
    pads the image border, then cropped back: spatial shape x features, float32.
    """
    halo = step.halo(image.ndim - 1)
    padded = np.pad(image, [(0, 0), *((h, h) for h in halo)], mode="symmetric")
    return step.features(padded)[
        tuple(slice(h, h + size) for h, size in zip(halo, image.shape[1:], strict=True))
    ]


def _points(points: dict[int, list[list[int]]], shape: tuple[int, ...]) -> tuple[Any, Any]:
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


def _polygons(
    polygons: dict[int, list[list[list[float]]]], shape: tuple[int, ...]
) -> tuple[Any, Any]:
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


def _raster(path: str, shape: tuple[int, ...]) -> tuple[Any, Any]:
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


def _merge(coords: np.ndarray, classes: np.ndarray, shape: tuple[int, ...]) -> tuple[Any, Any]:
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


def _training_set(
    step: PixelClassifier,
    data: da.Array,
    valid: da.Array | None,
    coords: np.ndarray,
    classes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features and classes of the annotated pixels with data, in pixel order.

    Per chunk holding annotations, the features are computed on the box
    around its annotated pixels plus the halo, cut from the image padded by
    reflection, so they equal :func:`pixel_features` of the whole image.
    """
    shape = tuple(int(size) for size in data.shape[1:])
    halo = step.halo(len(shape))
    padded = da.pad(data, [(0, 0), *((h, h) for h in halo)], mode="symmetric")
    chunk_of = [
        np.searchsorted(np.cumsum(sizes), coords[:, axis], side="right")
        for axis, sizes in enumerate(data.chunks[1:])
    ]
    key = np.ravel_multi_index(tuple(chunk_of), [len(sizes) for sizes in data.chunks[1:]])
    flat = np.ravel_multi_index(tuple(coords.T), shape)
    samples = dask.delayed(_samples, pure=True)
    parts = []
    for chunk in np.unique(key):
        mine = key == chunk
        inside = coords[mine]
        low, high = inside.min(axis=0), inside.max(axis=0) + 1
        box = tuple(slice(int(lo), int(hi)) for lo, hi in zip(low, high, strict=True))
        context = tuple(
            slice(int(lo), int(hi) + 2 * h) for lo, hi, h in zip(low, high, halo, strict=True)
        )
        region = padded[(slice(None), *context)]
        mask = None if valid is None else valid[box]
        parts.append(samples(step, region, mask, inside - low, classes[mine], flat[mine]))
    gathered = compute_batched(parts)
    where = np.concatenate([g[0] for g in gathered])
    order = np.argsort(where, kind="stable")
    values = np.concatenate([g[1] for g in gathered])[order]
    targets = np.concatenate([g[2] for g in gathered])[order]
    return where[order], values, targets


def _samples(
    step: PixelClassifier,
    region: np.ndarray,
    valid: np.ndarray | None,
    local: np.ndarray,
    classes: np.ndarray,
    flat: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of the annotated pixels ``local`` (coordinates in the box) of ``region``
    (the box plus the halo); those outside ``valid`` or with a NaN band are dropped."""
    halo = step.halo(region.ndim - 1)
    at = tuple(local[:, axis] + h for axis, h in enumerate(halo))
    pixels: Any = (slice(None), *at)
    keep = ~np.isnan(region[pixels]).any(axis=0)
    if valid is not None:
        keep &= np.asarray(valid, dtype=bool)[tuple(local.T)]
    values = step.features(region)[at]
    return flat[keep], values[keep], classes[keep]
