"""Annotations drawn as vector features, turned into pixels of an image's grid.

A GeoPackage, GeoJSON, Shapefile or GeoParquet file (one layer) is read with
pyogrio / geopandas, its features reprojected to the image's CRS and each
rasterised on its own window of the grid, the pixels under its bounds, never
on the whole grid (annotations are sparse; an image may be too big for one
machine)::

    +--------------------------- image grid --------------------------+
    |      +---------+                                                |
    |      |  ____   |   one feature's window: the rows and columns   |
    |      | /    |  |   under its bounds; rasterize() burns in it    |
    |      | |____/  |   the pixels whose centre lies inside the      |
    |      +---------+   feature, then offsets them to the image      |
    +-----------------------------------------------------------------+

- a polygon (or multipolygon) annotates the pixels whose centre lies inside
  it (``rasterio.features.rasterize`` with ``all_touched=False``; a centre
  exactly on an edge may fall either way); the part of a polygon outside the
  image is left out, but a polygon must cover the centre of at least one
  pixel of the image;
- a point (or multipoint) annotates the pixel that contains it
  (``rasterio.transform.rowcol``); a point outside the image is an error.

Coordinates: on an image with a CRS the file must have one too, and its
features are reprojected (a file without CRS is refused rather than guessed).
On an image without CRS the file must have none: its coordinates are those of
the image's transform, or, with no transform either (microscopy), pixel
coordinates: x = column and y = row from the image's top-left corner, pixel
``(row, col)`` the unit square from ``(col, row)`` to ``(col + 1, row + 1)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from affine import Affine

from ..errors import InputValueError, ReadError

__all__ = ["read_annotations"]

Geometries = Literal["polygons", "points", "any"]

_TYPES: dict[str, tuple[str, ...]] = {
    "polygons": ("Polygon", "MultiPolygon"),
    "points": ("Point", "MultiPoint"),
    "any": ("Polygon", "MultiPolygon", "Point", "MultiPoint"),
}
_FIX_TYPE = {
    "polygons": "save areas as polygons (a file of points goes to points:)",
    "points": "save points (a file of areas goes to polygons:)",
    "any": "save points or polygons",
}
FORMATS = "GeoPackage, GeoJSON, Shapefile or GeoParquet"


def read_annotations(
    path: str | Path,
    shape: tuple[int, ...],
    *,
    crs: str | None,
    transform: Affine | None,
    geometries: Geometries,
    class_field: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels annotated by the features of a vector file, and their classes.

    Parameters
    ----------
    path
        A GeoPackage, GeoJSON, Shapefile or GeoParquet file holding one layer.
    shape
        The image's ``(rows, cols)``.
    crs, transform
        The image's CRS (WKT, or anything ``pyproj.CRS.from_user_input`` reads)
        and pixel-to-map transform, or ``None``.
    geometries
        The geometries accepted: ``"polygons"``, ``"points"`` or ``"any"`` of them.
    class_field
        The integer attribute (1 to 255) holding each feature's class; ``None``
        gives every feature class 1.

    Returns
    -------
    coords, classes
        The annotated pixels, ``(row, col)`` per line (int64), in pixel order,
        each once, and their classes (uint8).

    Raises
    ------
    ReadError
        The file is missing or cannot be read.
    InputValueError
        The image is not 2D; the file holds several layers or no feature;
        ``class_field`` is not one of its fields, or a feature's class is not
        an integer 1 to 255; a feature is not of ``geometries``, lies outside
        the image or covers no pixel centre; the file and the image do not
        both have a CRS or both lack one; two features give a pixel two classes.

    Examples
    --------
    On a grid of 10 m pixels whose top-left corner is at (0, 30), a box from
    x 10 to 30, y 10 to 20 holds the centres of pixels [1, 1] and [1, 2], and
    the point (45, 28) lies in pixel [0, 4]:

    >>> import shutil, tempfile, geopandas, shapely
    >>> folder = Path(tempfile.mkdtemp())
    >>> geopandas.GeoDataFrame(
    ...     {"class": [1, 2]},
    ...     geometry=[shapely.box(10, 10, 30, 20), shapely.Point(45, 28)],
    ...     crs="EPSG:32631",
    ... ).to_file(folder / "annotations.gpkg")
    >>> coords, classes = read_annotations(
    ...     folder / "annotations.gpkg", (3, 6), crs="EPSG:32631",
    ...     transform=Affine(10, 0, 0, 0, -10, 30), geometries="any", class_field="class",
    ... )
    >>> coords.tolist(), classes.tolist()
    ([[0, 4], [1, 1], [1, 2]], [2, 1, 1])
    >>> shutil.rmtree(folder)
    """
    path = Path(path)
    if len(shape) != 2:
        raise InputValueError(
            f"{path}: vector annotations are 2D; the image is {len(shape)}D (shape {shape}): "
            "annotate a volume with pixel coordinates or a raster on its grid"
        )
    frame, key = _read(path)
    names = [f"{key} {fid}" for fid in frame.index]
    classes = _classes(frame, names, class_field, path)
    _check_geometries(frame, names, geometries, path)
    frame = _in_image_crs(frame, crs, transform, path)
    grid = transform if transform is not None else Affine.identity()
    flats, found, owners = [], [], []
    for number, geometry in enumerate(frame.geometry):
        if geometry.geom_type in _TYPES["points"]:
            rows, cols = _point_pixels(geometry, grid, shape, names[number], path)
        else:
            rows, cols = _polygon_pixels(geometry, grid, shape, names[number], path)
        flats.append(np.ravel_multi_index((rows, cols), shape))
        found.append(np.full(rows.size, classes[number], dtype=np.uint8))
        owners.append(np.full(rows.size, number, dtype=np.int64))
    return _one_class_per_pixel(
        np.concatenate(flats), np.concatenate(found), np.concatenate(owners), shape, names, path
    )


