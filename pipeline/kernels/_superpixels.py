"""Superpixels: SLIC and Felzenszwalb over-segmentations, as instances to stitch.

Both are ``"instances"`` steps: each runs scikit-image on the whole padded
block (the chunk plus ``halo`` pixels on each side, reflected at the image
border) and returns its segment ids over that block, from 1 (0 is left for
background, which superpixels never make). Neither algorithm is local, so a
superpixel near a seam depends on the block around it; the halo gives the
stitcher an overlap in which neighbouring blocks' segments are matched.

Both use the bands as they are, as one multichannel image (no Lab
conversion, even for 3 bands: scikit-image would convert RGB to Lab after
rescaling each block to its own range, which makes colours depend on the
chunking).
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any

import dask
import dask.array as da
import numpy as np
from pydantic import Field
from skimage.segmentation import felzenszwalb, slic

from ..errors import InputValueError
from ._base import Step, register


class _Superpixels(Step):
    """Shared by the superpixel steps: the ``halo`` field and its description."""

    output = "instances"

    context: int | None = Field(
        default=None, ge=0, alias="halo", description="context on each side, in pixels"
    )

    def describe(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.model_dump(by_alias=True).items())
        return f"{self.name}({params})"


def _channels_last(block: np.ndarray) -> tuple[np.ndarray, int | None]:
    """The block as scikit-image takes it: bands last, or no band axis for one band."""
    if block.shape[0] == 1:
        return block[0], None
    return np.moveaxis(block, 0, -1), -1


@register
class Slic(_Superpixels):
    """SLIC superpixels of about ``segment_size`` pixels each.

    ``skimage.segmentation.slic`` on the padded block, with ``n_segments``
    set to the block's pixel count divided by ``segment_size``, so the
    superpixels have the same size whatever the chunk size, and
    ``convert2lab=False``. scikit-image rescales each block to [0, 1] by its
    own minimum and maximum before weighing colour against distance; ``fit``
    takes the whole image's range (nodata excluded) and ``apply`` scales
    ``compactness`` by the ratio of the block's range to it, which undoes that
    per-block stretch: a colour difference weighs the same in every block.
    With one chunk covering the image the result is exactly scikit-image's on
    the padded image.

    Parameters
    ----------
    segment_size
        Target superpixel size in pixels (voxels in 3D), >= 1.
    compactness
        Weight of distance against colour, > 0, for colours on the image's
        range mapped to [0, 1]: about 0.1 follows edges, 1 and above makes
        near-square superpixels.
    sigma
        Gaussian smoothing before segmenting, in pixels, >= 0.
    halo
        Context on each side, in pixels; by default two superpixel widths,
        ``ceil(2 * segment_size ** (1 / ndim))``.

    Examples
    --------
    >>> import numpy as np
    >>> block = np.zeros((1, 8, 8))
    >>> block[0, :, 4:] = 1
    >>> Slic(segment_size=16).apply(block, 1.0)
    array([[1, 1, 1, 1, 2, 2, 2, 2],
           [1, 1, 1, 1, 2, 2, 2, 2],
           [1, 1, 1, 1, 2, 2, 2, 2],
           [1, 1, 1, 1, 2, 2, 2, 2],
           [1, 1, 1, 1, 2, 2, 2, 2],
           [3, 3, 3, 3, 4, 4, 4, 4],
           [3, 3, 3, 3, 4, 4, 4, 4],
           [3, 3, 3, 3, 4, 4, 4, 4]])
    """

    name = "slic"

    segment_size: int = Field(default=400, ge=1, description="target size in pixels")
    compactness: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    sigma: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    def halo(self, ndim: int) -> tuple[int, ...]:
        if self.context is not None:
            return (self.context,) * ndim
        return (math.ceil(2 * self.segment_size ** (1 / ndim)),) * ndim

    def fit(self, data: da.Array, valid: da.Array | None) -> float:
        """The whole image's value range (max - min over all bands, nodata excluded)."""
        if valid is None:
            lo, hi = data.min(), data.max()
        else:  # no valid pixel: lo = inf, hi = -inf, no span
            lo, hi = da.where(valid, data, np.inf).min(), da.where(valid, data, -np.inf).max()
        low, high = dask.compute(lo, hi)
        span = float(high) - float(low)
        return span if math.isfinite(span) and span > 0 else 0.0

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        image, channel_axis = _channels_last(block)
        span = float(np.max(block)) - float(np.min(block))
        compactness = self.compactness
        if span > 0 and state:
            compactness *= state / span  # undo slic's rescale of the block to its own range
        return np.asarray(
            slic(
                image,
                n_segments=max(1, round(math.prod(block.shape[1:]) / self.segment_size)),
                compactness=compactness,
                sigma=self.sigma,
                convert2lab=False,
                start_label=1,
                channel_axis=channel_axis,
            )
        )


