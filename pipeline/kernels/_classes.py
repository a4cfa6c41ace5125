"""Class maps: every pixel gets a class, labelled per class across chunk seams."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from pydantic import Field
from skimage.filters import threshold_multiotsu

from ..errors import InputValueError
from ._base import Step, register
from ._threshold import FLOAT_BINS, band_histogram

MAX_BINS = 1024


@register
class MultiOtsu(Step):
    """Classes 1..k split by k - 1 global multi-Otsu thresholds (0 is left for nodata).

    The thresholds are fitted once on the whole image's histogram (nodata
    excluded), equal to ``skimage.filters.threshold_multiotsu`` on the whole
    image for 8-bit images and float images (the same 256 bins). Multi-Otsu's
    cost grows with the square of the number of bins, so a histogram of more
    than ``MAX_BINS`` integer levels (16-bit scans) is regrouped into 256 bins
    over the global range first, as scikit-image bins float images. The label
    step then labels each class's connected regions separately.

    NaN pixels (from ``mask_nodata``, say) are left out of the histogram and
    get class 0, as nodata does.

    Examples
    --------
    >>> import numpy as np
    >>> MultiOtsu(classes=3).apply(np.array([[[1.0, 5.0, np.nan, 9.0]]]), np.array([3.0, 7.0]))
    array([[1, 2, 0, 3]], dtype=uint8)
    """

    name = "multi_otsu"
    pointwise = True
    fits_values = True
    output = "classes"

    classes: int = Field(default=3, ge=2, le=255, description="number of classes k")

    def fit(self, data: da.Array, valid: da.Array | None) -> np.ndarray:
        counts, centers = band_histogram(data, valid, self.name)
        distinct = int(np.count_nonzero(counts))
        if distinct < self.classes:
            raise InputValueError(
                f"multi_otsu: the image holds {distinct} distinct values, too few for "
                f"{self.classes} classes; ask for at most {distinct}"
            )
        if counts.size > MAX_BINS:
            counts, centers = _regroup(counts, centers, FLOAT_BINS)
        return np.asarray(threshold_multiotsu(hist=(counts, centers), classes=self.classes))

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        values = block[0]
        classes = (np.digitize(values, bins=state) + 1).astype(np.uint8)
        if values.dtype.kind == "f":
            classes[np.isnan(values)] = 0
        return classes


def _regroup(counts: np.ndarray, centers: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``bins`` equal bins over the range of ``centers``, as np.histogram would make them."""
    edges = np.linspace(centers[0], centers[-1], bins + 1)
    index = np.clip(np.searchsorted(edges, centers, side="right") - 1, 0, bins - 1)
    return np.bincount(index, weights=counts, minlength=bins), (edges[:-1] + edges[1:]) / 2
