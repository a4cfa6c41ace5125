"""NIfTI volumes (.nii, .nii.gz) read lazily with nibabel, in segpipe's (z, y, x) order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import dask.array as da
import nibabel
import numpy as np

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._common import Chunks, band_indices, check_level, spatial_chunks
from ._image import Image

DEFAULT_CHUNK = 64
# NIfTI xyzt_units spatial labels (as nibabel names them) to Image.units and to millimetres.
_UNITS = {"unknown": ("mm", 1.0), "mm": ("mm", 1.0), "meter": ("m", 1000.0), "micron": ("um", 1e-3)}
_DTYPE_KINDS = "biuf"


@dataclass(frozen=True)
class _NiftiVolume:
    """An array-like for ``dask.array.from_array`` that reads slices of a NIfTI file.

    Indices are in segpipe's order, nibabel's reversed: (z, y, x) for a volume
    (i, j, k), (c, z, y, x) for (i, j, k, t). Each call opens the file by its path, so a
    task pickles only the path, the shape and dtype here, and its slices.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    stamp: tuple[int, int]  # the file's mtime (ns) and size: a changed file, new dask keys

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = _full_key(key, self.ndim)
        image: Any = nibabel.load(self.path, mmap=False)
        block = image.dataobj[key[::-1]]
        # Reversing every axis commutes with dropping those indexed by an int.
        return np.ascontiguousarray(np.asarray(block).T, dtype=self.dtype)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("segpipe-nifti", self.path, self.shape, self.dtype.str, self.stamp)


def read_nifti(
    path: str,
    *,
    level: int | None,
    bands: Sequence[int] | None,
    chunks: Chunks,
) -> Image:
    """Read a NIfTI-1 or NIfTI-2 volume (``.nii``, ``.nii.gz``) lazily.

    Only the header is read here; every chunk task opens the file by its path and
    reads its slice through nibabel's ``dataobj``, scaled by ``scl_slope`` and
    ``scl_inter`` as nibabel scales it.

    Parameters
    ----------
    path
        A local path, or a ``file://`` URL.
    level
        ``None`` or 0: NIfTI holds one level.
    bands
        For a 4D file, the volumes (4th axis) to keep, counted from 1; ``None`` keeps all.
    chunks
        Dask chunk size on the spatial axes: one int or one per axis (z, y, x).
        Default 64, or the whole axis when shorter. Channels are one chunk.

    Returns
    -------
    Image
        A 3D file (i, j, k) as axes ``"zyx"`` (data indexed ``[k, j, i]``), a 4D file
        as ``"czyx"`` with its 4th axis as channels. ``spacing`` is the header's zooms
        in (z, y, x) order, in ``units`` (the header's spatial unit, ``"mm"`` when
        unknown). ``affine`` maps ``(z, y, x, 1)`` to world ``(x, y, z, 1)`` in
        millimetres: nibabel's affine with its first three columns reversed.

    Raises
    ------
    ReadError
        The file does not exist or is not a NIfTI file, or its data are truncated.
    UnsupportedInputError
        Not 3 or 4 dimensions, a non-numeric dtype (RGB, complex), or a remote URL.
    InputValueError
        ``level``, ``bands`` or ``chunks`` do not fit the volume.

    Examples
    --------
    >>> import shutil, tempfile
    >>> import nibabel, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> path = f"{folder}/volume.nii.gz"
    >>> voxels = np.zeros((50, 60, 70), dtype=np.uint8)  # (i, j, k)
    >>> nibabel.save(nibabel.Nifti1Image(voxels, np.diag([1.0, 2.0, 3.0, 1.0])), path)
    >>> image = read_nifti(path, level=None, bands=None, chunks=None)
    >>> image.axes, image.shape, image.data.chunksize, image.spacing
    ('zyx', (70, 60, 50), (64, 60, 50), (3.0, 2.0, 1.0))
    >>> shutil.rmtree(folder)
    """
    local = _local_path(path)
    try:
        stat = os.stat(local)
        header_image = nibabel.load(local, mmap=False)
    except FileNotFoundError as err:
        raise ReadError(f"{path}: no such file; check the path") from err
    except Exception as err:
        raise ReadError(
            f"{path}: cannot be read as NIfTI ({type(err).__name__}: {err}); check that it "
            "is a .nii or .nii.gz file"
        ) from err
    if not isinstance(header_image, nibabel.Nifti1Image | nibabel.Nifti2Image):
        raise ReadError(
            f"{path}: nibabel reads it as {type(header_image).__name__}, not NIfTI; "
            "give a .nii or .nii.gz file"
        )
    file_shape = tuple(int(n) for n in header_image.shape)
    if len(file_shape) not in (3, 4):
        raise UnsupportedInputError(
            f"{path}: a {len(file_shape)}D NIfTI of shape {file_shape} is not supported; "
            "segpipe reads 3D volumes and 4D files whose 4th axis is channels"
        )
    axes = "zyx" if len(file_shape) == 3 else "czyx"
    shape = file_shape[::-1]
    level = check_level(level, 1, path)
    if bands is not None and axes == "zyx":
        raise InputValueError(
            f"{path}: bands {bands!r} given, but a 3D volume has no band axis; leave bands out"
        )
    indices = band_indices(bands, shape[0], path) if axes == "czyx" else None
    default = [
        n if axis == "c" else min(DEFAULT_CHUNK, n) for axis, n in zip(axes, shape, strict=True)
    ]
    try:
        target = spatial_chunks(chunks, axes, default)
    except InputValueError as err:
        raise InputValueError(f"{path}: {err}") from None
    target = tuple(min(size, n) for size, n in zip(target, shape, strict=True))

    # A slice of no voxels gives the dtype nibabel's scaling makes, without reading pixels.
    # In the machine's byte order, which kernels expect: a big-endian file is swapped.
    dtype = np.asarray(header_image.dataobj[(slice(0, 0),) * len(file_shape)]).dtype
    dtype = dtype.newbyteorder("=")
    if dtype.kind not in _DTYPE_KINDS:
        raise UnsupportedInputError(
            f"{path}: NIfTI dtype {dtype} is not supported; segpipe reads boolean, integer "
            "and floating-point volumes"
        )
    _check_size(header_image, stat.st_size, local, path)

    volume = _NiftiVolume(local, shape, dtype, (stat.st_mtime_ns, stat.st_size))
    meta = np.empty((0,) * len(shape), dtype=dtype)
    if indices is None or bands is None:
        data = da.from_array(volume, chunks=target, meta=meta)
    else:  # one channel per task, so only the bands asked for are read
        data = da.from_array(volume, chunks=(1, *target[1:]), meta=meta)[indices]
        data = data.rechunk({0: -1})
    return Image(
        data=data,
        axes=axes,
        spacing=_spacing(header_image),
        affine=_affine(header_image),
        units=_unit(header_image)[0],
        source=path,
        level=level,
        levels=(shape,),
    )