@register
class Felzenszwalb(_Superpixels):
    """Felzenszwalb's graph-based segments, 2D only.

    ``skimage.segmentation.felzenszwalb`` on the padded block, ids shifted by
    1 so they start at 1. Segment sizes follow the image's contrast, not a
    target, and grow with ``scale``: raise ``halo`` with it.

    Parameters
    ----------
    scale
        Observation level, > 0: higher gives fewer, larger segments.
    sigma
        Gaussian smoothing before segmenting, in pixels, >= 0.
    min_size
        Segments smaller than this are merged into a neighbour, >= 0.
    halo
        Context on each side, in pixels (default 16).

    Raises
    ------
    InputValueError
        From ``halo``, for 3D images.

    Examples
    --------
    >>> import numpy as np
    >>> block = np.zeros((1, 4, 6))
    >>> block[0, :, 3:] = 1
    >>> Felzenszwalb(sigma=0, min_size=2).apply(block, None)
    array([[1, 1, 1, 2, 2, 2],
           [1, 1, 1, 2, 2, 2],
           [1, 1, 1, 2, 2, 2],
           [1, 1, 1, 2, 2, 2]])
    """

    name = "felzenszwalb"

    scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    sigma: float = Field(default=0.8, ge=0, allow_inf_nan=False)
    min_size: int = Field(default=20, ge=0, description="in pixels")

    def halo(self, ndim: int) -> tuple[int, ...]:
        if ndim != 2:
            raise InputValueError(
                f"{self.describe()} segments 2D images only; the image is {ndim}D: "
                "use slic for volumes"
            )
        return (16 if self.context is None else self.context,) * ndim

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        if block.ndim != 3:
            raise InputValueError(
                f"{self.describe()} segments 2D images only; got a {block.ndim - 1}D block"
            )
        image, channel_axis = _channels_last(block)
        if block.shape[0] > 3:
            _quiet_many_bands()
        ids = felzenszwalb(
            image,
            scale=self.scale,
            sigma=self.sigma,
            min_size=self.min_size,
            channel_axis=channel_axis,
        )
        return np.asarray(ids) + 1


_MANY_BANDS = "Got image with third dimension"  # scikit-image's warning for > 3 bands
_FILTER_LOCK = threading.Lock()


def _quiet_many_bands() -> None:
    """Ignore scikit-image's warning that more than 3 bands "may not be intended".

    They are meant here. The filter joins the process's warning filters, once,
    rather than a ``warnings.catch_warnings`` block around the call: dask runs
    blocks in threads, and ``catch_warnings`` is not thread-safe (a thread
    leaving it restores the filters while another is still inside).
    """
    with _FILTER_LOCK:
        for action, message, category, *_ in warnings.filters:
            pattern = getattr(message, "pattern", message)
            if action == "ignore" and pattern == _MANY_BANDS and category is RuntimeWarning:
                return
        warnings.filterwarnings("ignore", message=_MANY_BANDS, category=RuntimeWarning)
