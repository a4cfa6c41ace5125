"""Mosaics: many scenes read as one image on one grid, chunk by chunk.

A mosaic is a list of scenes in priority order; each scene is one or more
raster files (parts) that together give every band (a multi-band GeoTIFF, or
one file per band as STAC items hold them). The grid covers the union of the
scenes' footprints. Where scenes overlap, the first scene with a valid pixel
gives it, band by band, as ``rasterio.merge.merge`` does; where no scene has
data the mosaic holds its nodata value. A pixel is valid in a scene unless it
is NaN, the scene's nodata (the declared one, else its file's tag) or the
mosaic's nodata (which could not be told from "no data" once in the mosaic).

Scenes in the grid's CRS and resolution whose pixels line up with it are read
window by window as they are; the others are reprojected on the fly
(rasterio's ``WarpedVRT``) when the workflow asks for a ``crs`` or a
``resolution``, and refused otherwise. Every chunk is one task that opens only
the scenes whose footprint it touches: the graph holds paths and footprints,
never pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._common import Chunks, band_indices, spatial_chunks
from ._image import Image
from ._raster import crs_name, open_raster, spacing_of, units_of

RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode")
_DEFAULT_CHUNK = 1024
_TOLERANCE = 1e-6  # of a pixel: offsets and sizes closer than this are equal


@dataclass(frozen=True)
class Part:
    """One raster file of a scene and the bands it gives the mosaic."""

    path: str
    indexes: tuple[int, ...]  # 1-based bands of the file, in mosaic order
    crs: str | None
    transform: Any
    width: int
    height: int
    nodata: float | None
    dtype: str


@dataclass(frozen=True)
class Scene:
    """One scene: its name (for messages) and the parts that give every band."""

    name: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Placement:
    """Where a part lies on the mosaic's grid: its box of pixels (rows, columns, end
    excluded, clipped to the grid), and whether it is read as is or reprojected."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    warped: bool


@dataclass(frozen=True)
class MosaicInfo:
    """What ``segpipe inspect`` shows of a mosaic: its scenes and where they lie."""

    scenes: tuple[Scene, ...]
    placements: tuple[tuple[Placement, ...], ...]  # per scene, per part
    resampling: str
    covered: float  # share of the grid's pixels inside some scene's box


def describe_part(path: str, indexes: Sequence[int] | None = None) -> Part:
    """A part's metadata, read from its file (local path or URL)."""
    with open_raster(path) as src:
        if src.crs is None and src.transform.is_identity:
            raise ReadError(
                f"{path}: has no georeference (no CRS, no transform); a mosaic places "
                "scenes by their map coordinates: georeference it first"
            )
        chosen = tuple(indexes) if indexes is not None else tuple(range(1, src.count + 1))
        for index in chosen:
            if not 1 <= index <= src.count:
                raise InputValueError(
                    f"{path}: band {index} is out of range; it has 1 to {src.count}"
                )
        dtypes = {src.dtypes[i - 1] for i in chosen}
        if len(dtypes) != 1:
            raise UnsupportedInputError(
                f"{path}: bands of types {sorted(dtypes)}; a scene's bands must share one type"
            )
        return Part(
            path=path,
            indexes=chosen,
            crs=src.crs.to_wkt() if src.crs is not None else None,
            transform=src.transform,
            width=src.width,
            height=src.height,
            nodata=src.nodata,
            dtype=dtypes.pop(),
        )


def describe_parts(requests: Sequence[tuple[str, Sequence[int] | None]]) -> list[Part]:
    """Metadata of many parts, read a few at a time (remote files answer slowly)."""
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(requests)))) as pool:
        return list(pool.map(lambda request: describe_part(*request), requests))


