"""write_preview: a small PNG of labels over their image, read from a coarse level.

What is read, never the whole full-resolution array::

    labels path ──open_image (metadata)──> levels ──label_sampling──> level k, step s
        level k, every s-th pixel, chunk by chunk through dask ──> ids      (y, x)
    image ──levels──image_sampling──> level j, the pixels under the ids ──> bands (c, y, x)
    ids + stretched bands ──compose──> PNG, written atomically (staged)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from .._batches import compute_array
from ..errors import InputValueError, UnsupportedInputError
from ..io import Image, open_image
from ..io._staging import check_output, staged
from ._colours import compose, stretch
from ._sampling import Sampling, image_sampling, label_sampling, same_proportions, spacing

__all__ = ["PreviewPixels", "preview_pixels", "write_preview", "write_sampled_preview"]

_ARRAY_AXES = {2: "yx", 3: "zyx"}


@dataclass(frozen=True)
class _Pyramid:
    """A lazily read image or label map, at each level it can be read at."""

    name: str
    axes: str  # of the arrays ``read`` returns
    dtype: np.dtype
    shapes: tuple[tuple[int, int], ...]  # rows and columns of every level
    depth: int | None  # z planes, or None without a z axis
    channels: int | None  # bands, or None without a c axis
    read: Callable[[int], da.Array]
    nodata: float | None = None


def write_preview(
    labels: Any,
    path: str | Path,
    *,
    image: Image | str | Path | None = None,
    bands: Sequence[int] | None = None,
    max_size: int = 1024,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of ``labels`` coloured over ``image``, no larger than ``max_size``.

    Nothing is read at full resolution unless the labels are small: the labels
    are read from the coarsest pyramid level whose longest side is still at
    least ``max_size`` (an OME-Zarr level, a GeoTIFF overview, a pyramidal
    TIFF level), or from the only level a plain label zarr or array has, and
    every ``s``-th pixel of that level is kept, the same ``s`` along y and x
    so the aspect ratio stays. Labels are sampled, never interpolated, so each
    preview pixel is an object id. The sampling runs through dask chunk by
    chunk, so memory holds a few chunks and the preview, never the array.

    Each object gets a colour that depends on its id only (see
    :func:`~pipeline.report.label_colours`), laid over the image at 45% opacity with its
    outline in full colour; background pixels show the image unchanged.
    Without an image, the background is transparent (an RGBA PNG) and objects
    are opaque, outlined in a darker shade. 3D labels show their middle z
    plane (index ``depth // 2``), and the image the same plane.

    Parameters
    ----------
    labels
        A label output of segpipe: the path of a label zarr array; of an
        OME-Zarr image group (its first label image under ``labels/`` is
        drawn, over the group's own image when ``image`` is None) or of one
        label image in it; of a GeoTIFF / COG. Or a dask or numpy array of
        integer ids (``yx`` or ``zyx``; 0 is background).
    path
        The PNG to write; its name must end in ``.png``.
    image
        The image under the labels: a path, opened with
        :func:`pipeline.open_image` at the coarsest level that holds every
        preview pixel, or an :class:`~pipeline.Image`, read at its own level,
        or at a coarser level of its source when it holds all its source's
        bands. Three bands are drawn as RGB, any other number as the
        greyscale of the first band; each band stretched from its 2nd to
        its 98th percentile over the preview's pixels. Its sides must be in
        the proportion of the labels' sides (it may be another level).
    bands
        With ``image`` given as a path: the bands to read, counted from 1
        (one for grey, three for RGB). Default all.
    max_size
        The longest side of the PNG, at most; the preview is smaller when a
        pyramid level or a whole-number step lands below it.
    overwrite
        Replace an existing ``path``.

    Returns
    -------
    Path
        ``path``, written completely or not at all: the PNG is written under a
        hidden staging name next to it and moved into place.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    InputValueError
        ``path`` does not end in ``.png``; ``max_size`` is not a positive
        integer; ``bands`` is given without an image path; the labels have
        more than one channel, or dimensions other than ``yx`` and ``zyx``; the
        image does not fit the labels (other proportions, or a z axis one has
        and the other has not).
    UnsupportedInputError
        ``labels`` or ``image`` is of an unsupported type, or the labels are
        not integers.
    ReadError
        A path does not exist or cannot be read.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> ids = np.kron(np.arange(12).reshape(3, 4), np.ones((128, 128), int))  # 384 x 512
    >>> png = write_preview(da.from_array(ids, chunks=100), folder / "ids.png", max_size=64)
    >>> with PILImage.open(png) as picture:
    ...     picture.size, picture.mode
    ((64, 48), 'RGBA')
    >>> shutil.rmtree(folder)
    """
    target = _check_arguments(path, max_size, image, bands, overwrite)
    label_pyramid, own_image = _labels_pyramid(labels)
    if image is None:
        image_pyramid = own_image
    elif isinstance(image, Image):
        image_pyramid = _image_pyramid(image, None)
    else:
        image_pyramid = _path_pyramid(str(image), bands)
    if image_pyramid is not None:
        _check_fit(image_pyramid, label_pyramid)

    sampling = label_sampling(label_pyramid.shapes, max_size)
    middle = None if label_pyramid.depth is None else label_pyramid.depth // 2
    ids = _sample(label_pyramid, sampling, middle)
    if ids.ndim == 3:  # a channel axis of length 1
        ids = ids[0]
    return _draw(ids, label_pyramid, sampling, image_pyramid, target, overwrite)


