"""CF conventions: the coordinates and the grid mapping that place a label map in the world.

What xarray and rioxarray read beside a label output's data variable (see
:func:`pipeline.io.write_labels_zarr`)::

    y, x         pixel centres in the CRS, from the transform (float64, CF attributes)
    spatial_ref  0-d: the CRS as WKT (crs_wkt, spatial_ref), the GDAL GeoTransform
                 and the CF grid mapping (pyproj's CRS.to_cf())
    z, y, x      without a transform: index x voxel spacing, in the spacing's units

and the same read back: a CRS and a transform from a grid mapping, or from
regularly spaced 1D coordinates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ReadError

GRID_MAPPING = "spatial_ref"  # the grid mapping variable's name, as rioxarray and GDAL use


@dataclass(frozen=True)
class Variable:
    """A variable beside the data: its dimensions, values and attributes."""

    dims: tuple[str, ...]
    values: np.ndarray
    attrs: dict[str, Any]


def coordinates(
    axes: str,
    shape: Sequence[int],
    *,
    crs: str | None = None,
    transform: Any = None,
    spacing: Sequence[float] | None = None,
    units: str | None = None,
) -> dict[str, Variable]:
    """The coordinate variables of a map on ``axes`` (``"yx"`` or ``"zyx"``) of ``shape``.

    A 2D map with a transform without rotation gets ``y`` and ``x`` at pixel
    centres; a CRS and a transform also give the grid mapping variable. A map
    with voxel spacing and no transform gets index x spacing on every axis.
    Anything else gets none.

    Examples
    --------
    >>> from affine import Affine
    >>> found = coordinates("yx", (2, 3), transform=Affine(10, 0, 500, 0, -10, 900))
    >>> found["x"].values.tolist(), found["y"].values.tolist()
    ([505.0, 515.0, 525.0], [895.0, 885.0])
    >>> coordinates("zyx", (2, 1, 1), spacing=(2.5, 1, 1), units="um")["z"].values.tolist()
    [0.0, 2.5]
    """
    found: dict[str, Variable] = {}
    if transform is not None and axes == "yx" and transform.b == transform.d == 0:
        height, width = shape
        x_attrs, y_attrs = _axis_attributes(crs)
        x = transform.c + (np.arange(width) + 0.5) * transform.a
        y = transform.f + (np.arange(height) + 0.5) * transform.e
        found["y"] = Variable(("y",), y.astype(np.float64), y_attrs)
        found["x"] = Variable(("x",), x.astype(np.float64), x_attrs)
    elif transform is None and spacing is not None:
        for axis, size, step in zip(axes, shape, spacing, strict=True):
            attrs = {"axis": axis.upper(), "long_name": f"{axis} position"}
            if units is not None:
                attrs["units"] = units
            found[axis] = Variable((axis,), np.arange(size, dtype=np.float64) * step, attrs)
    if crs is not None and transform is not None:
        found[GRID_MAPPING] = Variable((), np.zeros((), np.int64), grid_mapping(crs, transform))
    return found


def grid_mapping(crs: str, transform: Any) -> dict[str, Any]:
    """The CF grid mapping attributes of ``crs`` (WKT) with GDAL's ``GeoTransform``.

    Examples
    --------
    >>> from affine import Affine
    >>> found = grid_mapping("EPSG:32633", Affine(10, 0, 500000, 0, -10, 4100000))
    >>> found["grid_mapping_name"], found["GeoTransform"]
    ('transverse_mercator', '500000.0 10.0 0.0 4100000.0 0.0 -10.0')
    """
    from pyproj import CRS

    attrs: dict[str, Any] = CRS.from_user_input(crs).to_cf()
    # The WKT as given, where GDAL (spatial_ref) and CF (crs_wkt) readers look for it.
    attrs["crs_wkt"] = attrs["spatial_ref"] = crs
    attrs["GeoTransform"] = " ".join(str(float(v)) for v in transform.to_gdal())
    return attrs


def from_grid_mapping(attrs: Mapping[str, Any], where: str) -> tuple[str | None, Any]:
    """The CRS (WKT) and transform a grid mapping variable's attributes give, or None each.

    Raises
    ------
    ReadError
        ``GeoTransform`` is not 6 numbers, or the CF grid mapping names no CRS
        pyproj knows.
    """
    crs = attrs.get("spatial_ref") or attrs.get("crs_wkt")
    if crs is None and "grid_mapping_name" in attrs:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            crs = CRS.from_cf(dict(attrs)).to_wkt()
        except CRSError as err:
            raise ReadError(f"{where}: the CF grid mapping names no known CRS ({err})") from err
    transform = None
    text = attrs.get("GeoTransform")
    if text is not None:
        try:
            numbers = [float(v) for v in str(text).split()]
        except ValueError:
            numbers = []
        if len(numbers) != 6:
            raise ReadError(
                f"{where}: GeoTransform must be 6 numbers separated by spaces (GDAL order); "
                f"got {text!r}"
            )
        from affine import Affine

        transform = Affine.from_gdal(*numbers)
    return (str(crs) if crs is not None else None), transform


def regular_step(values: np.ndarray) -> float | None:
    """The step between regularly spaced 1D coordinates, or None when they are not.

    Examples
    --------
    >>> regular_step(np.array([5.0, 15.0, 25.0])), regular_step(np.array([0, 1, 3]))
    (10.0, None)
    """
    if values.ndim != 1 or values.size < 2 or values.dtype.kind not in "iuf":
        return None
    steps = np.diff(values.astype(np.float64))
    if steps[0] == 0 or not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        return None
    return float(steps[0])


def transform_from_centres(x: np.ndarray, y: np.ndarray) -> Any:
    """The transform of a grid whose pixel centres are the regular 1D ``x`` and ``y``,
    or None when either is not regular.

    Examples
    --------
    >>> transform_from_centres(np.array([505.0, 515.0]), np.array([895.0, 885.0]))[:6]
    (10.0, 0.0, 500.0, 0.0, -10.0, 900.0)
    """
    dx, dy = regular_step(x), regular_step(y)
    if dx is None or dy is None:
        return None
    from affine import Affine

    return Affine(dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2)


def _axis_attributes(crs: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """CF attributes of the x and y coordinates in ``crs`` (pyproj's ``cs_to_cf``)."""
    found = {"X": {"axis": "X"}, "Y": {"axis": "Y"}}
    if crs is not None:
        from pyproj import CRS

        for attrs in CRS.from_user_input(crs).cs_to_cf():
            if attrs.get("axis") in found:
                found[attrs["axis"]] = dict(attrs)
    return found["X"], found["Y"]
