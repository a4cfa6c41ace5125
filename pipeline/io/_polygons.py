"""Label maps as polygons: one feature per label, made chunk by chunk on the workers.

Each chunk is polygonised on its own (``rasterio.features.shapes``, 4-connected
pixels) in the pixel coordinates of the whole image, where every vertex is an
integer and so the same float on both sides of a seam. Only labels found in
more than one chunk are dissolved, on the client; the map transform is
applied once, at the end::

        chunk (0, 0)         chunk (0, 1)
    +-------------------+-------------------+
    |   +---+           |                   |   label 7: in one chunk, passes through
    |   | 7 |       +---+---+               |   label 9: a piece in each chunk,
    |   +---+       | 9 | 9 |               |     dissolved by shapely.union_all; the
    |               +---+---+               |     seam edge has the same integer x in
    +-------------------+-------------------+     both pieces, so they join exactly

The writers put the features in a GeoPackage, a GeoJSON or a GeoParquet file,
built under a staging name next to the target and moved into place complete.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import geopandas as gpd  # type: ignore[import-untyped]
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyogrio  # type: ignore[import-untyped]
import shapely  # type: ignore[import-untyped]
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import shapes

from .._batches import compute_batched
from ..errors import InputValueError, UnsupportedInputError
from ._cog import _georeferencing
from ._staging import check_output, staged

__all__ = ["label_polygons", "write_polygons"]

FORMATS = {
    ".gpkg": "GPKG",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".parquet": "GeoParquet",
}
"""The driver written for each file extension (matched case-insensitively)."""

_FILTER_LOCK = threading.Lock()
# rasterio's NotGeoreferencedWarnings for the in-memory rasters of ``shapes``: before
# their transform is set, and when it is the identity (the chunk at pixel 0, 0).
_NO_GEOTRANSFORM = "(Dataset has no geotransform|The given matrix is equal to Affine.identity)"
_NO_CRS = "'crs' was not provided"  # pyogrio's warning for a frame without a CRS
_INT32_MAX = np.iinfo(np.int32).max
_INT64_MAX = np.iinfo(np.int64).max  # OGR's largest integer field
_SHAPES_DTYPES = ("int16", "int32", "uint8", "uint16")  # polygonised as they are


def write_polygons(
    labels: Any,
    path: str | Path,
    *,
    transform: Affine | None = None,
    crs: str | None = None,
    table: pd.DataFrame | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one polygon feature per label of a 2D label map, chunk by chunk.

    The features are those of :func:`label_polygons` (a ``label`` column and
    a Polygon, or a MultiPolygon for a label in several pieces, holes kept),
    with the columns of ``table`` joined on ``label``. The format follows the
    extension of ``path``: ``.gpkg`` (GeoPackage, one layer named after the
    file), ``.geojson`` or ``.json`` (GeoJSON), ``.parquet`` (GeoParquet).
    GeoPackage and GeoJSON are written by pyogrio; a GeoPackage layer holds
    one geometry type, so when some labels are in several pieces every feature
    is stored as a MultiPolygon. GeoJSON and GeoParquet keep each feature's type.

    Parameters
    ----------
    labels
        A 2D dask array (or numpy array) of integers, 0 for background. It is
        read chunk by chunk, never whole.
    path
        The file to write.
    transform
        Pixel to map coordinates (``affine.Affine``): ``transform @ (col, row)``
        is the map position of the top-left corner of pixel ``(row, col)``.
        ``None``: pixel coordinates, y growing down.
    crs
        The coordinate reference system of ``transform``, as WKT or an authority
        code such as ``"EPSG:32633"``; ``None`` when not georeferenced (GeoJSON
        readers then take the coordinates for WGS 84 longitudes and latitudes).
    table
        A table with a ``label`` column (one row per label) whose other
        columns are joined onto the features; labels without a row get
        missing values, rows without a feature are dropped.
    overwrite
        Replace an existing ``path``.

    Returns
    -------
    Path
        ``path``, written completely: the file is built under a hidden staging
        name next to it and moved into place only once it is finished.

    Raises
    ------
    InputValueError
        The extension of ``path`` is not one of :data:`FORMATS`; ``labels``
        is not 2D; ``transform`` is not invertible; ``crs`` is not a CRS or is
        given without ``transform``; ``table`` has no ``label`` column, repeats
        a label or has a ``geometry`` column. Only after the polygons are made:
        a label above 2**63 - 1 for a GeoPackage or GeoJSON file.
    UnsupportedInputError
        ``labels`` are not integers; ``transform`` is not an ``Affine``;
        ``table`` is not a pandas DataFrame, or has columns of complex
        numbers, durations or raw records.
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.

    All of these but the label too large are raised before any chunk is computed.

    Examples
    --------
    >>> import shutil, tempfile
    >>> import pandas as pd
    >>> folder = Path(tempfile.mkdtemp())
    >>> labels = da.from_array(np.array([[1, 1, 0], [0, 2, 2]], dtype=np.uint32), chunks=1)
    >>> out = write_polygons(
    ...     labels, folder / "objects.gpkg",
    ...     transform=Affine(10, 0, 500_000, 0, -10, 4_000_000), crs="EPSG:32633",
    ...     table=pd.DataFrame({"label": [1, 2], "kind": ["tree", "roof"]}),
    ... )
    >>> features = pyogrio.read_dataframe(out)
    >>> features.crs.to_epsg(), features["kind"].tolist(), features.area.tolist()
    (32633, ['tree', 'roof'], [200.0, 200.0])
    >>> shutil.rmtree(folder)
    """
    driver = _driver(path)
    array = _labels(labels)
    _georeferencing(crs, transform)
    extra = _table(table)
    check_output(path, overwrite=overwrite)  # fail before polygonising a single chunk
    features = label_polygons(array, transform=transform, crs=crs)
    if driver != "GeoParquet" and len(features) and features["label"].max() > _INT64_MAX:
        raise InputValueError(
            f"{path}: label {features['label'].max()} is above {_INT64_MAX}, the largest "
            f"integer {driver} stores; write a .parquet file instead"
        )
    if extra is not None:
        features = features.merge(extra, on="label", how="left", validate="one_to_one")
    target = Path(path)
    with staged(target, overwrite=overwrite) as staging:
        # GDAL checks the extension (GPKG warns without one): write under a
        # scratch name that keeps it, then rename to the staging name.
        scratch = staging.with_name(staging.name + target.suffix.lower())
        if driver == "GeoParquet":
            features.to_parquet(scratch)
        else:
            with warnings.catch_warnings():  # on the client, after the chunks are done
                if crs is None:  # not georeferenced, as asked: no need to say so
                    warnings.filterwarnings("ignore", _NO_CRS, UserWarning)
                pyogrio.write_dataframe(features, scratch, driver=driver, layer=target.stem)
        scratch.rename(staging)
    return target