@dataclass(frozen=True)
class PreviewPixels:
    """Which pixels of a full-resolution label map :func:`write_preview` shows:
    the rows and columns of plane ``plane`` (``None`` for 2D)."""

    plane: int | None
    rows: np.ndarray
    columns: np.ndarray


def preview_pixels(shape: tuple[int, ...], max_size: int = 1024) -> PreviewPixels:
    """The label pixels a preview of a plain ``yx`` or ``zyx`` label map of ``shape`` shows."""
    height, width = shape[-2:]
    sampling = label_sampling(((height, width),), max_size)
    plane = shape[0] // 2 if len(shape) == 3 else None
    return PreviewPixels(plane, sampling.indices(0, height), sampling.indices(1, width))


def write_sampled_preview(
    ids: np.ndarray,
    shape: tuple[int, ...],
    path: str | Path,
    *,
    image: Image | None,
    name: str = "labels",
    max_size: int = 1024,
    overwrite: bool = False,
) -> Path:
    """Write the preview :func:`write_preview` would write of a plain label map of
    ``shape`` (called ``name``), from its pixels at :func:`preview_pixels`
    already read (``ids``)."""
    target = _check_arguments(path, max_size, image, None, overwrite)
    height, width = shape[-2:]
    sampling = label_sampling(((height, width),), max_size)
    if ids.shape != sampling.shape:
        raise InputValueError(
            f"sampled ids of shape {ids.shape} are not the preview's {sampling.shape}: "
            "read them at preview_pixels(shape, max_size)"
        )
    labels = _Pyramid(
        name=name,
        axes=_ARRAY_AXES[len(shape)],
        dtype=ids.dtype,
        shapes=((height, width),),
        depth=shape[0] if len(shape) == 3 else None,
        channels=None,
        read=_never_read,
    )
    image_pyramid = None if image is None else _image_pyramid(image, None)
    if image_pyramid is not None:
        _check_fit(image_pyramid, labels)
    return _draw(ids, labels, sampling, image_pyramid, target, overwrite)


def _never_read(level: int) -> da.Array:
    raise AssertionError("sampled labels are never read again")


