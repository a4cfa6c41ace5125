"""``regionprops``: a table of per-object measurements of a chunked label image."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from .._batches import reduce_blocks
from ._inputs import INTENSITY, Georef, as_bands, as_georef, as_labels, as_properties
from ._partials import Partials, chunk_partials, merge_partials


def regionprops(
    labels: Any,
    image: Any = None,
    properties: Iterable[str] | None = None,
    *,
    spacing: Any = None,
    transform: Any = None,
    crs: Any = None,
    affine: Any = None,
    units: str | None = None,
) -> pd.DataFrame:
    """Measure every object of a 2D or 3D label image, chunk by chunk.

    The table equals ``skimage.measure.regionprops_table`` of the whole
    arrays, column for column, for any chunking, while only a few chunks and
    one row per object are ever in memory.

    Parameters
    ----------
    labels
        A dask or numpy integer array, 2D or 3D: objects numbered by positive
        ids, 0 (and any value below 0, as in scikit-image) is background.
    image
        Intensities, a dask or numpy array of bool, integer or float: either
        shaped like ``labels`` (one band) or with a band axis first,
        ``(bands, *labels.shape)``. Any chunking; it is rechunked to the
        chunks of ``labels``.
    properties
        Names from ``"label"``, ``"area"``, ``"bbox"``, ``"centroid"``,
        ``"intensity_mean"``, ``"intensity_min"``, ``"intensity_max"``,
        ``"intensity_std"``, ``"area_physical"``, ``"centroid_physical"``,
        ``"centroid_world"``; ``"label"`` is always included. The default is
        every one the other arguments allow.
    spacing
        Pixel size along each axis, in axis order (z, y, x for a volume), in
        ``units``.
    transform
        A 2D raster's ``affine.Affine`` from pixel ``(col, row)`` to map
        ``(x, y)``, as rasterio's ``dataset.transform`` / ``Image.transform``.
    crs
        The CRS of ``transform``'s map coordinates (WKT, or a rasterio
        ``CRS``); kept in ``df.attrs["crs"]``.
    affine
        A ``(ndim + 1) x (ndim + 1)`` matrix from a pixel index in axis order
        with a 1 appended, ``(z, y, x, 1)``, to world ``(x, y, z, 1)``, as
        ``Image.affine`` of a NIfTI volume.
    units
        The unit of ``spacing``, ``transform`` or ``affine`` (``"m"``,
        ``"mm"``, ...); kept in ``df.attrs["units"]``.

    Returns
    -------
    pandas.DataFrame
        One row per object, sorted by label, with the columns (in this order,
        for the properties asked):

        ``label``
            The object's id, in the dtype of ``labels``.
        ``area``
            Pixels (voxels) in the object, int64.
        ``bbox-0`` ... ``bbox-{2*ndim-1}``
            The first pixel along each axis, then one past the last one.
        ``centroid-0`` ... ``centroid-{ndim-1}``
            The mean pixel index along each axis.
        ``intensity_mean``, ``intensity_min``, ``intensity_max``, ``intensity_std``
            Per band, over the object's pixels, as float64; the standard
            deviation is the population one (``ddof=0``). With a band axis
            the columns are ``intensity_mean-0``, ``intensity_mean-1``, ...
            (even for one band), as scikit-image names them.
        ``area_physical``
            The area (2D) or volume (3D) in ``units`` squared (cubed):
            pixels times ``|a*e - b*d|`` of ``transform``, else times the
            product of ``spacing``, else times ``|det|`` of ``affine``'s
            linear part. The unit is in ``df.attrs["area_units"]``.
        ``centroid_physical-0`` ... ``centroid_physical-{ndim-1}``
            ``centroid-i * spacing[i]``: scikit-image's centroid with
            ``spacing``.
        ``centroid_x``, ``centroid_y`` (, ``centroid_z``)
            The centroid in world coordinates: with ``transform``, the map
            coordinates of the centroid pixel's centre,
            ``transform @ (col + 0.5, row + 0.5)``, in ``crs``; with
            ``affine``, ``affine @ (*centroid, 1)``.

        ``df.attrs`` holds ``units``, ``area_units`` (``"m^2"``,
        ``"mm^3"``; ``None`` when ``units`` is), ``crs``, ``spacing``,
        ``transform`` (its 6 coefficients), ``affine`` and ``provenance``,
        all plain JSON values, so they survive ``df.to_parquet``.

    Raises
    ------
    UnsupportedInputError
        ``labels`` or ``image`` is not an array, or has an unsupported dtype.
    InputValueError
        An unknown property name, a property the arguments cannot give,
        ``labels`` not 2D or 3D, ``image`` not shaped like ``labels``, or a
        ``spacing`` / ``transform`` / ``affine`` that does not fit. Every
        argument is checked before any chunk is read.

    Notes
    -----
    Each chunk gives, per object in it, its pixel count, the sum, minimum
    and maximum of each coordinate, and per band the mean, M2, minimum and
    maximum (see :mod:`pipeline.measure._partials`). These partials are
    merged by label on the workers within a batch of chunks and across
    batches on the client, through :func:`~pipeline._batches.reduce_blocks`;
    intensities are only read when an intensity property is asked for.
    Means are computed in float64 whatever the image's dtype (scikit-image
    averages float32 images in float32, so those agree to float32 precision
    only).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> labels = da.from_array(np.array([[1, 1, 0], [0, 2, 2], [0, 2, 2]]), chunks=2)
    >>> image = np.arange(9).reshape(3, 3)
    >>> regionprops(labels, image, ["area", "bbox", "intensity_mean"])
       label  area  bbox-0  bbox-1  bbox-2  bbox-3  intensity_mean
    0      1     2       0       0       1       2             0.5
    1      2     4       1       1       3       3             6.0

    With a raster's transform, the centroid's map coordinates:

    >>> from affine import Affine
    >>> table = regionprops(
    ...     labels,
    ...     properties=["centroid_world", "area_physical"],
    ...     transform=Affine(10, 0, 500, 0, -10, 900),
    ...     units="m",
    ... )
    >>> table[["centroid_x", "centroid_y", "area_physical"]]
       centroid_x  centroid_y  area_physical
    0       510.0       895.0          200.0
    1       520.0       880.0          400.0
    >>> table.attrs["area_units"]
    'm^2'
    """
    array = as_labels(labels)
    values, banded = as_bands(image, array)
    georef = as_georef(array.ndim, spacing, transform, crs, affine, units)
    names = as_properties(properties, has_image=values is not None, georef=georef)
    if not any(name in INTENSITY for name in names):
        values = None  # not read at all
    found = measure(array, values)
    return _table(found, names, banded, georef)


def measure(labels: da.Array, image: da.Array | None) -> Partials:
    """The merged :class:`~._partials.Partials` of every chunk of ``labels``, with
    intensities from ``image`` (``(bands, *labels.shape)``), batch by batch."""
    ndim = labels.ndim
    starts = tuple(np.cumsum((0, *sizes[:-1]), dtype=np.int64) for sizes in labels.chunks)
    arrays = [labels] if image is None else [labels, image]  # image: all bands in a chunk
    parts = da.map_blocks(
        partial(_chunk, starts=starts),
        *arrays,
        drop_axis=None if image is None else 0,
        chunks=tuple((1,) * len(sizes) for sizes in labels.chunks),
        dtype=object,
        meta=np.empty((0,) * ndim, dtype=object),
        token="segpipe-regionprops",
    )
    found: Partials = reduce_blocks(_unwrap, [parts], merge_partials)
    return found


def _chunk(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    starts: tuple[np.ndarray, ...],
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """One chunk's :class:`~._partials.Partials`, in a one-element object array."""
    bands = () if image is None else tuple(image)
    out = np.empty((1,) * labels.ndim, dtype=object)
    out.flat[0] = chunk_partials(labels, *bands, where=tuple(block_id or ()), starts=starts)
    return out


