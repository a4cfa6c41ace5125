"""The Image type: a lazy array plus what places it in the world."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np

from ..errors import InputValueError

AXES = ("yx", "cyx", "zyx", "czyx")


@dataclass(frozen=True)
class Image:
    """A lazily read image.

    Attributes
    ----------
    data
        The pixels as a dask array whose dimensions follow ``axes``.
    axes
        ``"yx"``, ``"cyx"``, ``"zyx"`` or ``"czyx"``: ``c`` is bands or channels.
    crs
        Coordinate reference system of a raster, as WKT; ``None`` when not georeferenced.
    transform
        Pixel to map coordinates of a raster (an ``affine.Affine``): map x, y of
        pixel column ``col``, row ``row`` are ``transform @ (col, row)``.
    nodata
        The value marking pixels without data, or ``None``.
    spacing
        Physical size of a pixel along each spatial axis, in axis order (for a
        ``"zyx"`` volume: z, y, x), in ``units``.
    affine
        For volumes: 4 x 4 matrix from voxel index ``(z, y, x, 1)`` to world
        coordinates ``(x, y, z, 1)`` in millimetres (NIfTI's RAS+ space).
    units
        Unit of ``spacing`` (``"m"``, ``"mm"``, ``"um"``, ...), if known.
    source
        Where the image was read from.
    level, levels
        The pyramid level read, and the shapes of every level the source holds.
    mosaic
        For an image put together from many scenes, what they are and where each
        lies (a :class:`~pipeline.io._mosaic.MosaicInfo`); ``None`` otherwise.
    """

    data: da.Array
    axes: str
    crs: str | None = None
    transform: Any = None
    nodata: float | None = None
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = field(default=None, compare=False)
    units: str | None = None
    source: str | None = None
    level: int = 0
    levels: tuple[tuple[int, ...], ...] = ()
    mosaic: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.axes not in AXES:
            raise InputValueError(f"axes must be one of {', '.join(AXES)}; got {self.axes!r}")
        if self.data.ndim != len(self.axes):
            raise InputValueError(
                f"axes {self.axes!r} name {len(self.axes)} dimensions but the data has "
                f"{self.data.ndim} (shape {self.data.shape})"
            )
        if self.spacing is not None and len(self.spacing) != len(self.spatial_axes):
            raise InputValueError(
                f"spacing {self.spacing} must give one size per spatial axis "
                f"({self.spatial_axes!r})"
            )

    @property
    def spatial_axes(self) -> str:
        """The axes without the band/channel axis."""
        return self.axes.replace("c", "")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def valid(self) -> da.Array | None:
        """Where every band holds data (not nodata, not NaN), over the spatial axes.

        ``None`` when every pixel is valid by construction (no nodata value and
        an integer dtype).
        """
        if self.nodata is None and self.data.dtype.kind != "f":
            return None
        good = da.ones_like(self.data, dtype=bool)
        if self.nodata is not None and not np.isnan(self.nodata):
            good = self.data != self.nodata
        if self.data.dtype.kind == "f":
            good = good & ~da.isnan(self.data)
        return good.all(axis=0) if self.axes.startswith("c") else good