def label_polygons(
    labels: Any, *, transform: Affine | None = None, crs: str | None = None
) -> gpd.GeoDataFrame:
    """One polygon feature per label of a 2D label map, made chunk by chunk on the workers.

    Each chunk is polygonised by ``rasterio.features.shapes`` (4-connected
    pixels) in one task, submitted to the scheduler in batches of chunks
    (see :mod:`pipeline._batches`). A label found in several chunks (an object
    cut by seams, or a label in separate pieces) is dissolved into one
    geometry with ``shapely.union_all``; labels found in one chunk pass
    through as they are.

    Parameters
    ----------
    labels
        A 2D dask array (or numpy array) of integers of any width, 0 for
        background.
    transform
        Pixel to map coordinates (``affine.Affine``); ``None``: pixel
        coordinates, y growing down.
    crs
        The coordinate reference system of ``transform`` (WKT or an authority
        code), set on the result; ``None`` when not georeferenced.

    Returns
    -------
    geopandas.GeoDataFrame
        A ``label`` column (the dtype of ``labels``), sorted, and a geometry
        column: a Polygon per label, or a MultiPolygon for a label in several
        4-connected pieces (pieces touching only at a corner are separate
        pieces), with its holes. Each feature covers exactly its label's
        pixels: its area is their count times the area of a pixel.

    Raises
    ------
    InputValueError
        ``labels`` is not 2D; ``transform`` is not invertible; ``crs`` is not a
        CRS or is given without ``transform``.
    UnsupportedInputError
        ``labels`` are not integers; ``transform`` is not an ``Affine``.

    Examples
    --------
    Label 2 is cut by the seam between the two chunks and comes back whole;
    label 3 has a hole (the background pixel in its middle):

    >>> labels = np.zeros((5, 8), dtype=np.uint64)
    >>> labels[0, :] = 2
    >>> labels[2:5, 5:8] = 3
    >>> labels[3, 6] = 0
    >>> features = label_polygons(da.from_array(labels, chunks=(5, 4)))
    >>> features["label"].tolist(), features.geom_type.tolist(), features.area.tolist()
    ([2, 3], ['Polygon', 'Polygon'], [8.0, 8.0])
    >>> len(features.geometry[1].interiors)
    1
    """
    array = _labels(labels)
    affine = _georeferencing(crs, transform).get("transform")
    ids, geometries = _dissolve(*_pieces(array))
    if affine is not None and affine != Affine.identity():
        geometries = shapely.transform(geometries, _mapping(affine))
    return gpd.GeoDataFrame({"label": ids}, geometry=geometries, crs=crs)