def read_mosaic(
    scenes: Sequence[Scene],
    *,
    name: str,
    bands: Sequence[int] | None,
    chunks: Chunks,
    nodata: float | None,
    crs: str | None,
    resolution: float | Sequence[float] | None,
    resampling: str,
) -> Image:
    """Read ``scenes`` lazily as one image (axes ``"cyx"``) on one grid.

    Parameters
    ----------
    scenes
        In priority order: where two overlap, the first valid pixel wins.
    name
        What the mosaic is called in messages and records.
    bands
        Bands to keep, counted from 1, of every scene.
    chunks
        One chunk size for both spatial axes, or ``(rows, columns)``; default 1024.
    nodata
        The value that means "no data" in every scene, overriding their tags; also
        the mosaic's fill where no scene has data (default: the first scene's tag,
        else 0).
    crs, resolution, resampling
        The grid to reproject every scene onto (a CRS such as ``"EPSG:32633"``,
        pixel size in its units: one value or ``(x, y)``), and how
        (``nearest``, ``bilinear``, ...). Without them every scene must already
        share the first one's CRS, resolution and pixel alignment.

    Raises
    ------
    InputValueError
        Scenes that do not share a grid (named) when no ``crs`` or ``resolution``
        is given; bands, chunks or a nodata value that do not fit.
    """
    if not scenes:
        raise InputValueError(f"{name}: a mosaic needs at least one scene")
    if resampling not in RESAMPLING:
        raise InputValueError(
            f"{name}: resampling {resampling!r} is not one of {', '.join(RESAMPLING)}"
        )
    count = _band_count(scenes, name)
    keep = band_indices(bands, count, name)
    scenes = [_select(scene, keep) for scene in scenes]
    parts = [part for scene in scenes for part in scene.parts]
    dtype = np.result_type(*(np.dtype(part.dtype) for part in parts))
    if dtype.kind not in "biuf":
        raise UnsupportedInputError(f"{name}: band type {dtype} is not supported")
    fill = _fill_value(nodata, parts, dtype, name)
    grid = _grid(scenes, crs=crs, resolution=resolution, name=name)
    placements = tuple(tuple(_place(part, grid) for part in scene.parts) for scene in scenes)
    try:
        sizes = spatial_chunks(chunks, "cyx", (len(keep), _DEFAULT_CHUNK, _DEFAULT_CHUNK))
    except InputValueError as err:
        raise InputValueError(f"{name}: {err}") from None
    shape = (len(keep), grid.height, grid.width)
    data = da.map_blocks(
        _read_chunk,
        scenes=tuple(scenes),
        placements=placements,
        grid=grid,
        fill=fill,
        nodata=nodata,
        resampling=resampling,
        chunks=da.core.normalize_chunks(sizes, shape),
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype),
        name="read-mosaic-" + tokenize(scenes, grid, fill, nodata, resampling, sizes),
    )
    info = MosaicInfo(
        scenes=tuple(scenes),
        placements=placements,
        resampling=resampling,
        covered=_covered(placements, grid),
    )
    return Image(
        data=data,
        axes="cyx",
        crs=grid.crs,
        transform=grid.transform,
        nodata=fill,
        spacing=spacing_of(grid.transform),
        units=units_of(grid.crs),
        source=name,
        mosaic=info,
    )


@dataclass(frozen=True)
class _Grid:
    crs: str | None
    transform: Any
    width: int
    height: int


def _band_count(scenes: Sequence[Scene], name: str) -> int:
    counts = {scene.name: sum(len(part.indexes) for part in scene.parts) for scene in scenes}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{scene}: {count}" for scene, count in counts.items())
        raise InputValueError(
            f"{name}: the scenes have different numbers of bands ({listed}); every scene "
            "must give the same bands: pick them with bands: [...] per file, or assets:"
        )
    return next(iter(counts.values()))


def _select(scene: Scene, keep: list[int]) -> Scene:
    """The scene with only the mosaic bands ``keep`` (0-based), parts without any dropped."""
    parts, start = [], 0
    for part in scene.parts:
        mine = [part.indexes[i - start] for i in keep if start <= i < start + len(part.indexes)]
        if mine:
            parts.append(Part(**{**part.__dict__, "indexes": tuple(mine)}))
        start += len(part.indexes)
    return Scene(name=scene.name, parts=tuple(parts))


