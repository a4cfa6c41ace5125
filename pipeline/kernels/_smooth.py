"""Smoothing steps."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field
from scipy import ndimage

from ._base import Step, register

TRUNCATE = 4.0  # scipy's default: the kernel reaches 4 sigma


@register
class Gaussian(Step):
    """Gaussian smoothing over the spatial axes (bands are smoothed separately).

    Its halo is ``ceil(4 * sigma)``: the reach of scipy's truncated kernel, so
    chunked smoothing equals whole-image smoothing away from the image border.
    """

    name = "gaussian"
    output = "image"

    sigma: float = Field(gt=0, description="standard deviation in pixels")

    def halo(self, ndim: int) -> tuple[int, ...]:
        return (math.ceil(TRUNCATE * self.sigma),) * ndim

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        data = block.astype(np.float32, copy=False)
        sigma = (0.0,) + (self.sigma,) * (block.ndim - 1)  # not across bands
        return ndimage.gaussian_filter(data, sigma=sigma, mode="reflect", truncate=TRUNCATE)
