"""open_image: any supported source to an Image, read lazily."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dask.array as da
import numpy as np

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._common import DEFAULT_AXES, Chunks, band_indices, rechunk
from ._image import Image
from ._remote import check_readable, is_remote, is_url, local_path
from ._stac import is_stac


def open_image(
    source: Any,
    *,
    level: int | None = None,
    bands: Sequence[int] | None = None,
    chunks: Chunks = None,
    axes: str | None = None,
    nodata: float | None = None,
    crs: str | None = None,
    resolution: float | Sequence[float] | None = None,
    resampling: str = "nearest",
    assets: Sequence[str] | None = None,
) -> Image:
    """Open an image lazily: nothing but metadata is read until its chunks are computed.

    Parameters
    ----------
    source
        A path or URL: a zarr v2/v3 array or OME-Zarr image (``.zarr`` or a
        folder holding zarr metadata; any fsspec URL), a GeoTIFF / COG (``.tif``,
        ``.tiff`` with georeferencing; local, ``s3://``, ``gs://``, ``az://`` or
        ``http(s)://``), a GDAL VRT (``.vrt``), a tiled or pyramidal TIFF or
        whole-slide image (``.tif``, ``.svs``, ``.ome.tif``), a NIfTI volume
        (``.nii``, ``.nii.gz``), a STAC Item or ItemCollection (``.json``: a
        mosaic of its items); a list of georeferenced rasters (a mosaic); a
        numpy or dask array; or an xarray DataArray (its dims name the axes;
        rioxarray's CRS, transform and nodata are kept).
    level
        Pyramid level to read (0, the default, is full resolution).
    bands
        Band numbers to keep, counted from 1 as GDAL does; default all.
    chunks
        Chunk size: one int for every spatial axis or one per spatial axis, as
        given. Default: the file's own tiles or chunks.
    axes
        For arrays only: their axes (default ``"yx"``, ``"zyx"``, ``"czyx"`` by
        dimension).
    nodata
        The value that means "no data", overriding what the file says (or
        saying it where the file does not): it is left out of every fit, never
        foreground and never labelled.
    crs, resolution, resampling
        Reproject onto this grid: a CRS (``"EPSG:32633"``, WKT), the pixel size
        in its units (one value or ``[x, y]``), and the resampling (``nearest``,
        ``bilinear``, ``cubic``, ``cubic_spline``, ``lanczos``, ``average``,
        ``mode``). For mosaics whose scenes differ, or to reproject one raster.
    assets
        For STAC sources: the asset keys that become the bands, in order.

    Raises
    ------
    ReadError
        The path or URL does not exist, access is denied, or the file cannot be read.
    UnsupportedInputError
        The source is of a kind or format segpipe does not read.
    InputValueError
        ``level``, ``bands``, ``chunks``, ``axes``, ``nodata`` or the grid do not
        fit the source.

    Examples
    --------
    >>> import numpy as np
    >>> image = open_image(np.zeros((4, 6), dtype=np.uint8), chunks=2)
    >>> image.axes, image.data.chunksize
    ('yx', (2, 2))
    """
    grid = {"crs": crs, "resolution": resolution, "resampling": resampling}
    if isinstance(source, np.ndarray | da.Array):
        image = _from_array(source, bands=bands, chunks=chunks, axes=axes, level=level)
        return _declared(image, nodata)
    if type(source).__name__ == "DataArray":  # xarray's: imported only when given one
        from ._xarray import read_xarray

        image = read_xarray(source, level=level, bands=bands, chunks=chunks, axes=axes)
        return _declared(image, nodata)
    if axes is not None:
        raise InputValueError("axes is only for arrays; files say their own axes")
    if isinstance(source, list | tuple):
        paths = [_path(item) for item in source]
        return _mosaic(paths, level, bands, chunks, nodata, grid, assets, files=paths)
    path = _path(source)
    if is_stac(_name(path)):
        return _mosaic([path], level, bands, chunks, nodata, grid, assets, files=None)
    if assets is not None:
        raise InputValueError(f"{path}: assets are for STAC sources (.json); drop assets")
    if crs is not None or resolution is not None:  # one raster, reprojected
        return _mosaic([path], level, bands, chunks, nodata, grid, None, files=[path])
    image = _reader_for(path)(path, level=level, bands=bands, chunks=chunks)
    return _declared(image, nodata)


def _path(source: Any) -> str:
    if not isinstance(source, str | Path):
        raise UnsupportedInputError(
            "source must be a path, a URL, a list of them, or a numpy or dask array; "
            f"got {type(source).__name__}"
        )
    return str(source)


def _name(path: str) -> str:
    """The file name part of a path or URL, lowercase, without a query string."""
    return (urlsplit(path).path if is_url(path) else path).rstrip("/").lower()


def _mosaic(
    paths: list[str],
    level: int | None,
    bands: Sequence[int] | None,
    chunks: Chunks,
    nodata: float | None,
    grid: dict[str, Any],
    assets: Sequence[str] | None,
    *,
    files: list[str] | None,
) -> Image:
    """A mosaic of ``files`` (rasters), or of the STAC document ``paths[0]``."""
    from ._mosaic import Scene, describe_parts, read_mosaic

    if level not in (None, 0):
        raise InputValueError(
            f"{paths[0]}: level {level} cannot be read from a mosaic or a reprojected "
            "raster; drop level"
        )
    if files is None:
        from ._stac import stac_scenes

        _check_exists(paths[0])
        scenes = stac_scenes(paths[0], assets)
        name = paths[0]
    else:
        if assets is not None:
            raise InputValueError("assets are for STAC sources (.json); drop assets")
        if not files:
            raise InputValueError("source: the list of scenes is empty; name at least one file")
        for path in files:
            _check_exists(path)
            if not _name(path).endswith((".tif", ".tiff", ".vrt", ".jp2", ".img")):
                raise UnsupportedInputError(
                    f"{path}: a mosaic is made of georeferenced rasters (GeoTIFF, COG, VRT); "
                    "this is not one"
                )
        parts = describe_parts([(path, None) for path in files])
        scenes = [Scene(name=path, parts=(part,)) for path, part in zip(files, parts, strict=True)]
        name = files[0] if len(files) == 1 else f"mosaic of {len(files)} scenes ({files[0]}, ...)"
    return read_mosaic(scenes, name=name, bands=bands, chunks=chunks, nodata=nodata, **grid)


def _declared(image: Image, nodata: float | None) -> Image:
    """``image`` with the nodata value the user declared, checked against its type."""
    if nodata is None:
        return image
    dtype = image.dtype
    if dtype.kind in "iub":
        info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
        if not (float(nodata).is_integer() and info.min <= nodata <= info.max):
            raise InputValueError(
                f"{image.source or 'image'}: nodata {nodata} cannot occur in its {dtype} "
                f"pixels ({info.min} to {info.max}); declare a whole number in that range"
            )
    return replace(image, nodata=nodata)


def _check_exists(path: str) -> None:
    if is_remote(path):
        check_readable(path)
    elif not Path(local_path(path)).exists():
        raise ReadError(f"{path}: no such file or folder; check the path")


def _from_array(
    array: np.ndarray | da.Array,
    *,
    bands: Sequence[int] | None,
    chunks: Chunks,
    axes: str | None,
    level: int | None,
) -> Image:
    if level not in (None, 0):
        raise InputValueError(f"an array has only level 0; got level {level!r}")
    data = array if isinstance(array, da.Array) else da.from_array(array, chunks="auto")
    axes = axes or DEFAULT_AXES.get(data.ndim)
    if axes is None:
        raise InputValueError(
            f"cannot tell the axes of a {data.ndim}D array of shape {data.shape}; "
            "expected 2 to 4 dimensions"
        )
    if bands is not None:
        if not axes.startswith("c"):
            raise InputValueError(f"bands given, but axes {axes!r} have no band axis 'c'")
        data = data[band_indices(bands, data.shape[0], "array")]
    Image(data=data, axes=axes)  # checks the axes against the data before rechunking
    return Image(data=rechunk(data, chunks, axes), axes=axes)


def _reader_for(path: str) -> Any:
    name = _name(path)
    if not is_remote(path):
        _check_exists(path)
    if name.endswith((".nii", ".nii.gz")):
        from ._nifti import read_nifti

        return read_nifti
    if name.endswith(".zarr") or (is_url(path) and ".zarr/" in name) or _holds_zarr_metadata(path):
        from ._zarr import read_zarr

        return read_zarr
    if name.endswith(".vrt") or (is_remote(path) and name.endswith((".tif", ".tiff"))):
        _check_exists(path)  # before GDAL, whose messages hide a 403 or a 404
        from ._geotiff import read_geotiff

        return read_geotiff
    if name.endswith((".tif", ".tiff", ".svs", ".ndpi", ".scn", ".btf", ".tf8")):
        if is_remote(path):
            raise UnsupportedInputError(
                f"{path}: whole-slide images are read from local paths; copy it to a local "
                "or shared file system"
            )
        from ._tiff import is_georeferenced

        if is_georeferenced(path):
            from ._geotiff import read_geotiff

            return read_geotiff
        from ._tiff import read_tiff

        return read_tiff
    raise UnsupportedInputError(
        f"{path}: unknown image format; segpipe reads zarr / OME-Zarr (.zarr), GeoTIFF and "
        "TIFF (.tif, .tiff), GDAL VRT (.vrt), STAC items (.json), whole-slide images (.svs, "
        ".ndpi, .scn) and NIfTI (.nii, .nii.gz)"
    )


def _holds_zarr_metadata(path: str) -> bool:
    folder = Path(path)
    return folder.is_dir() and any(
        (folder / name).exists() for name in ("zarr.json", ".zarray", ".zgroup")
    )
