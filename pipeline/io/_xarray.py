"""xarray: a DataArray opened as an Image, and labels read back as a DataArray.

xarray and rioxarray are imported here only when used, so ``import pipeline``
does not pay for them.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputValueError, UnsupportedInputError
from ._cf import GRID_MAPPING, coordinates, from_grid_mapping, regular_step, transform_from_centres
from ._common import Chunks, band_indices, rechunk
from ._image import AXES, Image
from ._zarr import _DIMENSIONS, open_label_array

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["open_labels_xarray", "read_xarray", "to_xarray"]


def read_xarray(
    array: Any,
    *,
    level: int | None = None,
    bands: Sequence[int] | None = None,
    chunks: Chunks = None,
    axes: str | None = None,
) -> Image:
    """An ``xarray.DataArray`` as an Image, lazily.

    The data stay lazy: a chunked DataArray gives its dask array, any other is
    chunked by xarray (``DataArray.chunk("auto")``), so a backend array is read
    chunk by chunk. Dimensions name the axes: ``y``, ``x`` (or ``latitude``,
    ``longitude``, ``lat``, ``lon``), ``z``, and ``band``, ``c`` or
    ``channel`` for bands; they are put in segpipe's order (bands first).
    A 2D image keeps its georeference: the CRS and transform rioxarray finds
    (``.rio.crs``, ``.rio.transform()``), or without rioxarray those of the CF
    grid mapping (``crs_wkt`` / ``spatial_ref``, ``GeoTransform``) or of
    regularly spaced ``x`` / ``y`` coordinates. The nodata value is
    ``.rio.nodata`` (``_FillValue``). Without a transform, regularly spaced
    coordinates give the voxel spacing, in their ``units``.

    Raises
    ------
    UnsupportedInputError
        ``array`` is not a DataArray, or its dimensions are not ``y, x``,
        ``z, y, x`` with or without bands (in any order).
    InputValueError
        ``level`` is not 0, ``bands`` without a band dimension, ``axes``
        does not name every dimension, or ``chunks`` does not fit.

    Examples
    --------
    >>> import xarray as xr
    >>> pixels = xr.DataArray(np.zeros((4, 6, 3), np.uint8), dims=("y", "x", "band"))
    >>> image = read_xarray(pixels, chunks=2)
    >>> image.axes, image.shape, image.data.chunksize
    ('cyx', (3, 4, 6), (3, 2, 2))
    """
    import xarray as xr

    if not isinstance(array, xr.DataArray):
        raise UnsupportedInputError(
            f"expected an xarray DataArray; got {type(array).__name__} (for a Dataset, pick "
            "its variable: dataset['name'])"
        )
    if level not in (None, 0):
        raise InputValueError(f"a DataArray has only level 0; got level {level!r}")
    order, dims = _axes(array, axes)
    array = array.transpose(*dims)
    if array.chunks is None:
        array = array.chunk("auto")
    data = array.data
    if bands is not None:
        if not order.startswith("c"):
            raise InputValueError(
                f"bands given, but the DataArray's dims {dims} have no band dimension"
            )
        data = data[band_indices(bands, data.shape[0], "DataArray")]
    spatial = dims[1:] if order.startswith("c") else dims
    crs, transform = _georeference(array, *spatial) if len(spatial) == 2 else (None, None)
    if transform is None:
        spacing, units = _spacing(array, spatial)
    else:  # as a GeoTIFF's
        from ._raster import spacing_of, units_of

        spacing, units = spacing_of(transform), units_of(crs)
    Image(data=data, axes=order)  # checks the axes against the data before rechunking
    return Image(
        data=rechunk(data, chunks, order),
        axes=order,
        crs=crs,
        transform=transform,
        nodata=_nodata(array),
        spacing=spacing,
        units=units,
    )


def to_xarray(image: Image, name: str = "labels") -> xr.DataArray:
    """``image`` as a lazy DataArray ``name``: dims ``band``, ``z``, ``y``, ``x`` as it
    has them, coordinates and grid mapping as a label output has them (see
    :mod:`pipeline.io._cf`); rioxarray reads its CRS and transform.

    Examples
    --------
    >>> import dask.array as da
    >>> image = Image(data=da.zeros((2, 3), chunks=1), axes="yx", spacing=(2, 2), units="um")
    >>> found = to_xarray(image)
    >>> found.dims, found["x"].values.tolist(), found["x"].attrs["units"]
    (('y', 'x'), [0.0, 2.0, 4.0], 'um')
    """
    import xarray as xr

    spatial = image.spatial_axes
    shape = [size for size, axis in zip(image.shape, image.axes, strict=True) if axis != "c"]
    variables = coordinates(
        spatial,
        shape,
        crs=image.crs,
        transform=image.transform,
        spacing=image.spacing,
        units=image.units,
    )
    coords = {key: xr.Variable(v.dims, v.values, v.attrs) for key, v in variables.items()}
    attrs = {"grid_mapping": GRID_MAPPING} if GRID_MAPPING in variables else {}
    dims = tuple("band" if axis == "c" else axis for axis in image.axes)
    return xr.DataArray(image.data, dims=dims, coords=coords, name=name, attrs=attrs)


def open_labels_xarray(path: str | Path) -> xr.DataArray:
    """The data variable of a label output (:func:`~pipeline.io.write_labels_zarr`) as
    xarray opens it: lazy, in the stored chunks, with its coordinates and attributes;
    rioxarray, when installed, is imported so that ``.rio`` works on it."""
    import xarray as xr

    name = open_label_array(path).basename
    _with_rioxarray()
    return xr.open_zarr(path, chunks={})[name]


def _axes(array: Any, axes: str | None) -> tuple[str, tuple[Hashable, ...]]:
    """segpipe's axes of ``array`` and its dims in that order."""
    dims = tuple(array.dims)
    if axes is not None:
        if not isinstance(axes, str) or len(axes) != len(dims):
            raise InputValueError(
                f"axes {axes!r} must name each of the DataArray's dims {dims} in order, "
                "e.g. 'yx' or 'cyx'"
            )
        letters = list(axes)
    else:
        letters = [_DIMENSIONS.get(str(dim).lower(), "?") for dim in dims]
    order = next((a for a in AXES if sorted(a) == sorted(letters)), None)
    if order is None:
        raise UnsupportedInputError(
            f"cannot read a DataArray with dims {dims}: segpipe reads dims named y and x "
            "(or latitude and longitude), optionally z, and band, c or channel for bands; "
            "rename the others (DataArray.rename), select one step of them "
            "(e.g. .isel(time=0)), or pass axes"
        )
    return order, tuple(dims[letters.index(axis)] for axis in order)