def _read(path: Path) -> tuple[Any, str]:
    """The features of ``path`` and what their index is (``fid`` or ``row``)."""
    if not path.exists():
        raise ReadError(f"{path}: no such file; give the path of a {FORMATS} file")
    import geopandas  # type: ignore[import-untyped]
    import pyogrio  # type: ignore[import-untyped]

    parquet = path.suffix.lower() == ".parquet"
    try:
        layers: list[str] = [] if parquet else [str(n) for n in pyogrio.list_layers(path)[:, 0]]
        if len(layers) <= 1:
            frame = (
                geopandas.read_parquet(path)
                if parquet
                else pyogrio.read_dataframe(path, fid_as_index=True)
            )
    except Exception as error:
        raise ReadError(
            f"{path}: cannot be read as a {FORMATS} file ({type(error).__name__}: {error})"
        ) from error
    if len(layers) > 1:
        raise InputValueError(
            f"{path}: holds {len(layers)} layers ({', '.join(layers)}); save the annotations "
            "as the only layer of a file"
        )
    if len(frame) == 0:
        raise InputValueError(f"{path}: holds no feature; draw the annotations in it")
    return frame, "row" if parquet else "fid"


def _classes(frame: Any, names: list[str], field: str | None, path: Path) -> np.ndarray:
    """Each feature's class, checked to be an integer 1 to 255."""
    import pandas as pd  # type: ignore[import-untyped]

    if field is None:
        return np.ones(len(frame), dtype=np.uint8)
    fields = [str(name) for name in frame.columns if name != frame.geometry.name]
    if field not in fields:
        raise InputValueError(
            f"{path}: has no field {field!r}; its fields are: {', '.join(fields) or 'none'}; "
            "set class_field to the one holding the class ids 1 to 255"
        )
    values = frame[field]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise InputValueError(
            f"{path}: field {field!r} holds {values.dtype} values (e.g. {values.iloc[0]!r}), "
            "not class ids; give each feature an integer class 1 to 255 (0 is no class)"
        )
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < 1) | (numbers > 255)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        shown = "null" if pd.isna(values.iloc[first]) else str(values.iloc[first])
        raise InputValueError(
            f"{path}: feature {names[first]} has class {shown} in field {field!r}; give each "
            f"feature an integer class 1 to 255 (0 is no class); {int(bad.sum())} features "
            "need one"
        )
    return numbers.astype(np.uint8)


def _check_geometries(frame: Any, names: list[str], geometries: Geometries, path: Path) -> None:
    types = frame.geometry.geom_type.to_numpy()
    empty = frame.geometry.isna().to_numpy() | frame.geometry.is_empty.to_numpy()
    for number, kind in enumerate(types):
        if empty[number]:
            raise InputValueError(
                f"{path}: feature {names[number]} has no geometry; draw it or delete it"
            )
        if kind not in _TYPES[geometries]:
            raise InputValueError(
                f"{path}: feature {names[number]} is a {kind}; these annotations take "
                f"{', '.join(_TYPES[geometries])} features: {_FIX_TYPE[geometries]}"
            )