def _fill_value(nodata: float | None, parts: Sequence[Part], dtype: np.dtype, name: str) -> Any:
    value = nodata if nodata is not None else parts[0].nodata
    value = 0 if value is None else value
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not (float(value).is_integer() and info.min <= value <= info.max):
            raise InputValueError(
                f"{name}: nodata {value} does not fit the scenes' type {dtype} "
                f"({info.min} to {info.max}); declare a nodata value of that type"
            )
        return int(value)
    return float(value)


def _grid(
    scenes: Sequence[Scene],
    *,
    crs: str | None,
    resolution: float | Sequence[float] | None,
    name: str,
) -> _Grid:
    """The grid every scene is placed on: the union of their footprints."""
    from rasterio.crs import CRS

    parts = [part for scene in scenes for part in scene.parts]
    first = parts[0]
    if crs is None and resolution is None:
        _refuse_differences(scenes, name)
        target_crs, (rx, ry) = first.crs, _resolution(first.transform)
    else:
        target = _crs(crs, name) if crs is not None else CRS.from_wkt(first.crs or "")
        target_crs = target.to_wkt()
        if resolution is not None:
            rx, ry = _pair(resolution, name)
        elif _same_crs(first.crs, target_crs):
            rx, ry = _resolution(first.transform)
        else:
            raise InputValueError(
                f"{name}: give resolution: (the pixel size in the units of {crs_name(target_crs)}) "
                f"to reproject the scenes; the first scene, {scenes[0].name}, is in "
                f"{crs_name(first.crs)}"
            )
    anchor_x, anchor_y = 0.0, 0.0
    if _same_crs(first.crs, target_crs) and _close(_resolution(first.transform), (rx, ry)):
        anchor_x, anchor_y = first.transform.c, first.transform.f  # keep the first scene's pixels
    left, bottom, right, top = _union_bounds(parts, target_crs)
    col0 = math.floor((left - anchor_x) / rx + _TOLERANCE)
    col1 = math.ceil((right - anchor_x) / rx - _TOLERANCE)
    row0 = math.floor((anchor_y - top) / ry + _TOLERANCE)
    row1 = math.ceil((anchor_y - bottom) / ry - _TOLERANCE)
    from affine import Affine

    transform = Affine(rx, 0.0, anchor_x + col0 * rx, 0.0, -ry, anchor_y - row0 * ry)
    return _Grid(crs=target_crs, transform=transform, width=col1 - col0, height=row1 - row0)


def _refuse_differences(scenes: Sequence[Scene], name: str) -> None:
    """Every part must share the first's CRS, resolution and pixel alignment."""
    first = scenes[0].parts[0]
    res = _resolution(first.transform)
    problems = []
    for scene in scenes:
        for part in scene.parts:
            if not _same_crs(part.crs, first.crs):
                problems.append(f"{scene.name} is in {crs_name(part.crs)}")
            elif not _straight(part.transform) or not _close(_resolution(part.transform), res):
                found = "x".join(f"{r:g}" for r in _resolution(part.transform))
                problems.append(f"{scene.name} has pixels of {found}")
            elif not _aligned(part.transform, first.transform):
                problems.append(f"{scene.name} is shifted by a fraction of a pixel")
    if problems:
        raise InputValueError(
            f"{name}: the scenes do not share one grid: {scenes[0].name} is in "
            f"{crs_name(first.crs)} with pixels of {'x'.join(f'{r:g}' for r in res)}, but "
            f"{'; '.join(problems[:5])}{' ...' if len(problems) > 5 else ''}; give crs: and "
            "resolution: (and resampling:, default nearest) to reproject them onto one grid"
        )