def _driver(path: str | Path) -> str:
    """The driver for the extension of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    if suffix == ".shp":
        hint = (
            "; shapefiles are several files, which cannot appear at once, and cut "
            "column names to 10 characters: write a .gpkg instead"
        )
    else:
        hint = ""
    raise InputValueError(
        f"{path}: cannot tell the polygon format from the extension {suffix or '(none)'!r}; "
        f"expected one of {', '.join(FORMATS)}{hint}"
    )


def _labels(labels: Any) -> da.Array:
    """``labels`` as a dask array, checked to be a 2D map of integers."""
    array = labels if isinstance(labels, da.Array) else da.asarray(labels)
    if array.ndim != 2:
        raise InputValueError(
            f"polygons need a 2D label map; got {array.ndim} dimensions (shape {array.shape})"
        )
    if array.dtype.kind not in "iu":
        raise UnsupportedInputError(
            f"labels must be integers, 0 for background; got {array.dtype} "
            "(label a mask first, with pipeline.label)"
        )
    return array


def _table(table: pd.DataFrame | None) -> pd.DataFrame | None:
    """``table`` checked to be joinable on ``label``."""
    if table is None:
        return None
    if not isinstance(table, pd.DataFrame):
        raise UnsupportedInputError(
            f"table must be a pandas DataFrame with a 'label' column; got {type(table).__name__}"
        )
    if "label" not in table.columns:
        hint = " (it is the index: pass table.reset_index())" if table.index.name == "label" else ""
        raise InputValueError(
            f"table has no 'label' column to join on{hint}; its columns are {list(table.columns)}"
        )
    if not pd.api.types.is_integer_dtype(table["label"]):
        raise InputValueError(
            f"table's 'label' column must hold integer labels; got {table['label'].dtype}"
        )
    repeated = table["label"][table["label"].duplicated()]
    if len(repeated):
        raise InputValueError(
            f"table must have one row per label; labels {repeated.unique()[:10].tolist()} "
            "appear more than once"
        )
    unstorable = [str(name) for name, dtype in table.dtypes.items() if dtype.kind in "cmV"]
    if unstorable:
        raise UnsupportedInputError(
            f"table columns {unstorable} hold complex numbers, durations or raw records, "
            "which have no field type in GeoPackage or GeoJSON; convert them first"
        )
    if "geometry" in table.columns:
        raise InputValueError(
            "table has a 'geometry' column, which would replace the polygons; rename it"
        )
    return table


def _pieces(array: da.Array) -> tuple[np.ndarray, np.ndarray]:
    """Labels and WKB geometries of every chunk, one per label per chunk, concatenated."""
    rows, cols = (np.cumsum((0, *sizes[:-1])) for sizes in array.chunks)
    blocks = array.to_delayed()
    task = dask.delayed(_chunk_polygons, pure=True)
    parts = [task(blocks[i, j], int(rows[i]), int(cols[j])) for i, j in np.ndindex(*blocks.shape)]
    results = compute_batched(parts)
    ids = np.concatenate([np.empty(0, array.dtype), *(ids for ids, _ in results)])
    wkb = np.concatenate([np.empty(0, object), *(wkb for _, wkb in results)])
    return ids, wkb


def _chunk_polygons(block: np.ndarray, row0: int, col0: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels of one chunk and their geometries as WKB, in pixel coordinates of the whole
    image (``row0``, ``col0``: the chunk's first pixel): a Polygon per label, or a
    MultiPolygon of its pieces; the labels sorted."""
    block = np.asarray(block)
    if not block.any():
        return np.empty(0, block.dtype), np.empty(0, object)
    local, values = _local_ids(block)
    _quiet_in_memory_rasters()
    values_found, pieces = [], []
    for geojson, value in shapes(
        local,
        mask=local != 0,
        transform=Affine.translation(col0, row0),
        connectivity=4,
    ):
        values_found.append(int(value))
        pieces.append(shapely.geometry.shape(geojson))
    found = np.asarray(values_found)
    order = np.argsort(found, kind="stable")
    ids, starts, counts = np.unique(found[order], return_index=True, return_counts=True)
    pieces_sorted = np.empty(len(pieces), dtype=object)
    pieces_sorted[:] = pieces
    pieces_sorted = pieces_sorted[order]
    geometries = pieces_sorted[starts]
    for k in np.flatnonzero(counts > 1):  # 4-connected pieces meet at corners at most
        geometries[k] = shapely.multipolygons(pieces_sorted[starts[k] : starts[k] + counts[k]])
    labels = ids if values is None else values[ids - 1]
    return labels.astype(block.dtype), shapely.to_wkb(geometries)


