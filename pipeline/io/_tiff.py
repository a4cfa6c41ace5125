"""Tiled, pyramidal and whole-slide TIFF (OME-TIFF, Aperio .svs) read with tifffile.

Every chunk is one task that opens the file by path and reads its region
through tifffile's zarr view of the pyramid level: tifffile's store holds an
open file handle and cannot be pickled, so no store or array object is put in
the graph, only the path and the region to read.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
import zarr
from dask.base import tokenize

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._common import Chunks, band_indices, check_level, spatial_chunks
from ._image import Image

# tifffile series axes -> segpipe axes; S (samples), C (channels) become "c",
# Z, Q (unknown) and I (image sequence) become "z".
_AXES = {
    "YX": "yx",
    "YXS": "cyx",
    "SYX": "cyx",
    "CYX": "cyx",
    "ZYX": "zyx",
    "QYX": "zyx",
    "IYX": "zyx",
    "CZYX": "czyx",
    "ZCYX": "czyx",
}
_LETTER = {"S": "c", "C": "c", "Z": "z", "Q": "z", "I": "z", "Y": "y", "X": "x"}
_GEO_TAGS = (34735, 34264)  # GeoKeyDirectoryTag, ModelTransformationTag
_TIEPOINT, _PIXEL_SCALE = 33922, 33550
_UM_PER = {
    "pm": 1e-6,
    "Å": 1e-4,
    "nm": 1e-3,
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
}
_STRIPED_CHUNK = {2: 1024, 3: 256}  # default edge of a chunk of a striped file


def open_tiff(path: str) -> tifffile.TiffFile:
    """``tifffile.TiffFile(path)``, its failures raised as :class:`ReadError`."""
    try:
        tif = tifffile.TiffFile(path)
    except FileNotFoundError:
        raise ReadError(f"{path}: no such file; check the path") from None
    except (tifffile.TiffFileError, OSError, ValueError) as err:
        reason = str(err)
    else:
        if len(tif.pages):
            return tif
        tif.close()
        reason = "it holds no readable image directory"
    raise ReadError(
        f"{path}: cannot be read as a TIFF ({reason}); if it was copied or downloaded, "
        "the copy may be incomplete: copy or download it again"
    )


def is_georeferenced(path: str) -> bool:
    """Whether the first page of the TIFF at ``path`` carries GeoTIFF georeferencing.

    True when it has a GeoKeyDirectoryTag, a ModelTransformationTag, or a
    ModelTiepointTag together with a ModelPixelScaleTag.

    Raises
    ------
    ReadError
        The file does not exist or is not a readable TIFF.

    Examples
    --------
    >>> from pipeline.data import sample_path
    >>> is_georeferenced(str(sample_path("L7_ETMs.tif")))
    True
    >>> is_georeferenced(str(sample_path("nuclei.tif")))
    False
    """
    with open_tiff(path) as tif:
        tags = tif.pages.first.tags
        return any(code in tags for code in _GEO_TAGS) or (
            _TIEPOINT in tags and _PIXEL_SCALE in tags
        )


def check_complete(path: str, pages: Iterable[Any]) -> None:
    """Raise :class:`ReadError` if the image data of any of ``pages`` lies past the end
    of its file, or if the file's chain of image directories is cut: the header
    survived a copy or download that was cut short.

    ``pages`` are tifffile pages or frames; ``None`` entries are skipped. A cut
    chain matters because tifffile then reads a multi-page stack as fewer pages.
    """
    files = set()
    for page in pages:
        if page is None:
            continue
        if id(page.parent) not in files:
            files.add(id(page.parent))
            _check_directories(path, page.parent)
        if not len(page.dataoffsets):
            continue
        ends = np.asarray(page.dataoffsets, np.int64) + np.asarray(page.databytecounts, np.int64)
        size = page.parent.filehandle.size
        if int(ends.max()) > size:
            raise ReadError(
                f"{path}: the file is truncated: the tile or strip data of page {page.index} "
                f"runs to byte {int(ends.max())} but the file has {size} bytes; "
                "copy or download it again"
            )


def _check_directories(path: str, tif: Any) -> None:
    """ReadError unless the last image directory tifffile found says it is the last."""
    last, fmt, fh = tif.pages[-1], tif.tiff, tif.filehandle
    fh.seek(last.offset)
    count = fh.read(fmt.tagnosize)
    if len(count) == fmt.tagnosize:
        fh.seek(
            last.offset + fmt.tagnosize + struct.unpack(fmt.tagnoformat, count)[0] * fmt.tagsize
        )
        pointer = fh.read(fmt.offsetsize)
        if len(pointer) == fmt.offsetsize and struct.unpack(fmt.offsetformat, pointer)[0] == 0:
            return
    raise ReadError(
        f"{path}: the file is truncated or damaged: the directory of the page after page "
        f"{last.index} is missing or unreadable; copy or download it again"
    )


def read_tiff(
    path: str, *, level: int | None, bands: Sequence[int] | None, chunks: Chunks
) -> Image:
    """Read the first image series of a TIFF, OME-TIFF or whole-slide image lazily.

    Parameters
    ----------
    path
        The file.
    level
        Pyramid level (0, the default, is full resolution).
    bands
        Channels (samples) to keep, counted from 1; default all.
    chunks
        One chunk size for every spatial axis or one per spatial axis, as given
        (a chunk that cuts tiles reads the tiles on its edges, which its
        neighbour reads too); default one tile (1024 for a striped 2D image, 256
        for a striped volume), the same along z as along y.

    Returns
    -------
    Image
        Axes ``"yx"``, ``"cyx"``, ``"zyx"`` or ``"czyx"``; ``spacing`` in
        micrometres from Aperio's ``MPP`` or OME's ``PhysicalSize*``, scaled
        to the level read, else None.

    Raises
    ------
    ReadError
        The file is missing, not a TIFF, or truncated.
    InputValueError
        ``level``, ``bands`` or ``chunks`` do not fit the file.
    UnsupportedInputError
        Its axes or dtype are not supported.

    Examples
    --------
    >>> from pipeline.data import sample_path
    >>> image = read_tiff(str(sample_path("nuclei.tif")), level=None, bands=None, chunks=None)
    >>> image.axes, image.shape, image.data.chunksize
    ('zyx', (60, 256, 256), (60, 256, 256))
    """
    with open_tiff(path) as tif:
        if not tif.series:
            raise UnsupportedInputError(f"{path}: holds no image series tifffile can read")
        series = tif.series[0]
        level = check_level(level, len(series.levels), path)
        file_axes = series.levels[level].axes
        axes = _AXES.get(file_axes)
        if axes is None:
            raise UnsupportedInputError(
                f"{path}: image axes {file_axes!r} are not supported; segpipe reads TIFF "
                f"series with axes {', '.join(_AXES)}"
            )
        letters = "".join(_LETTER[a] for a in file_axes)
        order = [letters.index(a) for a in axes]  # file axis of each segpipe axis
        array = zarr.open_array(series.aszarr(level=level), mode="r")  # metadata only
        native_chunks = tuple(array.chunks[i] for i in order)
        dtype = np.dtype(series.dtype)
        if dtype.kind not in "biuf":
            raise UnsupportedInputError(
                f"{path}: pixel type {dtype} is not supported; segpipe reads integer, "
                "boolean and real (float) images"
            )
        shapes = tuple(tuple(lv.shape[i] for i in order) for lv in series.levels)
        shape = shapes[level]
        if "c" in axes:
            channels = band_indices(bands, shape[0], path)
        elif bands is not None:
            raise InputValueError(
                f"{path}: bands given, but the image (axes {axes!r}) has no channels; "
                "leave bands out"
            )
        else:
            channels = []
        target = _chunks(path, chunks, axes, shape, native_chunks, series.levels[level].keyframe)
        spacing = _spacing(tif, series, level, axes)
        check_complete(path, series.levels[level].pages)
        if series.dataoffset is not None:  # contiguous data: pages may not all be listed
            end, size = series.dataoffset + series.nbytes, tif.filehandle.size
            if end > size:
                raise ReadError(
                    f"{path}: the file is truncated: its image data runs to byte {end} but "
                    f"the file has {size} bytes; copy or download it again"
                )

    if "c" in axes:
        shape = (len(channels), *shape[1:])
        target = (len(channels), *target[1:])
    stat = Path(path).stat()
    data = da.map_blocks(
        _read_block,
        path=path,
        level=level,
        order=order,
        channels=channels if channels and channels != list(range(shapes[level][0])) else None,
        chunks=da.core.normalize_chunks(target, shape),
        dtype=dtype,
        meta=np.empty((0,) * len(axes), dtype),
        name="read-tiff-" + tokenize(path, stat.st_mtime_ns, stat.st_size, level, channels, target),
    )
    return Image(
        data=data,
        axes=axes,
        spacing=spacing,
        units="um" if spacing is not None else None,
        source=path,
        level=level,
        levels=shapes,
    )


def _chunks(
    path: str,
    chunks: Chunks,
    axes: str,
    shape: tuple[int, ...],
    native: tuple[int, ...],
    page: Any,
) -> tuple[int, ...]:
    """Chunk sizes in segpipe axis order: ``chunks`` validated, else one tile."""
    tiled = bool(page.is_tiled)
    if tiled:
        edge = min(native[axes.index("y")], native[axes.index("x")])
        spatial = {"z": edge, "y": native[axes.index("y")], "x": native[axes.index("x")]}
    else:
        edge = _STRIPED_CHUNK[len(axes.replace("c", ""))]
        spatial = {"z": edge, "y": edge, "x": edge}
    default = [shape[i] if axis == "c" else spatial[axis] for i, axis in enumerate(axes)]
    try:
        return spatial_chunks(chunks, axes, default)
    except InputValueError as err:
        raise InputValueError(f"{path}: {err}") from None


def _spacing(tif: Any, series: Any, level: int, axes: str) -> tuple[float, ...] | None:
    """Pixel size in micrometres along the spatial axes of ``level``, if the file says it."""
    spatial = axes.replace("c", "")
    full: dict[str, float] = {}
    if tif.is_svs:
        match = re.search(r"\bMPP\s*=\s*([0-9.eE+-]+)", tif.pages.first.description or "")
        if match:
            full = {"y": float(match.group(1)), "x": float(match.group(1))}
    elif tif.is_ome and tif.ome_metadata:
        full = _ome_sizes(tif.ome_metadata)
    if not all(axis in full for axis in spatial):
        return None
    base, here = series.levels[0], series.levels[level]
    scale = {_LETTER[a]: base.shape[i] / here.shape[i] for i, a in enumerate(here.axes) if a != "S"}
    return tuple(full[axis] * scale[axis] for axis in spatial)


def _ome_sizes(xml: str) -> dict[str, float]:
    """PhysicalSizeX/Y/Z of the first OME image, in micrometres, keyed "x", "y", "z"."""
    try:
        image = tifffile.xml2dict(xml)["OME"]["Image"]
    except (KeyError, TypeError, ValueError):
        return {}
    pixels = (image[0] if isinstance(image, list) else image).get("Pixels", {})
    sizes = {}
    for axis in "xyz":
        value = pixels.get(f"PhysicalSize{axis.upper()}")
        factor = _UM_PER.get(pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm"))
        if value is not None and factor is not None:
            sizes[axis] = float(value) * factor
    return sizes


def _read_block(
    *,
    path: str,
    level: int,
    order: list[int],
    channels: list[int] | None,
    block_info: dict[Any, Any],
) -> np.ndarray:
    """One chunk: open ``path`` and read its region of ``level`` (runs on a worker)."""
    location = block_info[None]["array-location"]
    selection: list[Any] = [None] * len(order)
    for out_axis, file_axis in enumerate(order):
        selection[file_axis] = slice(*location[out_axis])
    if channels is not None:  # the channel axis, first in segpipe order, in one chunk
        selection[order[0]] = channels
    try:
        with tifffile.TiffFile(path) as tif:
            array = zarr.open_array(tif.series[0].aszarr(level=level), mode="r")
            block = array.oindex[tuple(selection)]
    except (OSError, ValueError, KeyError, tifffile.TiffFileError) as err:
        raise ReadError(
            f"{path}: reading level {level} at {location} failed ({err}); the file may have "
            "changed or been damaged since it was opened: copy or download it again"
        ) from err
    return np.transpose(np.asarray(block), order)
