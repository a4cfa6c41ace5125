"""GeoTIFF and Cloud-Optimized GeoTIFF read with rasterio, one task per chunk.

Each task opens the file by path and reads one window of whole tiles, so the
graph holds only the path and the windows: it pickles to a few kilobytes and
runs on any worker that sees the same path.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
from dask.base import tokenize
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window
from tifffile import TiffPage

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._common import Chunks, band_indices, check_level, spatial_chunks
from ._image import Image
from ._tiff import check_complete, open_tiff, round_up_to_tiles

_STRIPED_CHUNK = 1024  # chunk edge of a striped (not tiled) file
_QUIET_OPEN = threading.Lock()
_UNITS = {"metre": "m", "meter": "m", "kilometre": "km", "foot": "ft", "degree": "degree"}


def read_geotiff(
    path: str, *, level: int | None, bands: Sequence[int] | None, chunks: Chunks
) -> Image:
    """Read a GeoTIFF lazily, with its CRS, transform and nodata value.

    Parameters
    ----------
    path
        The file.
    level
        0 (the default) for full resolution, ``k >= 1`` for the ``k``-th
        overview (GDAL's ``overview_level=k - 1``).
    bands
        Band numbers to keep, counted from 1 as GDAL does; default all.
    chunks
        One chunk size for both spatial axes or ``(rows, columns)``, rounded up
        to whole tiles; default one tile (1024 x 1024 for a striped file).
        Every band is in one chunk.

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
    with _open(path, 0) as src:
        count, nodata, crs, dtype = src.count, src.nodata, src.crs, _dtype(path, src.dtypes)
        georeferenced = crs is not None or not src.transform.is_identity
        overviews = len(src.overviews(1))
    level = check_level(level, 1 + overviews, path)
    indexes = [i + 1 for i in band_indices(bands, count, path)]
    grids = [_grid(path, k) for k in range(1 + overviews)]  # metadata only
    height, width, transform, block = grids[level]

    with open_tiff(path) as tif:
        pages = [
            p
            for p in tif.pages
            if isinstance(p, TiffPage) and (p.imagelength, p.imagewidth) == (height, width)
        ]
        tiled = pages[0].is_tiled if pages else block[1] < width
        check_complete(path, pages)
    default = block if tiled else (_STRIPED_CHUNK, _STRIPED_CHUNK)
    try:
        sizes = spatial_chunks(chunks, "cyx", (len(indexes), *default))
    except InputValueError as err:
        raise InputValueError(f"{path}: {err}") from None
    if tiled:
        sizes = round_up_to_tiles(sizes, (1, *block))

    stat = Path(path).stat()
    data = da.map_blocks(
        _read_window,
        path=path,
        level=level,
        indexes=indexes,
        quiet=not georeferenced,
        chunks=da.core.normalize_chunks(sizes, (len(indexes), height, width)),
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype),
        name="read-geotiff-"
        + tokenize(path, stat.st_mtime_ns, stat.st_size, level, indexes, sizes),
    )
    spacing = (math.hypot(transform.b, transform.e), math.hypot(transform.a, transform.d))
    return Image(
        data=data,
        axes="cyx",
        crs=crs.to_wkt() if crs is not None else None,
        transform=transform if georeferenced else None,
        nodata=nodata,
        spacing=spacing if georeferenced else None,
        units=_units(crs),
        source=path,
        level=level,
        levels=tuple((count, rows, cols) for rows, cols, *_ in grids),
    )


def _open(path: str, level: int, *, quiet: bool = True) -> Any:
    """``rasterio.open`` of ``level`` (0 = full resolution), failures as ReadError.

    ``quiet`` silences rasterio's NotGeoreferencedWarning: a file without a
    geotransform is read as such and given ``transform=None``.
    """
    options = {"overview_level": level - 1} if level else {}
    try:
        if not quiet:
            return rasterio.open(path, **options)
        # catch_warnings swaps process-wide filters: two threads interleaving it
        # can restore the filters while the other opens, so open one at a time.
        with _QUIET_OPEN, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path, **options)
    except RasterioIOError as err:
        if not Path(path).exists():
            raise ReadError(f"{path}: no such file; check the path") from None
        raise ReadError(
            f"{path}: cannot be read as a GeoTIFF ({err}); if it was copied or downloaded, "
            "the copy may be incomplete: copy or download it again"
        ) from err


def _dtype(path: str, names: Sequence[str]) -> np.dtype:
    """The one numpy type of every band, if segpipe can segment it."""
    try:
        dtype = np.dtype(names[0]) if len(set(names)) == 1 else None
    except TypeError:  # GDAL types without a numpy equivalent, such as complex_int16
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise UnsupportedInputError(
            f"{path}: band type {', '.join(sorted(set(names)))} is not supported; segpipe "
            "reads GeoTIFFs whose bands share one integer or real (float) type"
        )
    return dtype


def _grid(path: str, level: int) -> tuple[int, int, Any, tuple[int, int]]:
    """Rows, columns, transform and block (tile or strip) shape of ``level``."""
    with _open(path, level) as src:
        return src.height, src.width, src.transform, src.block_shapes[0]


def _units(crs: Any) -> str | None:
    """Unit of the CRS axes: "m" for metres, "degree" for a geographic CRS."""
    if crs is None:
        return None
    if crs.is_geographic:
        return "degree"
    name = crs.linear_units
    return None if name in ("", "unknown") else _UNITS.get(name, name)


def _read_window(
    *,
    path: str,
    level: int,
    indexes: list[int],
    quiet: bool,
    block_info: dict[Any, Any],
) -> np.ndarray:
    """One chunk: open ``path`` and read its window of ``level`` (runs on a worker)."""
    (row0, row1), (col0, col1) = block_info[None]["array-location"][1:]
    window = Window(col0, row0, col1 - col0, row1 - row0)
    # Only files without a geotransform touch the process-wide warning filters.
    with _open(path, level, quiet=quiet) as src:
        try:
            return src.read(indexes=indexes, window=window)
        except RasterioIOError as err:
            raise ReadError(
                f"{path}: reading rows {row0}:{row1}, columns {col0}:{col1} of level {level} "
                f"failed ({err}); the file may have changed or been damaged since it was "
                "opened: copy or download it again"
            ) from err
