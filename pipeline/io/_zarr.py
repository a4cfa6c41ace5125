"""zarr: label maps written to zarr v3 (complete or not at all), and zarr / OME-Zarr read.

A label output is a zarr group xarray opens (see :mod:`pipeline.io._label_zarr`);
scratch arrays (:func:`record_chunks` without ``name``) are plain arrays.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._cf import from_grid_mapping
from ._chunks import Digest, Written, store_chunks
from ._common import DEFAULT_AXES, Chunks, band_indices, check_level, spatial_chunks
from ._image import AXES, Image
from ._label_zarr import create_output, data_variable, finish_output
from ._staging import check_output, move_into_place, staged


def write_labels_zarr(
    labels: da.Array,
    path: str | Path,
    *,
    attributes: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    name: str = "labels",
) -> Path:
    """Compute ``labels`` into a zarr v3 group at ``path`` that xarray opens as a Dataset.

    The labels are the group's data variable ``name`` (``path/name``), with
    dimension names ``(y, x)`` or ``(z, y, x)`` and one zarr chunk per dask
    chunk. ``attributes`` (as :func:`~pipeline.workflow._record.georeference`
    makes them: ``axes``, ``crs``, ``transform``, ``spacing``, ``units``)
    are kept on the data variable and give it coordinates: pixel centres and
    a CF grid mapping that rioxarray reads when there are a CRS and a
    transform, index x spacing when there is only voxel spacing. The layout
    is drawn in :mod:`pipeline.io._label_zarr`.

    The group is written under a staging name next to ``path`` and moved into
    place only when every chunk is written, so a failed run leaves no partial
    output; an existing ``path`` is replaced only with ``overwrite=True``.
    ``progress`` shows a progress bar on the terminal while a distributed
    cluster writes. :func:`write_labels_zarr_resumable` is the same with a
    staging folder that survives a killed run.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    InputValueError
        ``labels`` are not 2D or 3D, or ``name`` is not an identifier or is
        the name of a coordinate.

    Examples
    --------
    >>> import shutil, tempfile
    >>> import xarray as xr
    >>> folder = Path(tempfile.mkdtemp())
    >>> labels = da.from_array(np.arange(12, dtype=np.uint32).reshape(3, 4), chunks=2)
    >>> path = write_labels_zarr(labels, folder / "labels.zarr")
    >>> xr.open_zarr(path)["labels"].dims, open_label_array(path).chunks
    (('y', 'x'), (2, 2))
    >>> shutil.rmtree(folder)
    """
    labels = _regular(labels)
    with staged(path, overwrite=overwrite) as staging:
        create_output(labels, staging, attributes, name)
        store_chunks(labels, staging / name, _done(staging), progress=progress)
        finish_output(staging, name, attributes)
    return Path(path)


def write_labels_zarr_resumable(
    labels: da.Array,
    path: str | Path,
    *,
    run_key: str,
    resume: bool,
    attributes: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    retries: int = 0,
    digest: Digest | None = None,
    name: str = "labels",
) -> Written:
    """Write ``labels`` to ``path`` like :func:`write_labels_zarr`, resumably.

    The group is built in ``.<path's name>.run-<run_key>`` next to ``path``, and each
    chunk is recorded once it is on disk (see :mod:`pipeline.io._chunks`). If
    the run dies, that folder stays; the same run started again with
    ``resume=True`` writes only the chunks not recorded. Without ``resume``
    a leftover folder is discarded and the array is written from scratch.
    ``run_key`` must change whenever the labels would (a digest of the
    workflow and its input). ``digest``: what to keep of every chunk as it
    is written (see :func:`~pipeline.io._chunks.store_chunks`); returned in
    ``Written.digests``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    InputValueError
        ``resume`` and the staged array's shape, chunks or dtype differ from
        ``labels``'.
    ChunkError
        Chunks failed; every other chunk is written and recorded.
    """
    target = check_output(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.run-{run_key}")
    written = record_chunks(
        _regular(labels),
        staging,
        resume=resume,
        attributes=attributes,
        progress=progress,
        retries=retries,
        digest=digest,
        name=name,
    )
    finish_output(staging, name, attributes)
    move_into_place(staging, target, overwrite=overwrite)
    shutil.rmtree(_done(staging))
    return written


def record_chunks(
    data: da.Array,
    path: Path,
    *,
    resume: bool,
    attributes: Mapping[str, Any] | None = None,
    progress: bool = False,
    retries: int = 0,
    digest: Digest | None = None,
    scratch: bool = False,
    name: str | None = None,
) -> Written:
    """Write ``data`` into a new zarr array at ``path``, each chunk recorded once on disk.

    The markers go in ``<path>.done`` (see :mod:`pipeline.io._chunks`). With
    ``resume`` an array left there by an interrupted run is kept and only its
    unrecorded chunks are written; otherwise any leftover is discarded first.
    ``data``'s chunks must be regular (all but the last per axis equal).
    ``scratch``: the array is read once more and deleted, so it is compressed
    for speed (LZ4, about half the CPU time of the default zstd, for twice
    the bytes). ``name``: ``path`` is a label output group (see
    :func:`write_labels_zarr`) whose data variable ``name`` gets the chunks.

    Raises
    ------
    InputValueError
        ``resume`` and the array found has another shape, chunks or dtype.
    ChunkError
        Chunks failed; every other chunk is written and recorded.
    """
    done = _done(path)
    array_path = path if name is None else path / name
    if resume and path.exists():
        _check_staged(array_path, data)
    else:
        for leftover in (path, done):
            if leftover.exists():
                shutil.rmtree(leftover)
        if name is None:
            _create(data, path, attributes, _FAST if scratch else "auto")
        else:
            create_output(data, path, attributes, name)
    return store_chunks(data, array_path, done, progress=progress, retries=retries, digest=digest)


def _done(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def _regular(labels: da.Array) -> da.Array:
    """Regular chunks (all but the last per axis equal) map one-to-one onto zarr chunks."""
    return labels.rechunk(tuple(sizes[0] for sizes in labels.chunks))


# Scratch arrays: byte-level LZ4 without shuffling, the fastest both ways on label chunks.
_FAST = (BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle"),)


def _create(
    labels: da.Array,
    path: Path,
    attributes: Mapping[str, Any] | None,
    compressors: Any = "auto",
) -> None:
    zarr.create_array(
        path,
        shape=labels.shape,
        chunks=tuple(sizes[0] for sizes in labels.chunks),
        dtype=labels.dtype,
        fill_value=np.zeros((), labels.dtype),
        attributes=dict(attributes or {}),
        compressors=compressors,
        # zarr's own all-fill-value check costs about 3x the write of a label chunk.
        config={"write_empty_chunks": True},
    )


def _check_staged(staging: Path, labels: da.Array) -> None:
    try:
        array = zarr.open_array(str(staging), mode="r")
    except FileNotFoundError as err:  # zarr's NodeNotFoundError derives from it too
        raise InputValueError(
            f"{staging}: the run to resume left no labels array there (an output of "
            "another layout, or a damaged one); run without --resume"
        ) from err
    found = (array.shape, array.chunks, array.dtype)
    wanted = (labels.shape, tuple(sizes[0] for sizes in labels.chunks), labels.dtype)
    if found != wanted:
        raise InputValueError(
            f"{staging}: the run to resume wrote shape {found[0]}, chunks {found[1]}, "
            f"dtype {found[2]}; this run makes shape {wanted[0]}, chunks {wanted[1]}, dtype "
            f"{wanted[2]}: its chunks would not line up; run without --resume"
        )


# --- reading ----------------------------------------------------------------------------------

# OME-Zarr axis units (NGFF uses UDUNITS-2 names) to the short names Image.units uses.
_UNITS = {
    "meter": "m",
    "centimeter": "cm",
    "millimeter": "mm",
    "micrometer": "um",
    "nanometer": "nm",
}
# Dimension names of plain arrays (segpipe's "axes", xarray's _ARRAY_DIMENSIONS, zarr v3
# dimension_names, xarray's dims) to segpipe axes.
_DIMENSIONS = {
    **dict.fromkeys(("c", "band", "bands", "channel", "channels"), "c"),
    **{"z": "z", "y": "y", "x": "x"},
    **dict.fromkeys(("lat", "latitude"), "y"),
    **dict.fromkeys(("lon", "longitude"), "x"),
}
_DTYPE_KINDS = "biuf"


@dataclass(frozen=True)
class _Layout:
    """What a zarr node holds: one array per pyramid level and how to read them."""

    arrays: tuple[zarr.Array, ...]
    axes: str
    drop_t: bool = False  # a leading OME-Zarr time axis of size 1
    spacings: tuple[tuple[float, ...] | None, ...] | None = None  # one per level
    units: str | None = None
    crs: str | None = None
    transform: Any = None
    nodata: float | None = None
    affine: np.ndarray | None = None


def read_zarr(
    path: str,
    *,
    level: int | None,
    bands: Sequence[int] | None,
    chunks: Chunks,
) -> Image:
    """Read a zarr v2/v3 array or an OME-Zarr image lazily.

    Parameters
    ----------
    path
        A local path or an fsspec URL (``file://``, ``memory://``, ``s3://``, ...) of a
        zarr array, of an OME-Zarr multiscale image group (NGFF 0.4 on zarr v2,
        NGFF 0.5 on zarr v3), or of a group holding one data variable of 2 or more
        dimensions beside its coordinates (a segpipe label output, an xarray Dataset).
    level
        Pyramid level: an index into the OME-Zarr ``datasets``; ``None`` reads level 0.
        A plain array has level 0 only.
    bands
        Channels to keep, counted from 1; ``None`` keeps all. Needs a ``c`` axis.
    chunks
        Dask chunk size on the spatial axes: one int, one per spatial axis, or ``None``
        for the stored chunks; as given (sizes that are not multiples of the stored
        chunks read the stored chunks on their edges twice). Channels are one chunk.

    Returns
    -------
    Image
        ``data`` reads the store chunk by chunk (``dask.array.from_zarr``); ``levels``
        holds the shape of every level in ``axes`` order. A plain array's attributes
        ``axes`` (or ``_ARRAY_DIMENSIONS`` / zarr v3 ``dimension_names``), ``crs``,
        ``transform``, ``nodata``, ``spacing``, ``units`` and ``affine`` (as segpipe
        writes them on label outputs) are used when present, else a group's CF grid
        mapping (``crs_wkt`` / ``spatial_ref`` and ``GeoTransform``); an
        OME-Zarr image gives ``spacing`` from the level's ``scale`` and ``units`` from
        its axes.

    Raises
    ------
    ReadError
        Nothing zarr is at ``path``, or its metadata cannot be read.
    UnsupportedInputError
        A group that is not an OME-Zarr image and holds no data variable of 2 or
        more dimensions, or several; axes other than ``yx``, ``cyx``,
        ``zyx``, ``czyx`` (after a time axis of size 1), or a non-numeric dtype.
    InputValueError
        ``level``, ``bands`` or ``chunks`` do not fit the image.

    Examples
    --------
    >>> import zarr
    >>> url = "memory://read_zarr_example/image.zarr"
    >>> array = zarr.create_array(url, shape=(6, 8), chunks=(4, 4), dtype="u1")
    >>> image = read_zarr(url, level=None, bands=None, chunks=6)
    >>> image.axes, image.data.chunksize
    ('yx', (6, 6))
    """
    layout = _layout(_open_node(path), path)
    level = check_level(level, len(layout.arrays), path)
    levels = tuple(_shape(array, layout) for array in layout.arrays)
    array = layout.arrays[level]
    shape = levels[level]
    if array.dtype.kind not in _DTYPE_KINDS:
        raise UnsupportedInputError(
            f"{path}: dtype {array.dtype} is not supported; segpipe reads boolean, integer "
            "and floating-point images"
        )
    if bands is not None and not layout.axes.startswith("c"):
        raise InputValueError(
            f"{path}: bands {bands!r} given, but its axes {layout.axes!r} have no band axis "
            "'c'; leave bands out"
        )
    indices = band_indices(bands, shape[0], path) if layout.axes.startswith("c") else None
    stored = tuple(array.chunks[1:] if layout.drop_t else array.chunks)
    try:
        target = _read_chunks(chunks, layout.axes, shape, stored)
    except InputValueError as err:
        raise InputValueError(f"{path}: {err}") from None

    data = da.from_zarr(array, chunks=((1,) if layout.drop_t else ()) + target)
    if layout.drop_t:
        data = data[0]
    if not data.dtype.isnative:  # kernels expect the machine's byte order
        data = data.astype(data.dtype.newbyteorder("="))
    if indices is not None:
        if bands is not None:
            data = data[indices]
        if data.numblocks[0] > 1:
            data = data.rechunk({0: -1})
    return Image(
        data=data,
        axes=layout.axes,
        crs=layout.crs,
        transform=layout.transform,
        nodata=layout.nodata,
        affine=layout.affine,
        spacing=layout.spacings[level] if layout.spacings else None,
        units=layout.units,
        source=path,
        level=level,
        levels=levels,
    )


def open_label_array(path: str | Path) -> zarr.Array:
    """The labels of a label output, opened read-only: the data variable of a label
    zarr group (``labels.zarr``), or the array at ``path`` itself (``labels.zarr/labels``,
    or a plain array such as earlier versions wrote).

    Raises
    ------
    ReadError
        Nothing zarr is at ``path``, or its metadata cannot be read.
    UnsupportedInputError
        A group without exactly one array of 2 or more dimensions.
    """
    node = _open_node(str(path))
    return node if isinstance(node, zarr.Array) else data_variable(node, str(path))


def _open_node(path: str) -> zarr.Array | zarr.Group:
    # Workers may run elsewhere than here: the graph must hold an absolute path.
    store = path if "://" in path or "::" in path else os.path.abspath(path)
    try:
        return zarr.open(store, mode="r")
    except FileNotFoundError as err:  # zarr's NodeNotFoundError derives from it too
        raise ReadError(f"{path}: no zarr array or group there; check the path or URL") from err
    except Exception as err:
        raise ReadError(
            f"{path}: cannot be read as zarr ({type(err).__name__}: {err}); check that it is "
            "a zarr v2 or v3 store and that the fsspec backend for its URL is installed"
        ) from err


def _shape(array: zarr.Array, layout: _Layout) -> tuple[int, ...]:
    return tuple(array.shape[1:] if layout.drop_t else array.shape)


def _read_chunks(
    chunks: Chunks, axes: str, shape: Sequence[int], stored: Sequence[int]
) -> tuple[int, ...]:
    """Chunks for ``from_zarr``: the spatial sizes asked for (default the stored chunks),
    cut at the image's size; the band axis in its stored chunks (merged later). A size
    that cuts stored chunks reads the stored chunks on its edges, which its neighbour
    reads too."""
    requested = spatial_chunks(chunks, axes, stored)
    return tuple(
        store_size if axis == "c" else max(1, min(want, size))
        for axis, size, store_size, want in zip(axes, shape, stored, requested, strict=True)
    )


def _layout(node: zarr.Array | zarr.Group, path: str) -> _Layout:
    if isinstance(node, zarr.Array):
        return _array_layout(node, path)
    attributes = node.attrs.asdict()
    ome = attributes.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:  # NGFF 0.5
        return _ome_layout(node, ome["multiscales"], path)
    if "multiscales" in attributes:  # NGFF 0.4 and earlier
        return _ome_layout(node, attributes["multiscales"], path)
    return _group_layout(node, path)


def _group_layout(group: zarr.Group, path: str) -> _Layout:
    """A group of one data variable and its coordinates (a label output, or any
    xarray-style group): the variable's layout, georeferenced by its CF grid mapping
    when its own attributes do not say where it is."""
    array = data_variable(group, path)
    layout = _array_layout(array, path)
    name = array.attrs.get("grid_mapping")
    if layout.crs is not None or not isinstance(name, str) or name not in group:
        return layout
    crs, transform = from_grid_mapping(group[name].attrs.asdict(), f"{path}/{name}")
    return replace(layout, crs=crs, transform=layout.transform or transform)


def _array_layout(array: zarr.Array, path: str) -> _Layout:
    attributes: dict[str, Any] = dict(array.attrs.asdict())
    axes = _array_axes(array, attributes, path)
    spatial = len(axes.replace("c", ""))
    spacing = attributes.get("spacing")
    if spacing is not None:
        spacing = _numbers(spacing, spatial, "spacing", path)
    crs = attributes.get("crs")
    if crs is not None and not isinstance(crs, str):
        raise ReadError(f"{path}: attribute crs must be a WKT string; got {crs!r}")
    transform = attributes.get("transform")
    if transform is not None:
        from affine import Affine

        transform = Affine(*_numbers(transform, 6, "transform", path))
    nodata = attributes.get("nodata")
    if nodata is not None:
        try:
            nodata = float(nodata)
        except (TypeError, ValueError) as err:
            raise ReadError(f"{path}: attribute nodata must be a number; got {nodata!r}") from err
    affine = attributes.get("affine")
    if affine is not None:
        affine = _matrix(affine, path)
    units = attributes.get("units")
    if units is not None and not isinstance(units, str):
        raise ReadError(f"{path}: attribute units must be a string such as 'um'; got {units!r}")
    return _Layout(
        arrays=(array,),
        axes=axes,
        spacings=(spacing,),
        units=units,
        crs=crs,
        transform=transform,
        nodata=nodata,
        affine=affine,
    )


def _array_axes(array: zarr.Array, attributes: dict[str, Any], path: str) -> str:
    """Axes of a plain array: its ``axes`` attribute, else its dimension names, else its
    number of dimensions."""
    if "axes" in attributes:
        axes = attributes["axes"]
        where = "attribute axes"
    else:
        names = attributes.get("_ARRAY_DIMENSIONS")
        where = "attribute _ARRAY_DIMENSIONS"
        if names is None and array.metadata.zarr_format == 3:
            names = array.metadata.dimension_names
            where = "dimension_names"
        axes = _named_axes(names)
        if axes is None:
            axes = DEFAULT_AXES.get(array.ndim)
            where = "its number of dimensions"
    if not isinstance(axes, str) or axes not in AXES or len(axes) != array.ndim:
        raise UnsupportedInputError(
            f"{path}: cannot read axes {axes!r} (from {where}) of an array of shape "
            f"{array.shape}; segpipe reads 'yx', 'cyx', 'zyx' or 'czyx' (bands first): set "
            "the array's 'axes' attribute to one of these, or transpose the array to fit"
        )
    return axes


def _named_axes(names: Any) -> str | None:
    """segpipe axes from dimension names, or None when there are no usable names
    (absent, or xarray's anonymous ``dim_0``, ``dim_1``...)."""
    if not isinstance(names, list | tuple) or not names:
        return None
    if any(not isinstance(n, str) or n.startswith("dim_") for n in names):
        return None
    return "".join(_DIMENSIONS.get(n.lower(), f"<{n}>") for n in names)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value: Any, count: int, name: str, path: str) -> tuple[float, ...]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != count
        or not all(_is_number(v) for v in value)
    ):
        raise ReadError(
            f"{path}: attribute {name} must be a list of {count} numbers; got {value!r}"
        )
    return tuple(float(v) for v in value)


