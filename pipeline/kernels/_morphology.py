"""Binary opening and closing of a mask, chunk by chunk.

Opening is an erosion then a dilation by the same footprint, closing the
reverse; each reaches ``radius`` pixels, so together they need a halo of
``2 * radius`` along each axis::

    |<- r ->|<- r ->|<------- chunk ------->|
    [ dilation sees | what erosion needed ]  pixels kept
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field
from scipy import ndimage

from ..errors import InputValueError
from ._base import Step, register
from ._units import Physical, Pixels, per_axis


def footprint(shape: str, radius: int | Sequence[int], ndim: int) -> np.ndarray:
    """The structuring element: ``"ball"`` (disk in 2D) or ``"cube"`` (square in 2D),
    of one ``radius`` or one per axis.

    The ball holds the offsets within Euclidean distance ``radius`` of the
    centre, as ``skimage.morphology.disk`` / ``ball`` make them; with one
    radius per axis it is the ellipsoid (ellipse in 2D) of those semi-axes,
    the offsets ``o`` with ``sum((o / radius) ** 2) <= 1``, computed in
    integers. The cube is ``2 * radius + 1`` pixels along each axis.

    Examples
    --------
    >>> footprint("ball", 1, 2).astype(int)
    array([[0, 1, 0],
           [1, 1, 1],
           [0, 1, 0]])
    >>> footprint("ball", (1, 2), 2).astype(int)
    array([[0, 0, 1, 0, 0],
           [1, 1, 1, 1, 1],
           [0, 0, 1, 0, 0]])
    """
    radii = (radius,) * ndim if isinstance(radius, int) else tuple(radius)
    size = tuple(2 * r + 1 for r in radii)
    if shape == "cube":
        return np.ones(size, dtype=bool)
    if shape == "ball":
        # sum(o_i^2 / r_i^2) <= 1, times the product of the r_i^2: exact in integers
        scale = np.prod([r * r for r in radii], dtype=np.int64)
        offsets = np.indices(size, dtype=np.int64) - np.reshape(radii, (-1,) + (1,) * ndim)
        weights = np.reshape([scale // (r * r) for r in radii], (-1,) + (1,) * ndim)
        inside: np.ndarray = (offsets**2 * weights).sum(axis=0) <= scale
        return inside
    raise InputValueError(f"unknown footprint {shape!r}; the footprints are ball, cube")


class _Morphology(Step):
    """A mask step with a footprint of ``radius``; the halo is two footprints' reach."""

    output = "mask"
    accepts = ("mask",)

    radius: Annotated[Pixels, Physical("length", ge=1, integer=True)] = Field(
        description="footprint radius: pixels, per axis, or a length"
    )
    footprint: Literal["ball", "cube"] = "ball"

    def halo(self, ndim: int) -> tuple[int, ...]:
        return tuple(2 * radius for radius in self.radii(ndim))

    def radii(self, ndim: int) -> tuple[int, ...]:
        """The radius along each of ``ndim`` spatial axes, in pixels."""
        return tuple(int(radius) for radius in per_axis(self, "radius", ndim))

    def structure(self, ndim: int) -> np.ndarray:
        """The footprint for ``ndim`` spatial axes."""
        return footprint(self.footprint, self.radii(ndim), ndim)


@register
class Opening(_Morphology):
    """Binary opening: removes what the footprint does not fit in (specks, thin bridges).

    ``scipy.ndimage.binary_opening`` with a ``"ball"`` (disk in 2D) or
    ``"cube"`` (square in 2D) footprint of ``radius``. The image is extended
    past its edges by reflection (the map pads each chunk that way), so the
    result equals ``binary_opening`` of ``np.pad(mask, 2 * radius,
    mode="symmetric")`` cropped back, for every chunking: an object touching
    the image edge is not eroded from outside as with scipy's default
    (everything outside is background).

    Parameters
    ----------
    radius
        Footprint radius, >= 1: pixels (one number, or one per spatial axis)
        or a length such as ``"2 mm"``, converted per axis with the image's
        spacing and rounded to the nearest whole pixel (an ellipsoid on
        anisotropic voxels); the halo is ``2 * radius`` along each axis.
    footprint
        ``"ball"`` or ``"cube"`` (a box with per-axis radii).

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((5, 7), bool); mask[1:4, 1:4] = True; mask[2, 4:6] = True
    >>> Opening(radius=1, footprint="cube").apply(mask, None).astype(int)
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0, 0, 0],
           [0, 1, 1, 1, 0, 0, 0],
           [0, 1, 1, 1, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0]])
    """

    name = "opening"

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        opened: np.ndarray = ndimage.binary_opening(block, structure=self.structure(block.ndim))
        return opened


@register
class Closing(_Morphology):
    """Binary closing: fills what the footprint does not fit in (holes, narrow gaps).

    ``scipy.ndimage.binary_closing`` with a ``"ball"`` (disk in 2D) or
    ``"cube"`` (square in 2D) footprint of ``radius``. The image is extended
    past its edges by reflection (the map pads each chunk that way), so the
    result equals ``binary_closing`` of ``np.pad(mask, 2 * radius,
    mode="symmetric")`` cropped back, for every chunking: a gap at the image
    edge closes as if the image went on mirrored, not as with scipy's
    default (everything outside is background).

    Parameters
    ----------
    radius
        Footprint radius, >= 1: pixels (one number, or one per spatial axis)
        or a length such as ``"2 mm"``, converted per axis with the image's
        spacing and rounded to the nearest whole pixel (an ellipsoid on
        anisotropic voxels); the halo is ``2 * radius`` along each axis.
    footprint
        ``"ball"`` or ``"cube"`` (a box with per-axis radii).

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.ones((3, 5), bool); mask[1, 2] = False
    >>> Closing(radius=1).apply(np.pad(mask, 2, mode="symmetric"), None)[2:-2, 2:-2].all()
    np.True_
    """

    name = "closing"

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        closed: np.ndarray = ndimage.binary_closing(block, structure=self.structure(block.ndim))
        return closed
