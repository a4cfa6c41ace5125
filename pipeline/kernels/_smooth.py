"""Smoothing steps."""

from __future__ import annotations

import math
from functools import partial
from typing import Annotated, Any

import numpy as np
from pydantic import Field
from scipy import ndimage

from ._base import Step, register
from ._features import with_data
from ._units import Physical, Pixels, per_axis

TRUNCATE = 4.0  # scipy's default: the kernel reaches 4 sigma


@register
class Gaussian(Step):
    """Gaussian smoothing over the spatial axes (bands are smoothed separately).

    ``scipy.ndimage.gaussian_filter`` with ``mode="reflect"``. Its halo is
    ``ceil(4 * sigma)`` per axis: the reach of scipy's truncated kernel, so
    chunked smoothing equals whole-image smoothing away from the image border.

    Pixels without data (the image's nodata, or NaN) are left out: near them
    the smoothing is a normalised convolution, ``G(x v) / G(v)`` with ``v = 1``
    on pixels with data, the Gaussian-weighted mean of the pixels with data
    only, so a scene's fill does not darken (or brighten) its edge. A pixel
    with no such pixel within the kernel's reach is smoothed exactly as
    scipy smooths it; pixels without data stay NaN.

    Parameters
    ----------
    sigma
        Standard deviation, > 0: pixels (one number, or one per spatial axis)
        or a length such as ``"1 mm"``, converted per axis with the image's
        spacing (1 mm on 0.5 x 1 x 1 mm voxels is sigma 2, 1, 1 pixels).

    Examples
    --------
    >>> Gaussian(sigma=[2, 0.5]).halo(2)
    (8, 2)
    """

    name = "gaussian"
    output = "image"
    uses_valid = True

    sigma: Annotated[Pixels, Physical("length", gt=0)] = Field(
        description="standard deviation: pixels, per axis, or a length"
    )

    def halo(self, ndim: int) -> tuple[int, ...]:
        return tuple(math.ceil(TRUNCATE * sigma) for sigma in per_axis(self, "sigma", ndim))

    def apply(self, block: np.ndarray, state: Any, valid: np.ndarray | None = None) -> np.ndarray:
        data = block.astype(np.float32, copy=False)
        sigmas = per_axis(self, "sigma", block.ndim - 1)
        smooth = partial(ndimage.gaussian_filter, mode="reflect", truncate=TRUNCATE)
        usable = with_data(block, valid)
        if usable.all():
            return smooth(data, sigma=(0.0, *sigmas))  # not across bands
        # Normalised where the kernel's reach (scipy's radius per axis) holds a pixel
        # without data; elsewhere G(x v) is G(x) bit for bit.
        reach = [2 * int(TRUNCATE * sigma + 0.5) + 1 for sigma in sigmas]
        mixed = ndimage.maximum_filter(~usable, size=reach, mode="reflect")
        total = smooth(usable.astype(np.float32), sigma=sigmas)
        out = smooth(np.where(usable, data, np.float32(0)), sigma=(0.0, *sigmas))
        np.divide(out, total, out=out, where=mixed & usable)
        out[:, ~usable] = np.nan
        return out
