"""Global thresholds: one threshold for the whole image, from a distributed histogram.

Every automatic method is fitted once, on the histogram of the whole image
(nodata excluded) that :func:`global_histogram` builds chunk by chunk, exactly
as scikit-image builds it on the whole image. What that buys, per method:

========  ==========================  =========================================
method    integer images (<=16 bit)   float images (256 bins)
========  ==========================  =========================================
otsu      exact                       exact (skimage also bins)
yen       exact                       exact (skimage also bins)
isodata   exact                       exact (skimage also bins)
triangle  exact                       exact (skimage also bins)
li        exact (skimage's own        skimage's li of the image quantised to
          histogram branch)           its bins (skimage iterates on the
                                      pixels): within one bin width on the
                                      sample images, many bins off on tiny
                                      ones (hundreds of pixels)
mean      exact                       within half a bin width (bin centres
                                      stand in for the values)
========  ==========================  =========================================

"Exact" means equal to the ``skimage.filters.threshold_<method>`` of the whole
image (of ``image[valid]`` with a nodata mask), bit for bit. NaN pixels (from
``mask_nodata``, say) are left out of the histogram, as nodata is.

``method="local"`` is not global: each pixel is compared with a statistic of
its ``block_size`` wide neighbourhood, ``skimage.filters.threshold_local``,
computed per chunk with the halo the window needs (see :class:`Threshold`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import dask.array as da
import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator
from scipy import ndimage
from skimage.filters import threshold_isodata, threshold_local, threshold_otsu, threshold_yen

from .._batches import reduce_blocks
from ..errors import InputValueError
from ._base import Step, register
from ._reductions import add, value_counts, value_range, widest
from ._smooth import TRUNCATE  # skimage's gaussian uses scipy's default too
from ._units import Physical, Pixels, per_axis

FLOAT_BINS = 256  # skimage's default for float images

Method = Literal["otsu", "li", "yen", "triangle", "mean", "isodata", "manual", "local"]
LocalMethod = Literal["gaussian", "mean", "median"]


@register
class Threshold(Step):
    """Foreground where the (single-band) value is above (or below) a threshold: one
    global threshold, or a local one per pixel.

    Every global method but ``"manual"`` fits the threshold on the histogram of the
    whole image (nodata and NaN excluded) in a distributed pass before the per-chunk
    map, so every chunk uses the same value, equal to the matching
    ``skimage.filters.threshold_<method>`` of the whole image (see the module
    docstring for where that is exact and where it is within a bin).
    ``method="manual"`` takes ``value``.

    An image with one value (a constant image) gets that value as its
    threshold with every method, so with ``foreground="above"`` nothing is
    foreground (skimage's yen and isodata misbehave there on floats). An
    image with two values ``low < high`` gets a threshold in ``[low, high)``
    from every method (otsu and yen: ``low``; the others between), so
    ``high`` is foreground.

    ``method="local"`` (adaptive thresholding) compares each pixel with
    ``skimage.filters.threshold_local(image, block_size, local_method,
    offset=offset, mode="reflect")``: a statistic of its ``block_size`` wide
    neighbourhood minus ``offset``; nothing is fitted globally. Its halo is
    the window's reach along each axis: ``int(4 * sigma + 0.5)`` with
    skimage's ``sigma = (block_size - 1) / 6`` for ``"gaussian"`` (scipy's
    truncated kernel), ``block_size // 2`` for ``"mean"`` and ``"median"``. Chunked
    ``"gaussian"`` and ``"median"`` masks equal the whole-image mask exactly.
    ``"mean"`` sums each window directly (exact for integer images) where
    scipy's ``uniform_filter`` keeps a running sum along each line, whose
    rounding depends on where the line starts: the two differ only on pixels
    equal to their window's mean up to that rounding (ties), which are
    background here, as exact arithmetic says, for every chunking.

    A NaN pixel is never foreground, with either ``foreground`` (NaN compares
    false); with ``"local"`` a NaN in a window makes its gaussian or mean NaN,
    so the pixels around a NaN are background too.

    Parameters
    ----------
    method
        ``otsu``, ``li``, ``yen``, ``triangle``, ``mean``, ``isodata`` (global,
        fitted), ``manual`` (global, ``value``) or ``local``.
    value
        The threshold of ``method="manual"``.
    foreground
        ``"above"``: values above the threshold; ``"below"``: values at or below it.
    block_size
        ``method="local"`` only: the window width, odd, >= 3: pixels (one
        number, or one per spatial axis) or a length such as ``"15 mm"``,
        converted per axis with the image's spacing and rounded to the nearest
        odd number of pixels (``2 * floor(x / 2) + 1``).
    local_method
        ``method="local"`` only: ``"gaussian"`` (weighted mean), ``"mean"`` or ``"median"``.
    offset
        ``method="local"`` only: subtracted from the local statistic.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> image = da.from_array(np.array([[1, 1, 2], [8, 9, 9]], np.uint8), chunks=1)
    >>> round(Threshold(method="li").fit(image[None], None), 4)
    3.3388
    >>> step = Threshold(method="local", block_size=3, local_method="mean")
    >>> step.halo(2)
    (1, 1)
    >>> step.apply(np.array([[[1, 2, 3, 9, 3]]], np.uint8), None)
    array([[False, False, False,  True, False]])
    """

    name = "threshold"
    pointwise = True
    fits_values = True
    output = "mask"

    method: Method = "otsu"
    value: float | None = None
    foreground: Literal["above", "below"] = "above"
    block_size: Annotated[Pixels | None, Physical("length", ge=3, odd=True)] = Field(
        default=None, validate_default=True, description="local window width, odd"
    )
    local_method: LocalMethod = "gaussian"
    offset: float = Field(default=0.0, allow_inf_nan=False, description="local: subtracted")

    @field_validator("block_size")
    @classmethod
    def _block_size_matches_method(cls, size: Pixels | None, info: ValidationInfo) -> Any:
        method = info.data.get("method")
        if method is None:
            return size  # the method itself is invalid, and reported
        if method == "local" and size is None:
            raise ValueError(
                "method 'local' needs block_size, the odd width of the window in pixels, "
                "e.g. {method: local, block_size: 35}"
            )
        if method != "local" and size is not None:
            raise ValueError(
                f"block_size is only for method 'local', not {method!r}; drop it, or use "
                f"{{method: local, block_size: {size}}}"
            )
        for width in size if isinstance(size, tuple) else (size,):
            if isinstance(width, int) and width % 2 == 0:
                raise ValueError(
                    f"block_size {width} is even; the window needs a centre pixel: use "
                    f"{width - 1} or {width + 1}"
                )
        return size

    @model_validator(mode="after")
    def _value_matches_method(self) -> Threshold:
        if self.method == "manual" and self.value is None:
            raise ValueError("method 'manual' needs a value, e.g. {method: manual, value: 0.5}")
        if self.method != "manual" and self.value is not None:
            raise ValueError(f"value is only for method 'manual', not {self.method!r}")
        if self.method != "local":
            for field in ("local_method", "offset"):
                if field in self.model_fields_set:
                    raise ValueError(
                        f"{field} is only for method 'local', not {self.method!r}; drop it, or "
                        "use e.g. {method: local, block_size: 35, " + f"{field}: ...}}"
                    )
        return self

    def halo(self, ndim: int) -> tuple[int, ...]:
        if self.method != "local" or self.block_size is None:
            return (0,) * ndim
        return tuple(
            local_reach(int(size), self.local_method) for size in per_axis(self, "block_size", ndim)
        )

    def fit(self, data: da.Array, valid: da.Array | None) -> float | None:
        if self.method == "local":
            single_band(data, self.name)
            return None
        if self.method == "manual" and self.value is not None:
            return self.value
        counts, centers = band_histogram(data, valid, self.name)
        if np.count_nonzero(counts) < 2:
            return float(centers[np.flatnonzero(counts)[0]])
        return float(FROM_HISTOGRAM[self.method](counts, centers))

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        values = block[0]
        if self.method == "local" and self.block_size is not None:
            sizes = tuple(int(size) for size in per_axis(self, "block_size", values.ndim))
            state = self._local(values, sizes)
        return compare(values, state, above=self.foreground == "above")

    def _local(self, values: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
        """The threshold image of ``skimage.filters.threshold_local``."""
        if self.local_method == "mean":
            # skimage's float type: float32 for float16/32 images, float64 for the rest
            floats = np.dtype(
                np.float32 if values.dtype in (np.float16, np.float32) else np.float64
            )
            mean: np.ndarray = window_mean(values, size).astype(floats)
            return mean - self.offset
        thresholds: np.ndarray = threshold_local(
            values, size, self.local_method, offset=self.offset, mode="reflect"
        )
        return thresholds


def local_reach(block_size: int, method: str) -> int:
    """Pixels of context ``threshold_local(block_size, method)`` reads on each side.

    Examples
    --------
    >>> local_reach(35, "gaussian"), local_reach(35, "mean"), local_reach(5, "gaussian")
    (23, 17, 3)
    """
    if method == "gaussian":
        sigma = (block_size - 1) / 6.0  # skimage's sigma for the block size
        return int(TRUNCATE * sigma + 0.5)  # scipy's gaussian_filter1d radius
    if method in ("mean", "median"):
        return block_size // 2
    raise InputValueError(
        f"unknown local method {method!r}; the methods are gaussian, mean, median"
    )


def window_mean(values: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Mean of each ``size`` wide window (float64; one width, or one per axis), edges
    reflected like scipy's ``"reflect"``.

    Each window is summed on its own (a correlation with ones, one axis after
    the other), so a pixel's mean does not depend on where its line starts,
    and for integer images the sums are exact.

    Examples
    --------
    >>> window_mean(np.array([1, 2, 6]), 3)
    array([1.33333333, 3.        , 4.66666667])
    """
    sums = values.astype(np.float64)
    widths = (size,) * sums.ndim if isinstance(size, int) else tuple(size)
    for axis, width in enumerate(widths):
        sums = ndimage.correlate1d(sums, np.ones(width), axis=axis, mode="reflect")
    mean: np.ndarray = sums / float(math.prod(widths))
    return mean