def _georeference(array: Any, y: Hashable, x: Hashable) -> tuple[str | None, Any]:
    """CRS (WKT) and transform of a 2D image: as rioxarray finds them, or from CF
    attributes and coordinates when rioxarray is not installed."""
    centres = x in array.coords and y in array.coords
    if not _with_rioxarray():
        crs, transform = from_grid_mapping(_grid_mapping(array), "DataArray grid mapping")
        if crs is None and isinstance(array.attrs.get("crs"), str):
            crs = array.attrs["crs"]
        if transform is None and centres:
            transform = transform_from_centres(array[x].values, array[y].values)
        return crs, transform
    # Without a transform or coordinates rioxarray would make one up from the indices.
    placed = centres or "GeoTransform" in _grid_mapping(array) or "transform" in array.attrs
    rio = array.rio.set_spatial_dims(x_dim=x, y_dim=y).rio
    crs = rio.crs.to_wkt() if rio.crs is not None else None
    transform = None
    if placed:
        with warnings.catch_warnings():
            # rioxarray multiplies Affines with *, which affine 3 flags (rioxarray issue 937).
            warnings.filterwarnings("ignore", "Use `@` matmul", PendingDeprecationWarning)
            transform = rio.transform()
    return crs, transform


def _grid_mapping(array: Any) -> dict[str, Any]:
    """The attributes of the array's CF grid mapping variable, if it has one."""
    name = array.encoding.get("grid_mapping", array.attrs.get("grid_mapping", GRID_MAPPING))
    return dict(array.coords[name].attrs) if name in array.coords else {}


def _nodata(array: Any) -> float | None:
    """The nodata value rioxarray finds, or without it the one CF attributes give;
    NaN for floats xarray masked on opening."""
    if _with_rioxarray():
        value = array.rio.nodata
    else:
        value = array.attrs.get("_FillValue", array.attrs.get("nodata"))
        if value is None and "_FillValue" in array.encoding and array.dtype.kind == "f":
            value = np.nan
    return None if value is None else float(value)


def _spacing(array: Any, dims: Sequence[Hashable]) -> tuple[tuple[float, ...] | None, str | None]:
    """Voxel spacing from regularly spaced coordinates on every spatial dim, and their
    common ``units``; None for either when they do not say."""
    if not all(dim in array.coords for dim in dims):
        return None, None
    steps = [regular_step(np.asarray(array[dim].values)) for dim in dims]
    if any(step is None for step in steps):
        return None, None
    units = {array[dim].attrs.get("units") for dim in dims}
    unit = units.pop() if len(units) == 1 else None
    return tuple(abs(float(step)) for step in steps if step is not None), unit


def _with_rioxarray() -> bool:
    """Import rioxarray (which gives DataArrays ``.rio``) when it is installed."""
    try:
        import rioxarray  # noqa: F401
    except ImportError:
        return False
    return True