def _in_image_crs(frame: Any, crs: str | None, transform: Affine | None, path: Path) -> Any:
    """The features in the image's CRS; both have a CRS, or neither has."""
    from pyproj import CRS

    if crs is not None and frame.crs is None:
        raise InputValueError(
            f"{path}: the file has no CRS but the image is in {CRS.from_user_input(crs).name}; "
            "set the layer's CRS (the one it was drawn in) and save it again"
        )
    if crs is None and frame.crs is not None:
        where = (
            "the coordinates of its transform"
            if transform is not None
            else ("pixel coordinates: x = column, y = row from its top-left corner")
        )
        raise InputValueError(
            f"{path}: the file is in {frame.crs.name} but the image has no CRS to reproject "
            f"to; save the annotations without a CRS, in the image's {where}"
        )
    if crs is None or frame.crs.equals(CRS.from_user_input(crs)):
        return frame
    return frame.to_crs(crs)


def _point_pixels(
    geometry: Any, grid: Affine, shape: tuple[int, ...], name: str, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """The pixel holding each point of ``geometry``."""
    import shapely  # type: ignore[import-untyped]
    from rasterio.transform import rowcol

    xy = shapely.get_coordinates(geometry)
    rows, cols = (np.atleast_1d(np.asarray(a, dtype=np.int64)) for a in rowcol(grid, *xy.T))
    outside = (rows < 0) | (rows >= shape[0]) | (cols < 0) | (cols >= shape[1])
    if outside.any():
        at = int(np.flatnonzero(outside)[0])
        raise InputValueError(
            f"{path}: feature {name} lies outside the image: point ({xy[at, 0]:g}, "
            f"{xy[at, 1]:g}) is pixel [{rows[at]}, {cols[at]}] of an image of {shape[0]} x "
            f"{shape[1]} pixels; move it onto the image or check the file's CRS"
        )
    return rows, cols


def _polygon_pixels(
    geometry: Any, grid: Affine, shape: tuple[int, ...], name: str, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels whose centre lies inside ``geometry``, rasterised on its own window."""
    from rasterio.features import rasterize

    left, bottom, right, top = geometry.bounds
    corners = [~grid @ xy for xy in ((left, bottom), (left, top), (right, bottom), (right, top))]
    cols, rows = zip(*corners, strict=True)
    row0, row1 = max(math.floor(min(rows)), 0), min(math.ceil(max(rows)), shape[0])
    col0, col1 = max(math.floor(min(cols)), 0), min(math.ceil(max(cols)), shape[1])
    if row0 >= row1 or col0 >= col1:
        raise InputValueError(
            f"{path}: feature {name} lies outside the image: its bounds are pixels "
            f"{min(rows):.1f} to {max(rows):.1f} down, {min(cols):.1f} to {max(cols):.1f} "
            f"across, of an image of {shape[0]} x {shape[1]} pixels; check the file's CRS"
        )
    burned = rasterize(
        [(geometry, 1)],
        out_shape=(row1 - row0, col1 - col0),
        transform=grid @ Affine.translation(col0, row0),
        all_touched=False,
        fill=0,
        dtype="uint8",
    )
    rows_in, cols_in = np.nonzero(burned)
    if rows_in.size == 0:
        raise InputValueError(
            f"{path}: feature {name} covers no pixel centre of the image; draw it over the "
            "centre of at least one pixel, or make it a point"
        )
    return rows_in.astype(np.int64) + row0, cols_in.astype(np.int64) + col0


def _one_class_per_pixel(
    flat: np.ndarray,
    classes: np.ndarray,
    owners: np.ndarray,
    shape: tuple[int, ...],
    names: list[str],
    path: Path,
) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel once, in pixel order; two features giving a pixel two classes are named."""
    order = np.lexsort((classes, flat))
    flat, classes, owners = flat[order], classes[order], owners[order]
    again = np.zeros(flat.size, dtype=bool)
    again[1:] = flat[1:] == flat[:-1]
    clash = np.flatnonzero(again & (classes != np.roll(classes, 1)))
    if clash.size:
        at = int(clash[0])
        pixel = [int(i) for i in np.unravel_index(flat[at], shape)]
        raise InputValueError(
            f"{path}: features {names[owners[at - 1]]} (class {classes[at - 1]}) and "
            f"{names[owners[at]]} (class {classes[at]}) both cover pixel {pixel}; give each "
            "pixel one class: make the features of different classes not overlap"
        )
    coords = np.stack(np.unravel_index(flat[~again], shape), axis=1).astype(np.int64)
    return coords, classes[~again]