def _otsu(counts: np.ndarray, centers: np.ndarray) -> float:
    return float(threshold_otsu(hist=(counts, centers)))


def _yen(counts: np.ndarray, centers: np.ndarray) -> float:
    # skimage takes log(P1 * (1 - P1)), which is log(0) where the float32
    # cumulative sum reaches 1 before the last bin; it warns and skips that
    # bin (-inf never wins the argmax), so we skip it without the warning.
    with np.errstate(divide="ignore"):
        return float(threshold_yen(hist=(counts, centers)))


def _isodata(counts: np.ndarray, centers: np.ndarray) -> float:
    return float(threshold_isodata(hist=(counts, centers)))


def _mean(counts: np.ndarray, centers: np.ndarray) -> float:
    """``np.mean(image)`` from the histogram.

    Integer images: the sum is exact in int64 and divided once, as numpy's
    float64 accumulation of integers does, so the result is bit for bit the
    same. Floats: bin centres stand in for the values, within half a bin.
    """
    if centers.dtype.kind in "iu":
        total = (counts * centers.astype(np.int64)).sum()
    else:
        total = (counts * centers.astype(np.float64)).sum()
    return float(total / counts.sum())


def _triangle(counts: np.ndarray, centers: np.ndarray) -> float:
    """``skimage.filters.threshold_triangle``, line for line, on our histogram.

    skimage computes this very histogram (min to max, ends non-empty), so the
    result is exact for integer and float images alike.
    """
    hist = counts
    nbins = len(hist)
    arg_peak_height = int(np.argmax(hist))
    peak_height = float(hist[arg_peak_height])
    arg_low_level, arg_high_level = (int(i) for i in np.flatnonzero(hist)[[0, -1]])
    # The line from the peak to the far end of the longer tail.
    flip = arg_peak_height - arg_low_level < arg_high_level - arg_peak_height
    if flip:
        hist = hist[::-1]
        arg_low_level = nbins - arg_high_level - 1
        arg_peak_height = nbins - arg_peak_height - 1
    width = float(arg_peak_height - arg_low_level)
    x1 = np.arange(arg_peak_height - arg_low_level)
    y1 = hist[x1 + arg_low_level]
    norm = np.sqrt(peak_height**2 + width**2)
    length = (peak_height / norm) * x1 - (width / norm) * y1
    arg_level = int(np.argmax(length)) + arg_low_level
    if flip:
        arg_level = nbins - arg_level - 1
    return float(centers[arg_level])


