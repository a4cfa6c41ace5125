"""Rasters opened with rasterio (GDAL): local files and URLs, failures as clear errors."""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ReadError
from ._remote import describe_failure, gdal_env, gdal_path, is_url

_QUIET_OPEN = threading.Lock()
_UNITS = {"metre": "m", "meter": "m", "kilometre": "km", "foot": "ft", "degree": "degree"}


@contextmanager
def open_raster(path: str, level: int = 0, *, quiet: bool = True) -> Iterator[Any]:
    """``rasterio.open`` of ``level`` (0 = full resolution, ``k`` = the ``k``-th
    overview) of a local path or URL, failures raised as :class:`ReadError`.

    ``quiet`` silences rasterio's NotGeoreferencedWarning: a file without a
    geotransform is read as such.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    options = {"overview_level": level - 1} if level else {}
    with gdal_env(path):
        try:
            if quiet:
                # catch_warnings swaps process-wide filters: two threads interleaving it
                # can restore the filters while the other opens, so open one at a time.
                with _QUIET_OPEN, warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    src = rasterio.open(gdal_path(path), **options)
            else:
                src = rasterio.open(gdal_path(path), **options)
        except RasterioIOError as err:
            if is_url(path):
                raise ReadError(describe_failure(path, err)) from None
            if not Path(path).exists():
                raise ReadError(f"{path}: no such file; check the path") from None
            raise ReadError(
                f"{path}: cannot be read as a raster ({err}); if it was copied or downloaded, "
                "the copy may be incomplete: copy or download it again"
            ) from err
        with src:
            yield src


def crs_name(wkt: str | None) -> str:
    """A short name of a CRS for messages: ``EPSG:31985``, else its name.

    Examples
    --------
    >>> crs_name(None)
    'no CRS'
    """
    if wkt is None:
        return "no CRS"
    from rasterio.crs import CRS

    crs = CRS.from_wkt(wkt)
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else wkt.split('"')[1] if '"' in wkt else wkt


def spacing_of(transform: Any) -> tuple[float, float]:
    """Pixel height and width of a raster's transform, in its CRS units."""
    return (math.hypot(transform.b, transform.e), math.hypot(transform.a, transform.d))


def units_of(wkt: str | None) -> str | None:
    """Unit of the CRS axes: ``"m"`` for metres, ``"degree"`` for a geographic CRS."""
    if wkt is None:
        return None
    from rasterio.crs import CRS

    crs = CRS.from_wkt(wkt)
    if crs.is_geographic:
        return "degree"
    name = crs.linear_units
    return None if name in ("", "unknown") else _UNITS.get(name, name)
