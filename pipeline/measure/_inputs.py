"""Checking :func:`~pipeline.measure.regionprops`'s arguments before any graph is built."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from .._arrays import as_dask_array
from ..errors import InputValueError, UnsupportedInputError

GEOMETRY = ("label", "area", "bbox", "centroid")
INTENSITY = ("intensity_mean", "intensity_min", "intensity_max", "intensity_std")
PHYSICAL = ("area_physical", "centroid_physical", "centroid_world")
PROPERTIES = (*GEOMETRY, *INTENSITY, *PHYSICAL)
"""Every property :func:`~pipeline.measure.regionprops` measures, in column order."""


@dataclass(frozen=True)
class Georef:
    """What places the pixel grid in the world; each part may be missing.

    ``transform`` is a raster's ``(a, b, c, d, e, f)``: map x, y of pixel
    column ``col``, row ``row`` are ``(a*col + b*row + c, d*col + e*row + f)``.
    ``affine`` maps a pixel index in axis order, with a 1 appended, to world
    coordinates (x, y[, z], 1).
    """

    ndim: int
    spacing: tuple[float, ...] | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    affine: np.ndarray | None = None
    crs: str | None = None
    units: str | None = None

    @property
    def pixel_size(self) -> float | None:
        """Area (2D) or volume (3D) of one pixel: from ``transform``, else
        ``spacing``, else ``affine``; ``None`` without any of them."""
        if self.transform is not None:
            a, b, _, d, e, _ = self.transform
            return abs(a * e - b * d)
        if self.spacing is not None:
            return math.prod(self.spacing)
        if self.affine is not None:
            return abs(float(np.linalg.det(self.affine[: self.ndim, : self.ndim])))
        return None

    @property
    def world_axes(self) -> str:
        """The world axes a centroid is given along: ``"xy"`` or ``"xyz"``."""
        return "xyz"[: self.ndim]


def as_labels(labels: Any) -> da.Array:
    """``labels`` as a 2D or 3D integer dask array with known chunks."""
    array = as_dask_array(labels, "labels")
    if array.dtype.kind not in "iu":
        raise UnsupportedInputError(
            f"labels has dtype {array.dtype}; expected an integer type: objects numbered "
            "from 1 with 0 as background, e.g. from pipeline.label(mask)"
        )
    if array.ndim not in (2, 3):
        raise InputValueError(
            f"labels must be 2D or 3D; got a {array.ndim}D array of shape {array.shape}"
        )
    _known_chunks("labels", array)
    return array


def as_bands(image: Any, labels: da.Array) -> tuple[da.Array | None, bool]:
    """``image`` as ``(bands, *labels.shape)``, all bands in one chunk and chunked like
    ``labels`` in space, and whether ``image`` has a band axis of its own."""
    if image is None:
        return None, False
    if not isinstance(image, da.Array | np.ndarray):
        raise UnsupportedInputError(
            f"image must be a dask or numpy array (or None); got {type(image).__name__}"
        )
    if image.dtype.kind not in "biuf":
        raise UnsupportedInputError(
            f"image has dtype {image.dtype}; expected bool, an integer type or a float type"
        )
    shape, expected = tuple(image.shape), tuple(labels.shape)
    if shape == expected:
        banded = False
    elif len(shape) == len(expected) + 1 and shape[1:] == expected:
        banded = True
    elif len(shape) == len(expected) + 1 and shape[:-1] == expected:
        raise InputValueError(
            f"image has shape {shape}: its bands are last; put them first, "
            f"shape ({shape[-1]}, *{expected}), e.g. with np.moveaxis(image, -1, 0)"
        )
    else:
        raise InputValueError(
            f"image has shape {shape}; expected the shape of labels {expected} "
            f"or a band axis first: (bands, *{expected})"
        )
    if banded and shape[0] == 0:
        raise InputValueError(f"image has shape {shape}: it holds no bands")
    chunks = ((shape[0] if banded else 1,), *labels.chunks)
    if isinstance(image, np.ndarray):
        return da.from_array(image if banded else image[None], chunks=chunks), banded
    _known_chunks("image", image)
    return (image if banded else image[None]).rechunk(chunks), banded


def as_properties(
    properties: Iterable[str] | None, *, has_image: bool, georef: Georef
) -> tuple[str, ...]:
    """The properties to measure, ``"label"`` first, in the order asked (the default:
    every property the arguments allow, in :data:`PROPERTIES` order)."""
    allowed = {
        "intensity": has_image,
        "area_physical": georef.pixel_size is not None,
        "centroid_physical": georef.spacing is not None,
        "centroid_world": georef.transform is not None or georef.affine is not None,
    }
    if properties is None:
        return tuple(name for name in PROPERTIES if allowed.get(_kind(name), True))
    if isinstance(properties, str) or not isinstance(properties, Iterable):
        raise InputValueError(
            f"properties must be a list of names such as ['area', 'centroid']; got {properties!r}"
        )
    names = list(properties)
    unknown = [name for name in names if not isinstance(name, str) or name not in PROPERTIES]
    if unknown:
        raise InputValueError(
            f"unknown properties {', '.join(map(repr, unknown))}; "
            f"the valid ones are: {', '.join(PROPERTIES)}"
        )
    needs = {
        "intensity": "an intensity image: pass image=...",
        "area_physical": "the pixel size: pass spacing=..., transform=... or affine=...",
        "centroid_physical": "the pixel spacing: pass spacing=...",
        "centroid_world": "pixel to world coordinates: pass transform=... or affine=...",
    }
    for name in names:
        if not allowed.get(_kind(name), True):
            raise InputValueError(f"property {name!r} needs {needs[_kind(name)]}")
    return tuple(dict.fromkeys(["label", *names]))


def as_georef(
    ndim: int,
    spacing: Any = None,
    transform: Any = None,
    crs: Any = None,
    affine: Any = None,
    units: Any = None,
) -> Georef:
    """The checked :class:`Georef` of a ``ndim``-dimensional label image."""
    if spacing is not None:
        spacing = _numbers("spacing", spacing, ndim, f"one pixel size per axis ({ndim})")
        if any(size <= 0 for size in spacing):
            raise InputValueError(f"spacing must be positive; got {spacing}")
    if transform is not None:
        transform = _transform(transform, ndim)
    if affine is not None:
        affine = _affine(affine, ndim)
    if transform is not None and affine is not None:
        raise InputValueError(
            "give transform (a raster's pixel to map transform) or affine (a volume's "
            "voxel to world matrix), not both: each gives the world centroid"
        )
    if crs is not None:
        if transform is None and affine is None:
            raise InputValueError(
                "crs was given without transform: the centroids' map coordinates in "
                "that CRS need the raster's transform (e.g. Image.transform)"
            )
        crs = crs if isinstance(crs, str) else crs.to_wkt() if hasattr(crs, "to_wkt") else str(crs)
    if units is not None and not isinstance(units, str):
        raise InputValueError(f"units must be a string such as 'mm' or 'm'; got {units!r}")
    return Georef(ndim, spacing, transform, affine, crs, units)


def _kind(name: str) -> str:
    return "intensity" if name in INTENSITY else name


def _known_chunks(name: str, array: da.Array) -> None:
    if any(math.isnan(size) for sizes in array.chunks for size in sizes):
        raise InputValueError(
            f"{name} has unknown chunk sizes {array.chunks}; "
            f"call {name}.compute_chunk_sizes() first"
        )


def _numbers(name: str, value: Any, size: int, what: str) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputValueError(f"{name} must be {what}; got {value!r}") from None
    if len(numbers) != size or not all(math.isfinite(v) for v in numbers):
        raise InputValueError(f"{name} must be {what}, all finite; got {value!r}")
    return numbers


def _transform(value: Any, ndim: int) -> tuple[float, float, float, float, float, float]:
    if ndim != 2:
        raise InputValueError(
            f"transform is for 2D rasters; labels are {ndim}D: give a volume's "
            "voxel to world matrix as affine=..., or its voxel size as spacing=..."
        )
    what = "an affine.Affine (or its 6 or 9 coefficients a, b, c, d, e, f[, 0, 0, 1])"
    try:
        coefficients = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputValueError(f"transform must be {what}; got {value!r}") from None
    if len(coefficients) not in (6, 9) or coefficients[6:] not in ((), (0.0, 0.0, 1.0)):
        raise InputValueError(f"transform must be {what}; got {value!r}")
    a, b, c, d, e, f = coefficients[:6]
    if not all(map(math.isfinite, (a, b, c, d, e, f))) or a * e - b * d == 0:
        raise InputValueError(f"transform must be finite and invertible; got {value!r}")
    return a, b, c, d, e, f


def _affine(value: Any, ndim: int) -> np.ndarray:
    side = ndim + 1
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if matrix.shape != (side, side) or not np.isfinite(matrix).all():
        raise InputValueError(
            f"affine must be a finite {side} x {side} matrix from a pixel index in axis "
            f"order (with a 1 appended) to world coordinates; got {value!r}"
        )
    if np.linalg.det(matrix[:ndim, :ndim]) == 0:
        raise InputValueError(f"affine must be invertible; got {value!r}")
    return matrix