def _place(part: Part, grid: _Grid) -> Placement:
    """The part's box on the grid, and whether it must be reprojected."""
    direct = (
        _same_crs(part.crs, grid.crs)
        and _straight(part.transform)
        and _close(_resolution(part.transform), _resolution(grid.transform))
        and _aligned(part.transform, grid.transform)
    )
    if direct:
        row = round((grid.transform.f - part.transform.f) / -grid.transform.e)
        col = round((part.transform.c - grid.transform.c) / grid.transform.a)
        rows, cols = (row, row + part.height), (col, col + part.width)
    else:  # the reprojected box, a pixel wider for the resampling kernel
        left, bottom, right, top = _bounds_in(part, grid.crs)
        inverse = ~grid.transform
        c0, r0 = inverse @ (left, top)
        c1, r1 = inverse @ (right, bottom)
        rows = (math.floor(min(r0, r1)) - 1, math.ceil(max(r0, r1)) + 1)
        cols = (math.floor(min(c0, c1)) - 1, math.ceil(max(c0, c1)) + 1)
    clip_rows = (max(rows[0], 0), min(rows[1], grid.height))
    clip_cols = (max(cols[0], 0), min(cols[1], grid.width))
    return Placement(rows=clip_rows, cols=clip_cols, warped=not direct)


def _read_chunk(
    *,
    scenes: tuple[Scene, ...],
    placements: tuple[tuple[Placement, ...], ...],
    grid: _Grid,
    fill: Any,
    nodata: float | None,
    resampling: str,
    block_info: dict[Any, Any],
) -> np.ndarray:
    """One chunk of the mosaic: the first valid pixel of the scenes it touches (a worker)."""
    bands, (row0, row1), (col0, col1) = block_info[None]["array-location"]
    dtype = block_info[None]["dtype"]
    out = np.full((bands[1] - bands[0], row1 - row0, col1 - col0), fill, dtype=dtype)
    missing = np.ones(out.shape, dtype=bool)
    box = ((row0, row1), (col0, col1))
    for scene, placed in zip(scenes, placements, strict=True):
        band = 0
        for part, where in zip(scene.parts, placed, strict=True):
            count = len(part.indexes)
            if _overlaps(where, box):
                values, valid = _read_part(part, where, grid, box, nodata, resampling)
                if not np.isnan(fill):  # the mosaic's own nodata is no data in any scene
                    valid &= values != np.asarray(fill).astype(values.dtype)
                take = valid & missing[band : band + count]
                out[band : band + count][take] = values[take]
                missing[band : band + count] &= ~valid
            band += count
        if not missing.any():
            break
    return out


