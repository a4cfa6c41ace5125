"""GeoTIFF, Cloud-Optimized GeoTIFF and GDAL VRT read with rasterio, one task per chunk.

Each task opens the file by path or URL and reads one window, so the graph
holds only the path and the windows: it pickles to a few kilobytes and runs on
any worker that sees the same path (or the same object store, see
:mod:`pipeline.io._remote`). A VRT's sources are opened by GDAL as each window
needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._common import Chunks, band_indices, check_level, spatial_chunks
from ._image import Image
from ._raster import open_raster, spacing_of, units_of
from ._remote import fsspec_token, is_url

_STRIPED_CHUNK = 1024  # chunk edge of a striped (not tiled) file


def read_geotiff(
    path: str, *, level: int | None, bands: Sequence[int] | None, chunks: Chunks
) -> Image:
    """Read a GeoTIFF, COG or GDAL VRT lazily, with its CRS, transform and nodata value.

    Parameters
    ----------
    path
        The file: a local path, or an ``s3://``, ``gs://``, ``az://`` or
        ``http(s)://`` URL (see :mod:`pipeline.io._remote`).
    level
        0 (the default) for full resolution, ``k >= 1`` for the ``k``-th
        overview (GDAL's ``overview_level=k - 1``).
    bands
        Band numbers to keep, counted from 1 as GDAL does; default all.
    chunks
        One chunk size for both spatial axes or ``(rows, columns)``, as given
        (a chunk that cuts tiles reads the tiles on its edges, which its
        neighbour reads too); default one tile (1024 x 1024 for a striped
        file). Every band is in one chunk.

    Returns
    -------
    Image
        Axes ``"cyx"``; ``crs`` as WKT, ``transform`` of the level read,
        ``spacing`` (pixel height, pixel width) in ``units`` of the CRS.
        ``crs``, ``transform``, ``spacing`` and ``units`` are None for a file
        without a geotransform (georeferenced by ground control points only).

    Raises
    ------
    ReadError
        The file is missing, unreadable or truncated.
    InputValueError
        ``level``, ``bands`` or ``chunks`` do not fit the file.
    UnsupportedInputError
        Its bands differ in type, or the type is complex.

    Examples
    --------
    >>> from pipeline.data import sample_path
    >>> image = read_geotiff(str(sample_path("L7_ETMs.tif")), level=1, bands=[3], chunks=None)
    >>> image.axes, image.shape, image.data.chunksize, image.units
    ('cyx', (1, 176, 175), (1, 128, 128), 'm')
    """
    with open_raster(path) as src:
        count, nodata, crs, dtype = src.count, src.nodata, src.crs, _dtype(path, src.dtypes)
        georeferenced = crs is not None or not src.transform.is_identity
        overviews = len(src.overviews(1))
    level = check_level(level, 1 + overviews, path)
    indexes = [i + 1 for i in band_indices(bands, count, path)]
    grids = [_grid(path, k) for k in range(1 + overviews)]  # metadata only
    height, width, transform, block = grids[level]
    if not is_url(path) and path.lower().endswith((".tif", ".tiff")):
        _check_complete(path, height, width)
    tiled = block[0] > 1 and (block[1] < width or block[0] == block[1])
    default = block if tiled else (_STRIPED_CHUNK, _STRIPED_CHUNK)
    try:
        sizes = spatial_chunks(chunks, "cyx", (len(indexes), *default))
    except InputValueError as err:
        raise InputValueError(f"{path}: {err}") from None

    data = da.map_blocks(
        _read_window,
        path=path,
        level=level,
        indexes=indexes,
        quiet=not georeferenced,
        chunks=da.core.normalize_chunks(sizes, (len(indexes), height, width)),
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype),
        name="read-geotiff-" + tokenize(path, _version(path), level, indexes, sizes),
    )
    return Image(
        data=data,
        axes="cyx",
        crs=crs.to_wkt() if crs is not None else None,
        transform=transform if georeferenced else None,
        nodata=nodata,
        spacing=spacing_of(transform) if georeferenced else None,
        units=units_of(crs.to_wkt()) if crs is not None else None,
        source=path,
        level=level,
        levels=tuple((count, rows, cols) for rows, cols, *_ in grids),
    )


def _check_complete(path: str, height: int, width: int) -> None:
    """Refuse a local TIFF cut short (its tiles or strips point past the end)."""
    from tifffile import TiffPage

    from ._tiff import check_complete, open_tiff

    with open_tiff(path) as tif:
        pages = [
            p
            for p in tif.pages
            if isinstance(p, TiffPage) and (p.imagelength, p.imagewidth) == (height, width)
        ]
        check_complete(path, pages)


def _version(path: str) -> Any:
    """What changes when the file does: size and modification time (or ETag)."""
    if is_url(path):
        return fsspec_token(path)
    stat = Path(path).stat()
    return stat.st_mtime_ns, stat.st_size


def _dtype(path: str, names: Sequence[str]) -> np.dtype:
    """The one numpy type of every band, if segpipe can segment it."""
    try:
        dtype = np.dtype(names[0]) if len(set(names)) == 1 else None
    except TypeError:  # GDAL types without a numpy equivalent, such as complex_int16
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise UnsupportedInputError(
            f"{path}: band type {', '.join(sorted(set(names)))} is not supported; segpipe "
            "reads rasters whose bands share one integer or real (float) type"
        )
    return dtype


def _grid(path: str, level: int) -> tuple[int, int, Any, tuple[int, int]]:
    """Rows, columns, transform and block (tile or strip) shape of ``level``."""
    with open_raster(path, level) as src:
        return src.height, src.width, src.transform, src.block_shapes[0]


def _read_window(
    *,
    path: str,
    level: int,
    indexes: list[int],
    quiet: bool,
    block_info: dict[Any, Any],
) -> np.ndarray:
    """One chunk: open ``path`` and read its window of ``level`` (runs on a worker)."""
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    (row0, row1), (col0, col1) = block_info[None]["array-location"][1:]
    window = Window(col0, row0, col1 - col0, row1 - row0)
    # Only files without a geotransform touch the process-wide warning filters.
    with open_raster(path, level, quiet=quiet) as src:
        try:
            return src.read(indexes=indexes, window=window)
        except RasterioIOError as err:
            raise ReadError(
                f"{path}: reading rows {row0}:{row1}, columns {col0}:{col1} of level {level} "
                f"failed ({err}); the file may have changed or been damaged since it was "
                "opened: copy or download it again"
            ) from err