def _li(counts: np.ndarray, centers: np.ndarray) -> float:
    """``skimage.filters.threshold_li`` (default tolerance and initial guess) from the histogram.

    For integer images skimage itself iterates on the histogram of the image
    shifted to start at 0; this is that branch, line for line, so the result
    is exact. For float images skimage iterates on the pixels; here the
    image is quantised to its histogram (each pixel replaced by its bin
    centre) and skimage's float iteration runs on that, with skimage's float
    tolerance (half the smallest gap between values): this is
    ``threshold_li`` of the quantised image, up to rounding. It lands within
    one bin width of skimage on images with a well-populated histogram; on
    small images (hundreds of pixels) it can be many bins off (over 20 seen
    on a 20 x 20 image), because
    Li's update divides by the log of the background mean, which magnifies
    the binning error when that mean is close to the image minimum.
    """
    if centers.dtype.kind in "iu":
        low: Any = centers[0]
        values = centers - low
        tolerance = 0.5
    else:
        low = float(centers[0])
        values = centers.astype(np.float64) - low
        tolerance = float(np.min(np.diff(values[counts > 0]))) / 2
    weights = counts.astype(np.float32)
    t_next = (counts * values).sum() / counts.sum()  # np.mean of the shifted image
    t_curr = -2 * tolerance
    while abs(t_next - t_curr) > tolerance:
        t_curr = t_next
        foreground = values > t_curr
        background = ~foreground
        mean_fore = np.average(values[foreground], weights=weights[foreground])
        mean_back = np.average(values[background], weights=weights[background])
        if mean_back == 0:
            break
        t_next = (mean_back - mean_fore) / (np.log(mean_back) - np.log(mean_fore))
    return float(t_next + low)


