"""Bands combined into one: a weighted sum, luminance for RGB by default."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from pydantic import Field

from ..errors import InputValueError
from ._base import Step, register

# ITU-R BT.709 luminance, the weights skimage.color.rgb2gray uses.
LUMINANCE = (0.2125, 0.7154, 0.0721)


@register
class Grayscale(Step):
    """One band from many: ``sum(weights[i] * band[i])`` in float32.

    Default weights: luminance (as ``skimage.color.rgb2gray``, without its
    rescaling to 0..1) for 3 bands, the mean of the bands otherwise.
    """

    name = "grayscale"
    pointwise = True
    output = "image"

    weights: list[float] | None = Field(default=None, min_length=1)

    def bands(self, count: int) -> int:
        return 1

    def fit(self, data: da.Array, valid: da.Array | None) -> np.ndarray:
        count = data.shape[0]
        if self.weights is None:
            weights = LUMINANCE if count == 3 else (1.0 / count,) * count
        elif len(self.weights) != count:
            raise InputValueError(
                f"grayscale: {len(self.weights)} weights for an image of {count} bands; "
                f"give one weight per band"
            )
        else:
            weights = tuple(self.weights)
        return np.asarray(weights, dtype=np.float32)

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        return np.tensordot(state, block.astype(np.float32, copy=False), axes=1)[None]