def _matrix(value: Any, path: str) -> np.ndarray:
    if not (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(row, list) and len(row) == 4 for row in value)
        and all(_is_number(v) for row in value for v in row)
    ):
        raise ReadError(
            f"{path}: attribute affine must be a 4 x 4 matrix (4 lists of 4 numbers); got {value!r}"
        )
    return np.array(value, dtype=np.float64)


def _ome_layout(group: zarr.Group, multiscales: Any, path: str) -> _Layout:
    """The layout of an OME-Zarr image from its first ``multiscales`` entry."""
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise ReadError(f"{path}: OME-Zarr 'multiscales' must be a non-empty list of objects")
    multiscale = multiscales[0]
    datasets = multiscale.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise ReadError(f"{path}: OME-Zarr multiscales[0] has no 'datasets'")
    axes_meta = multiscale.get("axes")
    if not isinstance(axes_meta, list) or not axes_meta:
        raise ReadError(f"{path}: OME-Zarr multiscales[0] has no 'axes'")
    # NGFF 0.4+ axes are objects with a name, a type and a unit; 0.3 axes are names.
    axes_meta = [a if isinstance(a, dict) else {"name": a} for a in axes_meta]
    names = [_ome_axis(axis) for axis in axes_meta]

    arrays = []
    for i, dataset in enumerate(datasets):
        member = dataset.get("path") if isinstance(dataset, dict) else None
        try:
            array = group[member] if isinstance(member, str) else None
        except KeyError:
            array = None
        if not isinstance(array, zarr.Array):
            raise ReadError(
                f"{path}: OME-Zarr datasets[{i}] path {member!r} is not an array in the group"
            )
        if array.ndim != len(names):
            raise ReadError(
                f"{path}: OME-Zarr axes {''.join(names)!r} name {len(names)} dimensions but "
                f"datasets[{i}] ({member}) has shape {array.shape}"
            )
        arrays.append(array)

    drop_t = names[0] == "t"
    if drop_t:
        if arrays[0].shape[0] != 1:
            raise UnsupportedInputError(
                f"{path}: the OME-Zarr image has {arrays[0].shape[0]} time points; segpipe "
                "reads one; write each time point as its own image"
            )
        names = names[1:]
    axes = "".join(names)
    if axes not in AXES:
        raise UnsupportedInputError(
            f"{path}: OME-Zarr axes {axes!r} are not supported; segpipe reads 'yx', 'cyx', "
            "'zyx' or 'czyx' after an optional leading time axis of size 1"
        )
    first = 1 if drop_t else 0
    spatial = [first + i for i, name in enumerate(names) if name != "c"]
    overall = _ome_scale(multiscale, len(axes_meta), path, "multiscales[0]")
    spacings: list[tuple[float, ...] | None] = []
    for i, dataset in enumerate(datasets):
        scale = _ome_scale(dataset, len(axes_meta), path, f"datasets[{i}]")
        if scale is None:
            spacings.append(None)
            continue
        if overall is not None:
            scale = tuple(s * o for s, o in zip(scale, overall, strict=True))
        spacings.append(tuple(scale[j] for j in spatial))
    units = {axes_meta[j].get("unit") for j in spatial} - {None}
    if len(units) > 1:
        raise UnsupportedInputError(
            f"{path}: the OME-Zarr spatial axes have different units {sorted(units)}; "
            "segpipe needs one unit for all spatial axes"
        )
    unit = units.pop() if units else None
    return _Layout(
        arrays=tuple(arrays),
        axes=axes,
        drop_t=drop_t,
        spacings=tuple(spacings),
        units=_UNITS.get(unit, unit) if isinstance(unit, str) else None,
    )


def _ome_axis(axis: dict[str, Any]) -> str:
    """segpipe's name of an OME-Zarr axis: ``t``, ``c``, ``z``, ``y``, ``x`` or its own name."""
    name = str(axis.get("name", "")).lower()
    kind = axis.get("type")
    if kind == "time" or name == "t":
        return "t"
    if kind == "channel" or name == "c":
        return "c"
    return name if name in ("z", "y", "x") else f"<{name}>"


def _ome_scale(meta: dict[str, Any], count: int, path: str, where: str) -> tuple[float, ...] | None:
    """The ``scale`` among the ``coordinateTransformations`` of ``meta``, if any."""
    transforms = meta.get("coordinateTransformations") or []
    for transform in transforms:
        if isinstance(transform, dict) and transform.get("type") == "scale":
            if "scale" not in transform:  # a scale stored in a file by "path"
                return None
            scale = transform["scale"]
            if (
                not isinstance(scale, list)
                or len(scale) != count
                or not all(_is_number(s) for s in scale)
            ):
                raise ReadError(
                    f"{path}: OME-Zarr {where} scale must be {count} numbers, one per axis; "
                    f"got {scale!r}"
                )
            return tuple(float(s) for s in scale)
    return None