def _local_path(path: str) -> str:
    # Workers may run elsewhere than here: the graph must hold an absolute path.
    if "://" not in path:
        return os.path.abspath(path)
    url = urlparse(path)
    if url.scheme in ("file", "local"):
        return os.path.abspath(unquote(url.path))
    raise UnsupportedInputError(
        f"{path}: NIfTI is read from local files only; copy it to a local path first"
    )


def _full_key(key: Any, ndim: int) -> tuple[Any, ...]:
    """``key`` as one index per axis: Ellipsis expanded, missing axes whole."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1 :]
    return key + (slice(None),) * (ndim - len(key))


def _check_size(image: Any, size: int, local: str, path: str) -> None:
    """An uncompressed file must hold all its voxels (a gzip's size says nothing)."""
    if local.lower().endswith(".gz"):
        return
    header = image.header
    needed = int(header.get_data_offset()) + int(
        np.prod(image.shape, dtype=np.int64) * header.get_data_dtype().itemsize
    )
    if size < needed:
        raise ReadError(
            f"{path}: the file is truncated: {size} bytes where its header needs {needed}; "
            "copy or write it again"
        )


def _unit(image: Any) -> tuple[str, float]:
    """The spatial unit as Image.units names it, and its size in millimetres."""
    try:
        label = image.header.get_xyzt_units()[0]
    except KeyError:  # a code NIfTI does not define: NIfTI says millimetres
        label = "unknown"
    return _UNITS.get(label, _UNITS["unknown"])


def _spacing(image: Any) -> tuple[float, ...]:
    return tuple(float(zoom) for zoom in image.header.get_zooms()[:3][::-1])


def _affine(image: Any) -> np.ndarray:
    """nibabel's affine for (z, y, x, 1) = (k, j, i, 1) voxel indices, in millimetres."""
    affine = np.asarray(image.affine, dtype=np.float64)[:, [2, 1, 0, 3]]
    affine[:3] *= _unit(image)[1]
    return affine