def _draw(
    ids: np.ndarray,
    labels: _Pyramid,
    sampling: Sampling,
    image: _Pyramid | None,
    target: Path,
    overwrite: bool,
) -> Path:
    """Lay the sampled ``ids`` over the image under them and write the PNG."""
    middle = None if labels.depth is None else labels.depth // 2
    about: dict[str, Any] = {
        "labels": labels.name,
        "labels_level": sampling.level,
        "step": int(sampling.step[0]),
        "z": middle,
    }
    base = None
    if image is not None:
        base, about["image_level"] = _background(image, labels, sampling, middle)
        about["image"] = image.name
    picture = compose(ids, base)

    info = PngInfo()
    info.add_text("Software", "segpipe")
    info.add_text("segpipe", json.dumps(about))
    with staged(target, overwrite=overwrite) as staging:
        # zlib level 3: twice as fast as the default 6 here, and no larger.
        PILImage.fromarray(picture).save(staging, format="PNG", pnginfo=info, compress_level=3)
    return target


def _check_arguments(
    path: str | Path, max_size: Any, image: Any, bands: Any, overwrite: bool
) -> Path:
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise InputValueError(f"preview {target} must be a PNG file: give a name ending in .png")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise InputValueError(f"max_size must be a positive number of pixels; got {max_size!r}")
    if image is not None and not isinstance(image, Image | str | Path):
        raise UnsupportedInputError(
            f"image must be a pipeline Image or a path; got {type(image).__name__}"
        )
    if bands is not None and not isinstance(image, str | Path):
        raise InputValueError(
            f"bands {bands!r} are for an image given as a path; open an Image with "
            "open_image(path, bands=...) instead, or pass the path"
        )
    return check_output(target, overwrite=overwrite)  # fail before reading a pixel


def _labels_pyramid(labels: Any) -> tuple[_Pyramid, _Pyramid | None]:
    """The labels, and the image of the OME-Zarr group they belong to (if given its root)."""
    if isinstance(labels, np.ndarray | da.Array):
        data = labels if isinstance(labels, da.Array) else da.from_array(labels)
        axes = _ARRAY_AXES.get(data.ndim)
        if axes is None:
            raise InputValueError(f"labels of shape {data.shape} must be 2D (y, x) or 3D (z, y, x)")
        pyramid = _image_pyramid(Image(data=data, axes=axes), None, name="labels array")
        own = None
    elif isinstance(labels, str | Path):
        root = str(labels)
        label_image = _ome_label_image(root)
        pyramid = _path_pyramid(label_image or root, None)
        own = _path_pyramid(root, None) if label_image else None
    else:
        raise UnsupportedInputError(
            f"labels must be a path or a dask or numpy array; got {type(labels).__name__}"
        )
    if pyramid.dtype.kind not in "biu":
        raise UnsupportedInputError(
            f"{pyramid.name}: labels must be integer ids (0 for background); got dtype "
            f"{pyramid.dtype}"
        )
    if pyramid.channels not in (None, 1):
        raise InputValueError(
            f"{pyramid.name}: labels have {pyramid.channels} channels; expected one label map"
        )
    return pyramid, own


def _ome_label_image(path: str) -> str | None:
    """The first label image of the OME-Zarr image group at ``path``, if it is one."""
    if "://" not in path and not Path(path).is_dir():
        return None
    try:
        node = zarr.open(path, mode="r")
    except (OSError, ValueError, KeyError, TypeError):  # zarr's errors derive from these
        return None  # not a zarr group: open_image says why, with the path
    if not isinstance(node, zarr.Group) or "labels" not in node:
        return None
    attributes = node["labels"].attrs.asdict()
    ome = attributes.get("ome")
    names = attributes.get("labels", ome.get("labels") if isinstance(ome, dict) else None)
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        return None
    return f"{path.rstrip('/')}/labels/{names[0]}"


def _path_pyramid(path: str, bands: Sequence[int] | None) -> _Pyramid:
    """Every level of the image at ``path`` (only its metadata is read here)."""
    opened = open_image(path, bands=bands)

    def read(level: int) -> da.Array:
        return (
            opened.data
            if level == opened.level
            else open_image(path, level=level, bands=bands).data
        )

    return _image_pyramid(opened, read)


