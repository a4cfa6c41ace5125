"""open_image: any supported source to an Image, read lazily."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._common import DEFAULT_AXES, Chunks, band_indices, rechunk
from ._image import Image


def open_image(
    source: Any,
    *,
    level: int | None = None,
    bands: Sequence[int] | None = None,
    chunks: Chunks = None,
    axes: str | None = None,
) -> Image:
    """Open an image lazily: nothing but metadata is read until its chunks are computed.

    Parameters
    ----------
    source
        A path or URL: a zarr v2/v3 array or OME-Zarr image (``.zarr`` or a
        folder holding zarr metadata; fsspec URLs too), a GeoTIFF / COG
        (``.tif``, ``.tiff`` with georeferencing), a tiled or pyramidal TIFF or
        whole-slide image (``.tif``, ``.svs``, ``.ome.tif``), a NIfTI volume
        (``.nii``, ``.nii.gz``); or a numpy or dask array.
    level
        Pyramid level to read (0, the default, is full resolution).
    bands
        Band numbers to keep, counted from 1 as GDAL does; default all.
    chunks
        Chunk size: one int for every spatial axis or one per spatial axis.
        Default: the file's own tiles or chunks.
    axes
        For arrays only: their axes (default ``"yx"``, ``"zyx"``, ``"czyx"`` by
        dimension).

    Raises
    ------
    ReadError
        The path does not exist or the file cannot be read.
    UnsupportedInputError
        The source is of a kind or format segpipe does not read.
    InputValueError
        ``level``, ``bands``, ``chunks`` or ``axes`` do not fit the source.

    Examples
    --------
    >>> import numpy as np
    >>> image = open_image(np.zeros((4, 6), dtype=np.uint8), chunks=2)
    >>> image.axes, image.data.chunksize
    ('yx', (2, 2))
    """
    if isinstance(source, np.ndarray | da.Array):
        return _from_array(source, bands=bands, chunks=chunks, axes=axes, level=level)
    if axes is not None:
        raise InputValueError("axes is only for arrays; files say their own axes")
    if not isinstance(source, str | Path):
        raise UnsupportedInputError(
            f"source must be a path, a URL, or a numpy or dask array; got {type(source).__name__}"
        )
    return _reader_for(str(source))(str(source), level=level, bands=bands, chunks=chunks)


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
    name = path.rstrip("/").lower()
    is_url = "://" in path
    if not is_url and not Path(path).exists():
        raise ReadError(f"{path}: no such file or folder; check the path")
    if name.endswith((".nii", ".nii.gz")):
        from ._nifti import read_nifti

        return read_nifti
    if name.endswith(".zarr") or _holds_zarr_metadata(path):
        from ._zarr import read_zarr

        return read_zarr
    if name.endswith((".tif", ".tiff", ".svs", ".ndpi", ".scn", ".btf", ".tf8")):
        from ._tiff import is_georeferenced

        if is_georeferenced(path):
            from ._geotiff import read_geotiff

            return read_geotiff
        from ._tiff import read_tiff

        return read_tiff
    raise UnsupportedInputError(
        f"{path}: unknown image format; segpipe reads zarr / OME-Zarr (.zarr), GeoTIFF and "
        "TIFF (.tif, .tiff), whole-slide images (.svs, .ndpi, .scn) and NIfTI (.nii, .nii.gz)"
    )


def _holds_zarr_metadata(path: str) -> bool:
    folder = Path(path)
    return folder.is_dir() and any(
        (folder / name).exists() for name in ("zarr.json", ".zarray", ".zgroup")
    )
