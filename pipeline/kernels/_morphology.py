"""Binary opening and closing of a mask, chunk by chunk.

Opening is an erosion then a dilation by the same footprint, closing the
reverse; each reaches ``radius`` pixels, so together they need a halo of
``2 * radius``::

    |<- r ->|<- r ->|<------- chunk ------->|
    [ dilation sees | what erosion needed ]  pixels kept
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy import ndimage

from ._base import Step, register


def footprint(shape: str, radius: int, ndim: int) -> np.ndarray:
    """The structuring element: ``"ball"`` (disk in 2D) or ``"cube"`` (square in 2D).

    The ball holds the offsets within Euclidean distance ``radius`` of the
    centre, as ``skimage.morphology.disk`` / ``ball`` make them.

    Examples
    --------
    >>> footprint("ball", 1, 2).astype(int)
    array([[0, 1, 0],
           [1, 1, 1],
           [0, 1, 0]])
    """
    if shape == "cube":
        return np.ones((2 * radius + 1,) * ndim, dtype=bool)
    if shape == "ball":
        offsets = np.indices((2 * radius + 1,) * ndim) - radius
        inside: np.ndarray = (offsets**2).sum(axis=0) <= radius**2
        return inside
    raise ValueError(f"unknown footprint {shape!r}; the footprints are ball, cube")


class _Morphology(Step):
    """A mask step with a footprint of ``radius``; the halo is two footprints' reach."""

    output = "mask"
    accepts = ("mask",)

    radius: int = Field(ge=1, description="footprint radius in pixels")
    footprint: Literal["ball", "cube"] = "ball"

    def halo(self, ndim: int) -> tuple[int, ...]:
        return (2 * self.radius,) * ndim

    def structure(self, ndim: int) -> np.ndarray:
        """The footprint for ``ndim`` spatial axes."""
        return footprint(self.footprint, self.radius, ndim)


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
        Footprint radius in pixels, >= 1; the halo is ``2 * radius``.
    footprint
        ``"ball"`` or ``"cube"``.

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
        Footprint radius in pixels, >= 1; the halo is ``2 * radius``.
    footprint
        ``"ball"`` or ``"cube"``.

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