def _quiet_in_memory_rasters() -> None:
    """Ignore the NotGeoreferencedWarning of the in-memory rasters ``shapes`` makes.

    rasterio wraps each array in an in-memory raster that warns it has no
    geotransform before its transform is set, and hides that warning with
    ``warnings.catch_warnings``, which is not thread-safe: with chunks in
    several threads, one leaving the block restores the filters while another
    is still inside, and the warning escapes. So the filter joins the
    process's warning filters (again if something has reset them), for those
    two warnings only, as in ``kernels._superpixels``.
    """
    with _FILTER_LOCK:
        for action, message, category, *_ in warnings.filters:
            if (
                action == "ignore"
                and category is NotGeoreferencedWarning
                and getattr(message, "pattern", message) == _NO_GEOTRANSFORM
            ):
                return
        warnings.filterwarnings(
            "ignore",
            message=_NO_GEOTRANSFORM,
            category=NotGeoreferencedWarning,
        )


def _local_ids(block: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``block`` as a label map ``rasterio.features.shapes`` reads (int32 or narrower),
    and the labels of its ids 1..n (``None`` when the ids are the labels themselves).

    uint32, uint64 and int64 labels above 2**31 - 1 (or negative) are
    renumbered 1..n within the chunk; the others are only cast.
    """
    if block.dtype.name in _SHAPES_DTYPES and block.min() >= 0:
        return block, None
    if block.min() >= 0 and block.max() <= _INT32_MAX:
        return block.astype(np.int32), None
    foreground = block != 0
    values, inverse = np.unique(block[foreground], return_inverse=True)
    local = np.zeros(block.shape, np.int32)
    local[foreground] = inverse + 1
    return local, values


def _dissolve(ids: np.ndarray, wkb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One geometry per label: pieces of labels found in several chunks are unioned.

    Pieces are in whole-image pixel coordinates: the edges of two pieces
    meeting at a seam lie on the same line, x or y an integer held exactly,
    so they union without slivers or gaps.
    """
    order = np.argsort(ids, kind="stable")
    ids, geometries = ids[order], shapely.from_wkb(wkb[order])
    labels, starts, counts = np.unique(ids, return_index=True, return_counts=True)
    dissolved = geometries[starts]
    for k in np.flatnonzero(counts > 1):
        dissolved[k] = shapely.union_all(geometries[starts[k] : starts[k] + counts[k]])
    return labels, dissolved


def _mapping(affine: Affine) -> Any:
    """Pixel (col, row) coordinates, an (n, 2) array, to map (x, y) by ``affine``."""
    matrix = np.array([[affine.a, affine.d], [affine.b, affine.e]])
    offset = np.array([affine.c, affine.f])

    def apply(coords: np.ndarray) -> np.ndarray:
        return coords @ matrix + offset

    return apply
