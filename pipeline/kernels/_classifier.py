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
border, where scikit-image's own border handling differs, and within ``h``
pixels of a pixel without data (outside the image's ``valid``, or with a NaN
band): there each Gaussian leaves those pixels out (a normalised convolution,
:mod:`pipeline.kernels._features`), so a scene's fill does not spread into
the features, and the classes, of the pixels next to it. The step gets the
block's ``valid`` with the same halo (``uses_valid``), so this too is exact
for any chunking.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import dask
import dask.array as da
import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator
from skimage.feature import multiscale_basic_features

from .._batches import compute_batched
from ..errors import InputValueError
from ._annotations import (
    AXES,
    VectorAnnotated,
    inline_points,
    inline_polygons,
    merge_pixels,
    raster_pixels,
)
from ._base import Grid, Step, register, resolve_path
from ._features import TRUNCATE, masked_features, with_data
from ._units import Physical, one


@register
class PixelClassifier(VectorAnnotated):
    """Classes from a random forest trained on sparse annotations (ilastik-like).

    Annotations, exactly one of:

    - ``labels``: path of a raster on the image's grid holding class ids 1 to
      255 on the annotated pixels and 0 elsewhere;
    - ``points``: ``{class_id: [[y, x], ...]}`` (``[z, y, x]`` in 3D), pixel
      coordinates (row, column from 0);
    - ``polygons``: ``{class_id: [[[y, x], ...], ...]}`` in 2D pixel
      coordinates, each filled with ``skimage.draw.polygon`` (pixels whose
      centre is inside);
    - ``points`` or ``polygons`` as the path of a vector file (GeoPackage,
      GeoJSON, Shapefile, GeoParquet) of point or polygon features, with
      ``class_field`` naming their integer class attribute: read once the
      image is opened (:meth:`on_grid`), reprojected to its CRS, a polygon
      annotating the pixels whose centre is inside it, a point the pixel that
      holds it (see :func:`pipeline.io._vectors.read_annotations`).

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
    the map trims, get 0); a pixel without data (outside ``valid``, or with a
    NaN band) gets 0, and is left out of the features of the others.

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
    uses_valid = True

    labels: str | None = Field(default=None, description="annotation raster on the image grid")
    points: dict[int, list[list[int]]] | str | None = Field(
        default=None,
        description="{class_id: [[y, x], ...]} pixel coordinates, or a vector file of points",
    )
    polygons: dict[int, list[list[list[float]]]] | str | None = Field(
        default=None,
        description="{class_id: [[[y, x], ...], ...]} 2D pixel coordinates, or a vector file",
    )
    class_field: str | None = Field(
        default=None, description="integer class attribute of a vector file's features"
    )
    trees: int = Field(default=50, ge=1, description="trees in the forest")
    max_depth: int | None = Field(default=None, ge=1, description="depth limit of the trees")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="seed of the forest")
    sigma_min: Annotated[float | str, Physical("length", gt=0, per_axis=False)] = Field(
        default=1.0, description="smallest feature scale: pixels or a length"
    )
    sigma_max: Annotated[float | str, Physical("length", gt=0, per_axis=False)] = Field(
        default=16.0, description="largest feature scale: pixels or a length"
    )
    intensity: bool = True
    edges: bool = True
    texture: bool = True

    @field_validator("labels", "points", "polygons")
    @classmethod
    def _from_the_workflow_folder(cls, value: Any, info: ValidationInfo) -> Any:
        return str(resolve_path(value, info)) if isinstance(value, str) else value

    @field_validator("points", "polygons")
    @classmethod
    def _class_ids_fit_in_uint8(cls, value: Any) -> Any:
        for class_id in value if isinstance(value, dict) else {}:
            if not 1 <= class_id <= 255:
                raise ValueError(
                    f"class id {class_id} is out of range; class ids are 1 to 255 (0 is no class)"
                )
        return value

    @field_validator("points")
    @classmethod
    def _points_have_one_dimension(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        lengths = {len(point) for points in value.values() for point in points}
        if not lengths <= {2, 3} or len(lengths) > 1:
            raise ValueError(
                "points are [y, x] in 2D or [z, y, x] in 3D, all of one kind; "
                f"got points of {sorted(lengths)} coordinates"
            )
        return value

    @field_validator("polygons")
    @classmethod
    def _polygons_are_2d_rings(cls, value: Any) -> Any:
        for class_id, rings in (value if isinstance(value, dict) else {}).items():
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
        if (self.vector_file() is None) != (self.class_field is None):
            raise ValueError(
                "class_field names the class attribute of a vector file of points or "
                "polygons: give both (e.g. polygons: training.gpkg, class_field: class)"
                if self.class_field is None
                else f"class_field {self.class_field!r} is for points or polygons given as a "
                "vector file; remove it"
            )
        if isinstance(sparse, dict):
            annotated = sorted(c for c, items in sparse.items() if items)
            if len(annotated) < 2:
                raise ValueError(
                    f"a classifier needs annotations of at least 2 classes; got {annotated}"
                )
        low, high = self.sigma_min, self.sigma_max
        if not isinstance(low, str) and not isinstance(high, str) and high < low:
            raise ValueError(
                f"sigma_max {self.sigma_max} is smaller than sigma_min {self.sigma_min}"
            )
        if not (self.intensity or self.edges or self.texture):
            raise ValueError("turn on at least one of intensity, edges, texture")
        return self

    def describe(self) -> str:
        """The parameters, with the annotations summed up rather than listed."""
        params = self.model_dump(exclude={"labels", "points", "polygons", "class_field"})
        kind, given = next(
            (k, v) for k in ("labels", "points", "polygons") if (v := getattr(self, k)) is not None
        )
        if isinstance(given, dict):
            note = f"{kind}={{" + ", ".join(f"{c}: {len(p)}" for c, p in given.items()) + "}"
        else:
            note = f"{kind}={given!r}"
            note += f", class_field={self.class_field!r}" if self.class_field else ""
        return f"{self.name}({note}, " + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"

    def halo(self, ndim: int) -> tuple[int, ...]:
        reach = max(int(TRUNCATE * float(sigma) + 0.5) for sigma in self.sigmas())
        derivative = 2 if self.texture else 1 if self.edges else 0
        return (reach + derivative,) * ndim

    def vector_file(self) -> tuple[str, str] | None:
        """``("points" or "polygons", path)`` when the annotations are a vector file."""
        for kind in ("points", "polygons"):
            if isinstance(given := getattr(self, kind), str):
                return kind, given
        return None

    def on_grid(self, grid: Grid) -> Step:
        """The step in pixels of ``grid``; a vector file of annotations is read there
        (its errors are raised now, before any work on the image)."""
        step = super().on_grid(grid)
        found = self.vector_file()
        if found is None:
            return step
        kind, path = found
        read = cast(PixelClassifier, step)._read_vectors(grid, path, kind, self.class_field)
        present = np.unique(read._vector_pixels(path)[1]).tolist()
        if len(present) < 2:
            raise InputValueError(
                f"{path}: a classifier needs annotations of at least 2 classes; field "
                f"{self.class_field!r} holds {present}"
            )
        return read

    def sigmas(self) -> np.ndarray:
        """The feature scales, as ``multiscale_basic_features`` picks them."""
        low, high = one(self, "sigma_min"), one(self, "sigma_max")
        count = int(np.log2(high) - np.log2(low) + 1)
        return np.logspace(np.log2(low), np.log2(high), num=count, base=2, endpoint=True)

    def features(self, block: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Features of ``block`` (band axis first): float32, spatial shape x features.

        Pixels outside ``valid`` (spatial axes) or with a NaN band are left out of
        the Gaussians of the others (:func:`~pipeline.kernels._features.masked_features`);
        with none, these are ``multiscale_basic_features``.
        """
        usable = with_data(block, valid)
        if not usable.all():
            return masked_features(
                block,
                usable,
                self.sigmas(),
                intensity=self.intensity,
                edges=self.edges,
                texture=self.texture,
            )
        return np.asarray(
            multiscale_basic_features(
                block,
                intensity=self.intensity,
                edges=self.edges,
                texture=self.texture,
                sigma_min=one(self, "sigma_min"),
                sigma_max=one(self, "sigma_max"),
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

    def apply(self, block: np.ndarray, state: Any, valid: np.ndarray | None = None) -> np.ndarray:
        halo = self.halo(block.ndim - 1)
        inner = tuple(
            slice(h, max(h, size - h)) for h, size in zip(halo, block.shape[1:], strict=True)
        )
        usable = with_data(block, valid)
        features = self.features(block, usable)[inner]
        classes = np.zeros(block.shape[1:], dtype=np.uint8)
        if features.size:
            predicted = state.predict(features.reshape(-1, features.shape[-1]))
            predicted = predicted.astype(np.uint8).reshape(features.shape[:-1])
            predicted[~usable[inner]] = 0
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
        if isinstance(self.points, str) or isinstance(self.polygons, str):
            coords, classes = self._vector_pixels(str(self.points or self.polygons))
        elif self.points is not None:
            coords, classes = inline_points(self.points, shape)
        elif self.polygons is not None:
            coords, classes = inline_polygons(self.polygons, shape)
        elif self.labels is not None:
            coords, classes = raster_pixels(self.labels, shape)
        else:  # the validator makes this unreachable
            raise InputValueError(f"{self.name}: give labels, points or polygons")
        return merge_pixels(coords, classes, shape)


def pixel_features(
    image: np.ndarray, step: PixelClassifier, valid: np.ndarray | None = None
) -> np.ndarray:
    """The features of a whole image (band axis first) as the chunked step computes them.

    The image (and ``valid``, its pixels with data) is padded by the step's
    halo by reflection, as the fused map pads the image border, then cropped
    back: spatial shape x features, float32.
    """
    halo = step.halo(image.ndim - 1)
    padded = np.pad(image, [(0, 0), *((h, h) for h in halo)], mode="symmetric")
    mask = None if valid is None else np.pad(valid, [(h, h) for h in halo], mode="symmetric")
    return step.features(padded, mask)[
        tuple(slice(h, h + size) for h, size in zip(halo, image.shape[1:], strict=True))
    ]


def _training_set(
    step: PixelClassifier,
    data: da.Array,
    valid: da.Array | None,
    coords: np.ndarray,
    classes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features and classes of the annotated pixels with data, in pixel order.

    Per chunk holding annotations, the features are computed on the box
    around its annotated pixels plus the halo, cut from the image (and
    ``valid``) padded by reflection, so they equal :func:`pixel_features` of
    the whole image.
    """
    shape = tuple(int(size) for size in data.shape[1:])
    halo = step.halo(len(shape))
    padded = da.pad(data, [(0, 0), *((h, h) for h in halo)], mode="symmetric")
    mask = None if valid is None else da.pad(valid, [(h, h) for h in halo], mode="symmetric")
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
        context = tuple(
            slice(int(lo), int(hi) + 2 * h) for lo, hi, h in zip(low, high, halo, strict=True)
        )
        region = padded[(slice(None), *context)]
        around = None if mask is None else mask[context]
        parts.append(samples(step, region, around, inside - low, classes[mine], flat[mine]))
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
    (the box plus the halo, as ``valid``); those without data are dropped."""
    halo = step.halo(region.ndim - 1)
    at = tuple(local[:, axis] + h for axis, h in enumerate(halo))
    usable = with_data(region, valid)
    keep = usable[at]
    values = step.features(region, usable)[at]
    return flat[keep], values[keep], classes[keep]
