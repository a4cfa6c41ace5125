"""Nodata as NaN: fill values and out-of-range pixels become NaN, which later steps skip.

Global fits after ``mask_nodata`` run on the image itself, in its own type,
with the masked pixels left out (see :meth:`MaskNodata.keeps`): an integer
image keeps its exact integer histogram, so ``mask_nodata`` then ``threshold``
gives ``skimage.filters.threshold_otsu(band[valid])`` bit for bit. Per chunk,
thresholds never make a NaN pixel foreground and multi_otsu gives it class 0,
so nodata stays out of the mask.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from pydantic import Field, field_validator

from ._base import Step, register


@register
class MaskNodata(Step):
    """Pixels equal to one of ``values``, outside ``valid_range`` or NaN become NaN.

    Values are compared in the image's own dtype, before the result is made
    float32 (float64 for 32- and 64-bit integers and float64 images, which
    float32 cannot hold exactly). With ``any_band`` (the default) a pixel is nodata in every band
    when it is nodata in any band; otherwise each band keeps its own. No halo,
    no fit.

    Parameters
    ----------
    values
        Fill values that mean "no data", e.g. ``[0]`` or ``[-9999, 65535]``.
    valid_range
        ``[low, high]``: values below ``low`` or above ``high`` are nodata
        (the ends are valid); ``low <= high``.
    any_band
        One nodata band makes the pixel nodata in all of them.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[[0, 5, 7, 250]], [[3, 0, 4, 9]]], dtype=np.uint8)
    >>> MaskNodata(values=[0]).apply(image, None)
    array([[[ nan,  nan,   7., 250.]],
    <BLANKLINE>
           [[ nan,  nan,   4.,   9.]]], dtype=float32)
    >>> MaskNodata(valid_range=(1, 200), any_band=False).apply(image, None)
    array([[[nan,  5.,  7., nan]],
    <BLANKLINE>
           [[ 3., nan,  4.,  9.]]], dtype=float32)
    """

    name = "mask_nodata"
    pointwise = True
    output = "image"

    values: list[float] = Field(default_factory=list, description="fill values that are nodata")
    valid_range: tuple[float, float] | None = Field(
        default=None, description="[low, high]: values outside are nodata"
    )
    any_band: bool = True

    @field_validator("valid_range")
    @classmethod
    def _low_not_above_high(cls, bounds: tuple[float, float] | None) -> Any:
        if bounds is not None and not bounds[0] <= bounds[1]:
            raise ValueError(
                f"valid_range [{bounds[0]}, {bounds[1]}] is empty; give [low, high] with "
                "low <= high, e.g. valid_range: [1, 10000]"
            )
        return bounds

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        nodata = self._nodata(block)
        if self.any_band:
            nodata = np.broadcast_to(nodata.any(axis=0), block.shape)
        wide = block.dtype.itemsize >= (4 if block.dtype.kind in "iu" else 8)
        out = block.astype(np.float64 if wide else np.float32)  # a copy
        out[nodata] = np.nan
        return out

    def keeps(self, data: da.Array) -> da.Array:
        """Where the pixels hold data in every band (``any_band``; otherwise in some band)."""
        kept = da.map_blocks(
            lambda block: ~self._nodata(block),
            data,
            dtype=bool,
            meta=np.empty((0,) * data.ndim, bool),
        )
        return kept.all(axis=0) if self.any_band else kept.any(axis=0)

    def _nodata(self, block: np.ndarray) -> np.ndarray:
        nodata = np.isnan(block) if block.dtype.kind in "fc" else np.zeros(block.shape, bool)
        for value in self.values:
            nodata |= block == value
        if self.valid_range is not None:
            low, high = self.valid_range
            nodata |= (block < low) | (block > high)
        return nodata