def _read_part(
    part: Part,
    where: Placement,
    grid: _Grid,
    box: tuple[tuple[int, int], tuple[int, int]],
    nodata: float | None,
    resampling: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The part's values over the chunk ``box`` and where they are valid."""
    from rasterio.windows import Window

    (row0, row1), (col0, col1) = box
    shape = (len(part.indexes), row1 - row0, col1 - col0)
    declared = part.nodata if nodata is None else nodata
    with open_raster(part.path) as src:
        if not where.warped:
            r0, r1 = max(row0, where.rows[0]), min(row1, where.rows[1])
            c0, c1 = max(col0, where.cols[0]), min(col1, where.cols[1])
            window = Window(c0 - where.cols[0], r0 - where.rows[0], c1 - c0, r1 - r0)
            values = np.zeros(shape, dtype=part.dtype)
            valid = np.zeros(shape, dtype=bool)
            inner = (slice(None), slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
            values[inner] = src.read(list(part.indexes), window=window)
            valid[inner] = True
        else:
            values, valid = _warped(src, part, grid, box, declared, resampling)
    if declared is not None and not np.isnan(declared):
        valid &= values != np.asarray(declared).astype(values.dtype)
    if values.dtype.kind == "f":
        valid &= ~np.isnan(values)
    return values, valid


def _warped(
    src: Any,
    part: Part,
    grid: _Grid,
    box: tuple[tuple[int, int], tuple[int, int]],
    declared: float | None,
    resampling: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The part reprojected onto the grid over ``box``, and where it has data."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    (row0, row1), (col0, col1) = box
    window = Window(col0, row0, col1 - col0, row1 - row0)
    options: dict[str, Any] = {
        "crs": grid.crs,
        "transform": grid.transform,
        "width": grid.width,
        "height": grid.height,
        "resampling": Resampling[resampling],
        # GDAL's default approximates the projection to 1/8 pixel on a grid laid over
        # the window read, so a pixel would depend on the chunking; this is exact.
        "tolerance": 1e-6,
    }
    if declared is not None:
        options.update(src_nodata=declared, nodata=declared)
    else:
        options["add_alpha"] = True
    with WarpedVRT(src, **options) as vrt:
        values = vrt.read(list(part.indexes), window=window)
        if declared is not None:
            valid = vrt.read_masks(list(part.indexes), window=window) > 0
        else:
            alpha = vrt.read(vrt.count, window=window) > 0
            valid = np.broadcast_to(alpha, values.shape).copy()
    return values, valid


def _overlaps(where: Placement, box: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    (row0, row1), (col0, col1) = box
    return (
        where.rows[0] < row1
        and row0 < where.rows[1]
        and where.cols[0] < col1
        and col0 < where.cols[1]
    )


def _covered(placements: tuple[tuple[Placement, ...], ...], grid: _Grid) -> float:
    """Share of the grid's pixels inside some scene's box (counted on a grid of at most
    about 4 million cells)."""
    step = max(1, math.ceil(math.sqrt(grid.height * grid.width / (1 << 22))))
    covered = np.zeros((-(-grid.height // step), -(-grid.width // step)), dtype=bool)
    for placed in placements:
        for where in placed:
            rows = slice(where.rows[0] // step, -(-where.rows[1] // step))
            cols = slice(where.cols[0] // step, -(-where.cols[1] // step))
            covered[rows, cols] = True
    return float(covered.mean())


def _union_bounds(parts: Sequence[Part], crs: str | None) -> tuple[float, float, float, float]:
    boxes = np.array([_bounds_in(part, crs) for part in parts])
    return (
        float(boxes[:, 0].min()),
        float(boxes[:, 1].min()),
        float(boxes[:, 2].max()),
        float(boxes[:, 3].max()),
    )


def _bounds_in(part: Part, crs: str | None) -> tuple[float, float, float, float]:
    """The part's (left, bottom, right, top) in ``crs``."""
    from rasterio.transform import array_bounds

    west, south, east, north = array_bounds(part.height, part.width, part.transform)
    bounds = (min(west, east), min(south, north), max(west, east), max(south, north))
    if _same_crs(part.crs, crs):
        return bounds
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds(part.crs, crs, *bounds, densify_pts=21)
    return left, bottom, right, top


def _crs(value: str, name: str) -> Any:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(value)
    except CRSError as err:
        raise InputValueError(
            f"{name}: crs {value!r} is not a coordinate reference system ({err}); give an "
            "EPSG code such as 'EPSG:32633', or WKT"
        ) from None


def _pair(resolution: float | Sequence[float], name: str) -> tuple[float, float]:
    values = [resolution] if isinstance(resolution, int | float) else list(resolution)
    if len(values) not in (1, 2) or any(
        isinstance(v, bool) or not isinstance(v, int | float) or not v > 0 for v in values
    ):
        raise InputValueError(
            f"{name}: resolution must be one positive pixel size or [x, y]; got {resolution!r}"
        )
    return float(values[0]), float(values[-1])


def _resolution(transform: Any) -> tuple[float, float]:
    return abs(float(transform.a)), abs(float(transform.e))


def _straight(transform: Any) -> bool:
    """North up, no rotation: rows go down, columns go right."""
    return transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=0) for x, y in zip(a, b, strict=True))


def _aligned(transform: Any, reference: Any) -> bool:
    """Whether the pixel corners of ``transform`` fall on those of ``reference``."""
    cols = (transform.c - reference.c) / reference.a
    rows = (transform.f - reference.f) / reference.e
    return abs(cols - round(cols)) < _TOLERANCE and abs(rows - round(rows)) < _TOLERANCE


def _same_crs(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    from rasterio.crs import CRS

    return bool(CRS.from_wkt(a) == CRS.from_wkt(b))
