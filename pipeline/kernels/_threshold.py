"""Global thresholds: one threshold for the whole image, from a distributed histogram."""

from __future__ import annotations

from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
from pydantic import model_validator
from skimage.filters import threshold_otsu

from ..errors import InputValueError
from ._base import Step, register

FLOAT_BINS = 256  # skimage's default for float images


@register
class Threshold(Step):
    """Foreground where the (single-band) value is above (or below) one global threshold.

    ``method="otsu"`` fits the threshold on the histogram of the whole image
    (nodata excluded) in a distributed pass before the per-chunk map, so every
    chunk uses the same value: for integer images it equals
    ``skimage.filters.threshold_otsu`` of the whole image; for float images it
    uses the same 256 bins over the global range. ``method="manual"`` takes
    ``value``.
    """

    name = "threshold"
    output = "mask"

    method: Literal["otsu", "manual"] = "otsu"
    value: float | None = None
    foreground: Literal["above", "below"] = "above"

    @model_validator(mode="after")
    def _value_matches_method(self) -> Threshold:
        if self.method == "manual" and self.value is None:
            raise ValueError("method 'manual' needs a value, e.g. {method: manual, value: 0.5}")
        if self.method != "manual" and self.value is not None:
            raise ValueError(f"value is only for method 'manual', not {self.method!r}")
        return self

    def fit(self, data: da.Array, valid: da.Array | None) -> float:
        if self.method == "manual" and self.value is not None:
            return self.value
        if data.shape[0] != 1:
            raise InputValueError(
                f"threshold needs a single band; the image has {data.shape[0]}: "
                "select one with source: {path: ..., bands: [n]}"
            )
        counts, centers = global_histogram(data[0], valid)
        if counts.sum() == 0:
            raise InputValueError("threshold: the image has no valid pixels to fit on")
        if np.count_nonzero(counts) < 2:
            return float(centers[np.flatnonzero(counts)[0]])
        return float(threshold_otsu(hist=(counts, centers)))

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        values = block[0]
        return values > state if self.foreground == "above" else values <= state


def global_histogram(values: da.Array, valid: da.Array | None) -> tuple[np.ndarray, np.ndarray]:
    """The whole image's histogram as scikit-image builds it, computed chunk by chunk.

    Integer images of at most 16 bits: one bin per value between the global
    minimum and maximum, in one pass. Other images: 256 bins over the global
    range, in two passes (range, then counts).
    """
    weights = None if valid is None else valid.astype(np.int64)
    if values.dtype.kind in "iub" and values.dtype.itemsize <= 2:
        info = np.iinfo(values.dtype) if values.dtype.kind != "b" else np.iinfo(np.uint8)
        offset = int(info.min)
        span = int(info.max) - offset + 1
        shifted = values.astype(np.int64) - offset
        counts = da.bincount(
            shifted.ravel(), weights=None if weights is None else weights.ravel(), minlength=span
        ).compute()
        present = np.flatnonzero(counts)
        if present.size == 0:
            return counts[:0], np.arange(0)
        lo, hi = present[0], present[-1]
        return counts[lo : hi + 1], np.arange(lo, hi + 1) + offset
    data = values if values.dtype.kind == "f" else values.astype(np.float64)
    if valid is not None:
        data = da.where(valid, data, np.nan)
    lo, hi = dask.compute(da.nanmin(data), da.nanmax(data))
    if not np.isfinite(lo):
        return np.zeros(0, np.int64), np.zeros(0)
    if lo == hi:
        return np.array([int(da.isfinite(data).sum().compute())]), np.array([lo])
    # np.histogram per chunk, in the data's own dtype and the global range, is
    # what skimage runs on the whole image: the same bins, the same counts.
    block_counts = dask.delayed(_histogram, pure=True)
    parts = [block_counts(block, lo, hi) for block in data.to_delayed().ravel()]
    counts = np.sum(dask.compute(*parts), axis=0)
    edges = np.histogram(np.empty(0, dtype=data.dtype), bins=FLOAT_BINS, range=(lo, hi))[1]
    return counts, (edges[:-1] + edges[1:]) / 2


def _histogram(block: np.ndarray, lo: float, hi: float) -> np.ndarray:
    finite = block[~np.isnan(block)]
    return np.histogram(finite, bins=FLOAT_BINS, range=(lo, hi))[0]