def _image_pyramid(
    image: Image, read: Callable[[int], da.Array] | None, *, name: str | None = None
) -> _Pyramid:
    """The levels of ``image`` that ``read`` reads; without ``read``, those of its
    source when it holds all its source's bands, else its own level only."""
    if read is None and image.source and image.shape == _level_shape(image):
        source, own = image.source, image

        def read(level: int) -> da.Array:
            return own.data if level == own.level else open_image(source, level=level).data

    if read is None or not image.levels:
        shapes: tuple[tuple[int, int], ...] = ((image.shape[-2], image.shape[-1]),)
        read = _own_level(image.data)
    else:
        shapes = tuple((shape[-2], shape[-1]) for shape in image.levels)
    spatial = image.axes.index(image.spatial_axes[0])
    return _Pyramid(
        name=name or str(image.source or "image array"),
        axes=image.axes,
        dtype=image.dtype,
        shapes=shapes,
        depth=image.shape[spatial] if "z" in image.axes else None,
        channels=image.shape[0] if image.axes.startswith("c") else None,
        read=read,
        nodata=image.nodata,
    )


def _level_shape(image: Image) -> tuple[int, ...] | None:
    """The shape of ``image``'s level in its source, if it has several levels."""
    return tuple(image.levels[image.level]) if len(image.levels) > 1 else None


def _own_level(data: da.Array) -> Callable[[int], da.Array]:
    return lambda level: data


def _check_fit(image: _Pyramid, labels: _Pyramid) -> None:
    full_image = max(image.shapes, key=lambda s: s[0] * s[1])
    full_labels = labels.shapes[0]
    if (image.depth is None) != (labels.depth is None):
        raise InputValueError(
            f"image {image.name} ({image.axes}) and labels {labels.name} ({labels.axes}) must "
            "both have a z axis or both not"
        )
    if not same_proportions(full_image, full_labels):
        raise InputValueError(
            f"image {image.name} of {full_image[0]} x {full_image[1]} pixels does not lie under "
            f"labels {labels.name} of {full_labels[0]} x {full_labels[1]}: their sides are in "
            "other proportions; give the image the labels were made from"
        )


def _background(
    image: _Pyramid, labels: _Pyramid, sampling: Sampling, middle: int | None
) -> tuple[np.ndarray, int]:
    """The image under the sampled labels as RGB ``uint8``, and the level it was read at."""
    between = spacing(sampling, labels.shapes)
    where = image_sampling(image.shapes, labels.shapes[0], sampling, between)
    plane = None
    if middle is not None and image.depth is not None and labels.depth is not None:
        plane = middle * image.depth // labels.depth
    keep = None
    if image.channels is not None:
        keep = slice(0, 3) if image.channels == 3 else slice(0, 1)
    pixels = _sample(image, where, plane, keep)
    if pixels.ndim == 2:
        pixels = pixels[None]
    valid = np.ones(pixels.shape[1:], bool)
    if image.nodata is not None and not np.isnan(image.nodata):
        valid &= (pixels != image.nodata).all(axis=0)
    stretched = stretch(pixels, valid)
    if stretched.shape[0] == 1:
        stretched = np.repeat(stretched, 3, axis=0)
    return np.moveaxis(stretched, 0, -1), where.level


def _sample(
    pyramid: _Pyramid, where: Sampling, plane: int | None, channels: slice | None = None
) -> np.ndarray:
    """The pixels ``where`` says, of plane ``plane`` (z), computed chunk by chunk, in batches."""
    data = pyramid.read(where.level)
    if channels is not None:
        data = data[channels]
    if plane is not None:
        data = data[..., plane, :, :]
    height, width = data.shape[-2:]
    data = data[..., _index(where.indices(0, height)), :]
    data = data[..., _index(where.indices(1, width))]
    return compute_array(data)


def _index(positions: np.ndarray) -> slice | np.ndarray:
    """``positions`` as a slice when they are evenly spaced (cheaper for dask), else as is."""
    if positions.size == 1:
        return slice(int(positions[0]), int(positions[0]) + 1)
    steps = np.diff(positions)
    if steps[0] > 0 and (steps == steps[0]).all():
        return slice(int(positions[0]), int(positions[-1]) + 1, int(steps[0]))
    return positions