FROM_HISTOGRAM: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "otsu": _otsu,
    "li": _li,
    "yen": _yen,
    "triangle": _triangle,
    "mean": _mean,
    "isodata": _isodata,
}
"""Each automatic method: ``(counts, centers)`` of the whole image's histogram → threshold."""


def band_histogram(
    data: da.Array, valid: da.Array | None, step: str
) -> tuple[np.ndarray, np.ndarray]:
    """The global histogram (int64 counts, centres) of a single-band image for ``step``.

    NaN pixels are left out, as pixels outside ``valid`` are.
    """
    single_band(data, step)
    counts, centers = global_histogram(data[0], valid)
    if counts.sum() == 0:
        raise InputValueError(f"{step}: the image has no valid pixels to fit on")
    return counts.astype(np.int64), centers


def single_band(data: da.Array, step: str) -> None:
    """Refuse an image (band axis first) of more than one band for ``step``."""
    if data.shape[0] != 1:
        raise InputValueError(
            f"{step} needs a single band; the image has {data.shape[0]}: select one with "
            "source: {path: ..., bands: [n]} or combine them with an expression step"
        )


def compare(values: np.ndarray, level: Any, *, above: bool) -> np.ndarray:
    """``values > level`` (``above``) or ``values <= level``, as numpy compares them.

    An integer image of at most 32 bits against one finite level is compared
    with the level's floor in the image's own dtype: the same answer (float64
    holds every such value exactly), without widening the chunk to float64,
    which takes four times as long.
    """
    kind, size = values.dtype.kind, values.dtype.itemsize
    if kind in "iu" and size <= 4 and np.ndim(level) == 0 and np.isfinite(level):
        info = np.iinfo(values.dtype)
        floor = math.floor(level)
        if floor < info.min or floor >= info.max:  # every pixel on the same side
            return np.full(values.shape, above == (floor < info.min))
        level = values.dtype.type(floor)
    return values > level if above else values <= level


def global_histogram(values: da.Array, valid: da.Array | None) -> tuple[np.ndarray, np.ndarray]:
    """The whole image's histogram as scikit-image builds it, computed chunk by chunk.

    Integer images of at most 16 bits: one bin per value between the global
    minimum and maximum, in one pass. Other images: 256 bins over the global
    range, in two passes (range, then counts); NaN pixels are left out, as
    pixels outside ``valid`` are. Each pass goes through
    :func:`~pipeline._batches.reduce_blocks`, so in batches of chunks.
    """
    if values.dtype.kind in "iub" and values.dtype.itemsize <= 2:
        offset = int(np.iinfo(values.dtype).min) if values.dtype.kind != "b" else 0
        arrays = [values] if valid is None else [values, valid.rechunk(values.chunks)]
        counts = reduce_blocks(value_counts, arrays, add)
        present = np.flatnonzero(counts)
        if present.size == 0:
            return counts[:0], np.arange(0)
        lo, hi = present[0], present[-1]
        return counts[lo : hi + 1], np.arange(lo, hi + 1) + offset
    data = values if values.dtype.kind == "f" else values.astype(np.float64)
    if valid is not None:
        data = da.where(valid, data, np.nan)
    found = reduce_blocks(value_range, [data, ~da.isnan(data)], widest)
    if found is None or not np.isfinite(found[0]):
        return np.zeros(0, np.int64), np.zeros(0)
    lo, hi, count = found
    if lo == hi:
        return np.array([count]), np.array([lo])
    # np.histogram per chunk, in the data's own dtype and the global range, is
    # what skimage runs on the whole image: the same bins, the same counts.
    counts = reduce_blocks(_histogram, [data], add, lo, hi)
    edges = np.histogram(np.empty(0, dtype=data.dtype), bins=FLOAT_BINS, range=(lo, hi))[1]
    return counts, (edges[:-1] + edges[1:]) / 2


def _histogram(block: np.ndarray, lo: float, hi: float) -> np.ndarray:
    finite = block[~np.isnan(block)]
    return np.histogram(finite, bins=FLOAT_BINS, range=(lo, hi))[0]
