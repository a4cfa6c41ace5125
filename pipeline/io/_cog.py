"""Label maps written as Cloud-Optimised GeoTIFFs, by one process, window by window.

GDAL writers are not safe across processes, so the GeoTIFF is written on the
client from a finished label zarr array, in two steps::

    labels.zarr --(windows of whole 512 x 512 tiles)--> scratch tiled GeoTIFF
                --(GDAL COG driver: overviews, COG layout)--> out

Both files live under a staging name next to ``out`` until the COG is complete.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.env import GDALVersion
from rasterio.errors import CRSError, NotGeoreferencedWarning
from rasterio.windows import Window

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._common import halvings
from ._staging import check_output, staged
from ._zarr import open_label_array

__all__ = ["write_cog"]

BLOCK = 512
"""Tile size of the COG, full resolution and overviews alike."""

OVERVIEW_MIN = 256
"""Overviews halve the image until its larger side fits in this many pixels."""

_MAX_WINDOW = 4096  # at most 4096 x 4096 pixels (128 MiB of uint64) in memory at once
_DTYPES = ("uint8", "uint16", "uint32", "uint64")
_COG_OPTIONS = {
    "BLOCKSIZE": str(BLOCK),
    # Read by every TIFF reader; ZSTD was about 10% faster and 4% smaller on
    # label maps, but older GIS tools and web viewers cannot decode it.
    "COMPRESS": "DEFLATE",
    # Horizontal differencing made label maps 30% larger: labels are runs of
    # one value with jumps at object borders, not smooth ramps.
    "PREDICTOR": "NO",
    # Overviews pick a pixel instead of averaging: labels are ids, not amounts.
    "RESAMPLING": "NEAREST",
    "BIGTIFF": "IF_SAFER",
}
_SCRATCH_OPTIONS = {
    "tiled": True,
    "blockxsize": BLOCK,
    "blockysize": BLOCK,
    "compress": "ZSTD",  # read back once by the COG step: fast beats small here
    "zstd_level": 1,
    "bigtiff": "IF_SAFER",
}


def write_cog(
    labels_zarr: str | Path,
    out: str | Path,
    *,
    crs: str | None,
    transform: Affine | None,
    overwrite: bool = False,
) -> Path:
    """Write a finished 2D label zarr as a Cloud-Optimised GeoTIFF.

    Runs in this process only (GDAL writers are not safe across processes),
    reading the zarr array a window of whole 512 x 512 tiles at a time, never
    the whole array. The COG has 512 x 512 DEFLATE tiles and overviews made by
    nearest-neighbour sampling (every overview value is a label of the full
    image), each half the size of the previous one, down to the first whose
    larger side is at most 256 pixels. 0 is background, a valid value, so no
    nodata value is set.

    Parameters
    ----------
    labels_zarr
        Path or URL of a label output (:func:`~pipeline.io.write_labels_zarr`:
        its data variable is read) or of a zarr v2 or v3 array: 2D, of unsigned
        integers (``uint8`` to ``uint64``), 0 for background.
    out
        Path of the GeoTIFF to write.
    crs
        The coordinate reference system as WKT (or any string rasterio
        understands, such as ``"EPSG:32633"``); ``None`` when not georeferenced.
    transform
        Pixel to map coordinates (``affine.Affine``); ``None`` when not
        georeferenced. Required when ``crs`` is given.
    overwrite
        Replace an existing ``out``.

    Returns
    -------
    Path
        ``out``, written completely: the COG is built under a hidden staging
        name next to ``out`` and moved into place only once it is finished.

    Raises
    ------
    ReadError
        ``labels_zarr`` does not exist or is neither a label output nor a zarr array.
    UnsupportedInputError
        The array is not of unsigned integers, or holds ``uint64`` and
        rasterio's GDAL is older than 3.5; or ``transform`` is not an ``Affine``.
    InputValueError
        The array is not 2D or is empty; ``crs`` is not a CRS; ``crs`` is given
        without ``transform``; ``transform`` is not invertible.
    OutputExistsError
        ``out`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import shutil, tempfile
    >>> import dask.array as da
    >>> from pipeline.io import write_labels_zarr
    >>> folder = Path(tempfile.mkdtemp())
    >>> labels = da.from_array(np.arange(12, dtype=np.uint32).reshape(3, 4), chunks=2)
    >>> source = write_labels_zarr(labels, folder / "labels.zarr")
    >>> cog = write_cog(
    ...     source, folder / "labels.tif",
    ...     crs="EPSG:32633", transform=Affine(10, 0, 500_000, 0, -10, 4_000_000),
    ... )
    >>> with rasterio.open(cog) as dataset:
    ...     dataset.crs.to_epsg(), dataset.read(1)[1].tolist()
    (32633, [4, 5, 6, 7])
    >>> shutil.rmtree(folder)
    """
    array = _open_labels(labels_zarr)
    georef = _georeferencing(crs, transform)
    check_output(out, overwrite=overwrite)  # fail before reading a single pixel
    height, width = array.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": np.dtype(array.dtype).name,
        **georef,
        **_SCRATCH_OPTIONS,
    }
    cog_options = {**_COG_OPTIONS, "OVERVIEW_COUNT": str(overview_count(height, width))}
    native = np.dtype(array.dtype).newbyteorder("=")
    with staged(out, overwrite=overwrite) as staging, warnings.catch_warnings():
        if not georef:  # not georeferenced, as asked: no need to say so
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
        scratch = staging.with_name(f"{staging.name}.tiles.tif")
        with rasterio.open(scratch, "w", **profile) as dataset:
            dataset.update_tags(**_provenance(labels_zarr, array))
            for window in _windows(array):
                rows, cols = window.toslices()
                dataset.write(np.asarray(array[rows, cols], dtype=native), 1, window=window)
        rasterio.shutil.copy(scratch, staging, driver="COG", **cog_options)
    return Path(out)


def overview_count(height: int, width: int) -> int:
    """How many 2x overviews bring the larger side down to at most ``OVERVIEW_MIN`` pixels.

    Examples
    --------
    >>> overview_count(352, 349), overview_count(3000, 2500), overview_count(256, 100)
    (1, 4, 0)
    """
    return halvings(height, width, OVERVIEW_MIN)


def _open_labels(labels_zarr: str | Path) -> Any:
    """The labels at ``labels_zarr``, checked to be a 2D unsigned label array."""
    source = str(labels_zarr)
    try:
        array = open_label_array(source)
    except (ReadError, UnsupportedInputError) as error:
        raise ReadError(
            f"{source}: not a zarr array nor a label output ({error}); give the path of "
            "the labels written by write_labels_zarr"
        ) from error
    dtype = np.dtype(array.dtype)
    if array.ndim != 2:
        raise InputValueError(
            f"{source}: a GeoTIFF holds 2D labels; this array has {array.ndim} dimensions "
            f"(shape {array.shape}); write 3D labels with write_ome_zarr instead"
        )
    if 0 in array.shape:
        raise InputValueError(f"{source}: the array is empty (shape {array.shape})")
    if dtype.name not in _DTYPES:
        raise UnsupportedInputError(
            f"{source}: labels must be unsigned integers ({', '.join(_DTYPES)}); got {dtype}"
        )
    if dtype.name == "uint64" and not GDALVersion.runtime().at_least("3.5"):
        raise UnsupportedInputError(
            f"{source}: uint64 labels need GDAL 3.5 or newer to be written as GeoTIFF; "
            f"rasterio here uses GDAL {rasterio.__gdal_version__}: upgrade rasterio, or "
            "store the labels as uint32 if the largest label is below 2**32"
        )
    return array


def _georeferencing(crs: str | None, transform: Affine | None) -> dict[str, Any]:
    """``crs`` and ``transform`` checked and as rasterio profile keys; ``{}`` for neither."""
    if transform is not None and not isinstance(transform, Affine):
        raise UnsupportedInputError(
            f"transform must be an affine.Affine or None; got {type(transform).__name__} "
            f"{transform!r} (for a GDAL geotransform g, use Affine.from_gdal(*g))"
        )
    if transform is not None and transform.determinant == 0:
        raise InputValueError(f"transform {tuple(transform)[:6]} is not invertible")
    if crs is None:
        return {} if transform is None else {"transform": transform}
    if transform is None:
        raise InputValueError(
            "crs is given but transform is None: a CRS needs the transform that places "
            "the pixels in it (for an Image, pass image.crs and image.transform)"
        )
    try:
        parsed = CRS.from_user_input(crs)
    except CRSError as error:
        raise InputValueError(
            f"crs {crs[:80]!r} is not a coordinate reference system rasterio understands; "
            f"expected WKT or an authority code such as 'EPSG:32633' ({error})"
        ) from error
    return {"crs": parsed, "transform": transform}


def _windows(array: Any) -> Iterator[Window]:
    """Windows covering ``array``, each made of whole COG tiles and about whole zarr chunks.

    A window side is the zarr chunk side rounded up to whole 512-pixel tiles,
    capped at ``_MAX_WINDOW``: each tile is compressed once, and chunks that
    are multiples of 512 (the usual 1024, 2048, ...) are read once.
    """
    height, width = array.shape
    step_y, step_x = (min(_MAX_WINDOW, -(-chunk // BLOCK) * BLOCK) for chunk in array.chunks)
    for row in range(0, height, step_y):
        for col in range(0, width, step_x):
            yield Window(col, row, min(step_x, width - col), min(step_y, height - row))


def _provenance(labels_zarr: str | Path, array: Any) -> dict[str, str]:
    try:
        software = f"segpipe {version('segpipe')}"
    except PackageNotFoundError:  # a source tree that was never installed
        software = "segpipe"
    tags = {"TIFFTAG_SOFTWARE": software, "SEGPIPE_SOURCE": str(labels_zarr)}
    attributes = dict(array.attrs)
    if attributes:
        tags["SEGPIPE_ATTRIBUTES"] = json.dumps(attributes, sort_keys=True, default=str)
    return tags