def _unwrap(block: np.ndarray) -> Partials:
    found: Partials = block.flat[0]
    return found


def _table(found: Partials, names: tuple[str, ...], banded: bool, georef: Georef) -> pd.DataFrame:
    ndim = found.lo.shape[1]
    centroid = found.coord_sum / found.count[:, None]
    columns: dict[str, np.ndarray] = {}
    for name in names:
        if name == "label":
            columns["label"] = found.ids
        elif name == "area":
            columns["area"] = found.count
        elif name == "bbox":
            ends = [*found.lo.T, *(found.hi + 1).T]
            columns.update((f"bbox-{i}", end) for i, end in enumerate(ends))
        elif name == "centroid":
            columns.update((f"centroid-{i}", c) for i, c in enumerate(centroid.T))
        elif name in INTENSITY:
            values = _intensity(found, name)
            if banded:
                columns.update((f"{name}-{b}", band) for b, band in enumerate(values.T))
            else:
                columns[name] = values[:, 0]
        elif name == "area_physical":
            columns[name] = found.count * float(georef.pixel_size or 0.0)
        elif name == "centroid_physical":
            scaled = centroid * np.asarray(georef.spacing)
            columns.update((f"centroid_physical-{i}", c) for i, c in enumerate(scaled.T))
        elif name == "centroid_world":
            world = _world(centroid, georef)
            columns.update((f"centroid_{axis}", c) for axis, c in zip("xyz", world.T, strict=False))
        else:
            raise ValueError(f"no column for property {name!r}")  # as_properties checked
    table = pd.DataFrame(columns)
    area_units = f"{georef.units}^{ndim}" if georef.units and "area_physical" in names else None
    table.attrs.update(
        units=georef.units,
        area_units=area_units,
        crs=georef.crs,
        spacing=None if georef.spacing is None else list(georef.spacing),
        transform=None if georef.transform is None else list(georef.transform),
        affine=None if georef.affine is None else georef.affine.tolist(),
        provenance={"function": "pipeline.measure.regionprops", "segpipe": _version()},
    )
    return table


def _intensity(found: Partials, name: str) -> np.ndarray:
    """``(objects, bands)`` float64 values of one intensity property."""
    if name == "intensity_mean":
        return found.mean
    if name == "intensity_std":
        return np.sqrt(found.m2 / found.count[:, None])
    if name == "intensity_min":
        return found.vmin.astype(np.float64)
    if name == "intensity_max":
        return found.vmax.astype(np.float64)
    raise ValueError(f"unknown intensity property {name!r}; expected one of {INTENSITY}")


def _world(centroid: np.ndarray, georef: Georef) -> np.ndarray:
    """``(objects, ndim)`` world coordinates (x, y[, z]) of pixel-index centroids."""
    if georef.transform is not None:
        a, b, c, d, e, f = georef.transform
        row, col = centroid[:, 0] + 0.5, centroid[:, 1] + 0.5  # the pixel's centre
        return np.stack([a * col + b * row + c, d * col + e * row + f], axis=1)
    if georef.affine is not None:
        matrix = georef.affine
        return centroid @ matrix[: georef.ndim, : georef.ndim].T + matrix[: georef.ndim, -1]
    raise ValueError("world coordinates need a transform or an affine")  # as_properties checked


def _version() -> str:
    try:
        return version("segpipe")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0"
