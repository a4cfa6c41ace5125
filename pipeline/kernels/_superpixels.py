"""Superpixels: SLIC and Felzenszwalb over-segmentations, as instances to stitch.

Both are ``"instances"`` steps: each runs scikit-image on a padded block (the
chunk plus ``halo`` pixels on each side, reflected at the image border) and
returns segment ids over that block, from 1; 0 is background, which
superpixels make only where a step leaves pixels out (slic: a margin of the
halo, and beyond the image). Neither algorithm is local, so a superpixel near
a seam depends on the block around it; the halo gives the stitcher an overlap
in which neighbouring blocks' segments are matched. Felzenszwalb segments the
whole padded block as it is; slic cuts the block to the image's grid of
starting centres, so that every block starts from the same centres.

Both use the bands as they are, as one multichannel image (no Lab
conversion, even for 3 bands: scikit-image would convert RGB to Lab after
rescaling each block to its own range, which makes colours depend on the
chunking).
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Annotated, Any, NamedTuple

import dask.array as da
import numpy as np
from pydantic import Field
from skimage.segmentation import felzenszwalb, slic

from .._batches import reduce_blocks
from ..errors import InputValueError
from ._base import Step, register
from ._reductions import banded, value_range, widest
from ._units import Physical, Pixels, one, per_axis


class _Superpixels(Step):
    """Shared by the superpixel steps: the ``halo`` field and its description."""

    output = "instances"

    context: Annotated[Pixels | None, Physical("length", ge=0, integer=True)] = Field(
        default=None, alias="halo", description="context on each side: pixels, a length"
    )

    def widths(self, ndim: int) -> tuple[int, ...] | None:
        """The ``halo`` given, in pixels along each of ``ndim`` axes (``None``: the default)."""
        if self.context is None:
            return None
        return tuple(int(width) for width in per_axis(self, "context", ndim))

    def describe(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.model_dump(by_alias=True).items())
        return f"{self.name}({params})"


def _channels_last(block: np.ndarray) -> tuple[np.ndarray, int | None]:
    """The block as scikit-image takes it: bands last, or no band axis for one band."""
    if block.shape[0] == 1:
        return block[0], None
    return np.moveaxis(block, 0, -1), -1


HALO_STEPS = 3  # slic's default halo, in grid steps S


class SlicFit(NamedTuple):
    """What ``Slic.fit`` finds: the image's value range and its spatial shape."""

    span: float  # max - min over all bands, nodata excluded (0 when unknown or flat)
    shape: tuple[int, ...]  # where the image ends, per spatial axis


@register
class Slic(_Superpixels):
    """SLIC superpixels on one grid over the whole image, whatever the chunks.

    SLIC starts from centres on a regular grid, step ``S`` along every axis,
    and refines them by 10 k-means iterations, each pixel going to the best
    centre (colour and distance) among those within ``2 * S`` of it. Here the
    grid is the image's, not each block's: ``S = round(segment_size **
    (1 / ndim))``, and the centres lie at image coordinates ``g + k * S`` with
    ``g = S // 2``, where scikit-image puts them on an image whose sides are
    multiples of ``S`` (in 3D its cube root of ``S ** 3`` can fall just short
    of ``S``, which makes ``g = (S - 1) // 2``, e.g. for 4 <= S <= 40).
    Superpixels are about ``S ** ndim`` pixels, e.g. 400 for
    ``segment_size=400`` in 2D (``S = 20``), 343 in 3D (``S = 7``).

    Each padded block is cut to the grid: from the first multiple of ``S`` at
    or after its first pixel (and not before the image's first pixel) to the
    last multiple of ``S`` at or before its end; a block that reaches the
    image's end keeps every pixel up to it, padded by reflection to the next
    multiple of ``S``. ``skimage.segmentation.slic`` runs on that region with
    ``n_segments`` its number of ``S``-cells, so that scikit-image's own grid
    is the image's grid, and with ``convert2lab=False``. Ids are 0 outside the
    region: in the cut margins of the halo (less than ``S`` wide) and beyond
    the image.

    Colour is weighed against distance on the whole image's range:
    scikit-image rescales each block to [0, 1] by its own minimum and maximum;
    ``fit`` takes the image's range (nodata excluded) and ``apply`` scales
    ``compactness`` by the ratio of the block's range to it, which undoes that
    per-block stretch.

    What is exact and what is not. With one chunk over the image the result
    is exactly scikit-image's ``slic`` on the image (padded by reflection at
    its end to a multiple of ``S`` when it is not one) with the parameters
    above. With several chunks every block starts from the image's centres,
    but the result is not exact: each iteration carries a change up to
    ``2 * S`` further, so a superpixel still depends a little on where its
    block ends, and on rounding in the block's own colour rescale. How far
    the effect reaches depends on ``compactness``. Measured with the default
    halo of ``3 * S`` (object F1 at IoU 0.5 of the stitched result against
    the whole image's, 2 or 3 chunkings each, uneven ones included): 1.00 on
    a 512 x 512 RGB slide with ``S = 16`` at the default ``compactness=1``
    (0.99 at 0.5, 0.97 to 0.99 at 0.3), and 1.00 on 40 x 100 x 100 uint16
    nuclei with ``S = 5`` at 0.1 and 1, with 99.6 % of the pixels or more in
    their matching superpixel. At low compactness on a strongly coloured
    image the clusters wander further and chunked superpixels differ from
    the whole image's: on that slide at 0.1, F1 is about 0.8 (0.9 with a
    halo of ``6 * S``). Keep ``compactness`` at 0.5 or more, or raise
    ``halo``, when the chunked result must match the whole image.

    Parameters
    ----------
    segment_size
        Target superpixel size, >= 1: pixels (voxels in 3D), or an area in 2D
        (``"400 um2"``) or a volume in 3D (``"300 um3"``), converted with the
        pixel area or voxel volume and rounded to the nearest whole pixel; it
        sets the grid step ``S``.
    compactness
        Weight of distance against colour, > 0, for colours on the image's
        range mapped to [0, 1]: about 0.1 follows edges closely, 1 (the
        default) balances both, more makes near-square superpixels.
    sigma
        Gaussian smoothing before segmenting, >= 0: pixels (one number, or
        one per spatial axis) or a length, converted per axis.
    halo
        Context on each side, at least ``S`` pixels along each axis: pixels
        (one number, or one per axis) or a length, rounded to the nearest
        whole pixel per axis; by default ``3 * S``.

    Raises
    ------
    InputValueError
        From ``halo``, for a halo narrower than ``S``.

    Examples
    --------
    >>> import numpy as np
    >>> block = np.zeros((1, 8, 8))
    >>> block[0, :, 4:] = 1
    >>> Slic(segment_size=16).apply(block, None)
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
    uses_origin = True

    segment_size: Annotated[float | str, Physical("size", ge=1, integer=True, per_axis=False)] = (
        Field(default=400, description="target size: pixels, an area or a volume")
    )
    compactness: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    sigma: Annotated[Pixels, Physical("length", ge=0)] = Field(
        default=0.0, description="smoothing: pixels, per axis, or a length"
    )

    def grid_step(self, ndim: int) -> int:
        """``S``: the spacing of the initial centres along every axis, in pixels."""
        return max(1, round(one(self, "segment_size") ** (1 / ndim)))

    def halo(self, ndim: int) -> tuple[int, ...]:
        step = self.grid_step(ndim)
        widths = self.widths(ndim)
        if widths is None:
            return (HALO_STEPS * step,) * ndim
        if min(widths) < step:
            raise InputValueError(
                f"{self.describe()}: a halo of {min(widths)} is narrower than the grid "
                f"step {step} in {ndim}D; use halo >= {step} (default {HALO_STEPS * step})"
            )
        return widths

    def fit(self, data: da.Array, valid: da.Array | None) -> SlicFit:
        """The whole image's value range (max - min over all bands, nodata excluded)
        and its spatial shape."""
        found = reduce_blocks(value_range, banded(data, valid), widest)
        span = 0.0 if found is None else float(found[1]) - float(found[0])  # None: no valid pixel
        shape = tuple(int(size) for size in data.shape[1:])
        return SlicFit(span if math.isfinite(span) and span > 0 else 0.0, shape)

    def apply(
        self,
        block: np.ndarray,
        state: SlicFit | None,
        origin: tuple[int, ...] | None = None,
    ) -> np.ndarray:
        """Superpixel ids over the padded block; ``origin=None`` takes the block as
        the whole image, and ``state=None`` weighs colour on the block's range."""
        spatial = block.shape[1:]
        step = self.grid_step(len(spatial))
        if origin is None:
            origin, shape = (0,) * len(spatial), spatial
        elif state is None:
            shape = tuple(o + n for o, n in zip(origin, spatial, strict=True))
        else:
            shape = state.shape
        region = [
            _grid_span(o, n, size, step) for o, n, size in zip(origin, spatial, shape, strict=True)
        ]
        out = np.zeros(spatial, dtype=np.int64)
        if any(end <= start for start, _, end in region):
            return out  # a block narrower than a grid cell (only with halo < S)
        inside = tuple(
            slice(start - o, real - o) for (start, real, _), o in zip(region, origin, strict=True)
        )
        values = block[(slice(None), *inside)]
        widths = [(0, 0), *((0, end - real) for _, real, end in region)]
        if any(after for _, after in widths):
            values = np.pad(values, widths, mode="symmetric")
        image, channel_axis = _channels_last(values)
        span = float(np.max(values)) - float(np.min(values))
        compactness = self.compactness
        if span > 0 and state is not None and state.span:
            compactness *= state.span / span  # undo slic's rescale of the block to its range
        cells = math.prod((end - start) // step for start, _, end in region)
        sigmas = per_axis(self, "sigma", len(spatial))
        sigma = sigmas[0] if len(set(sigmas)) == 1 else sigmas
        labels = slic(
            image,
            n_segments=cells,
            compactness=compactness,
            sigma=sigma,
            convert2lab=False,
            start_label=1,
            channel_axis=channel_axis,
        )
        out[inside] = labels[tuple(slice(0, real - start) for start, real, _ in region)]
        return out


def _grid_span(origin: int, length: int, size: int, step: int) -> tuple[int, int, int]:
    """Where SLIC runs along one axis of a block, in image coordinates.

    ``(start, real_end, end)``: ``start`` is the first multiple of ``step`` in the
    block and the image; ``end`` the last multiple in the block, or, for a block
    reaching the image's end (``size``), the first multiple at or after it, with
    ``real_end = size`` (the pixels in between are padded by reflection);
    otherwise ``real_end = end``.
    """
    start = max(0, -(-origin // step) * step)
    if origin + length >= size:
        return start, size, -(-size // step) * step
    end = (origin + length) // step * step
    return start, end, end


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
        Gaussian smoothing before segmenting, >= 0: pixels, or a length on
        square pixels (within 1 %), converted with the image's spacing.
    min_size
        Segments smaller than this are merged into a neighbour, >= 0: pixels,
        or an area such as ``"50 um2"``, converted with the pixel area and
        rounded to the nearest whole pixel.
    halo
        Context on each side (default 16 pixels): pixels (one number, or one
        per axis) or a length, rounded to the nearest whole pixel per axis.

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
    sigma: Annotated[float | str, Physical("length", ge=0, per_axis=False)] = Field(
        default=0.8, description="smoothing: pixels or a length"
    )
    min_size: Annotated[float | str, Physical("size", ge=0, integer=True, per_axis=False)] = Field(
        default=20, description="smallest segment: pixels or an area"
    )

    def halo(self, ndim: int) -> tuple[int, ...]:
        if ndim != 2:
            raise InputValueError(
                f"{self.describe()} segments 2D images only; the image is {ndim}D: "
                "use slic for volumes"
            )
        return self.widths(ndim) or (16,) * ndim

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
            sigma=one(self, "sigma"),
            min_size=int(one(self, "min_size")),
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
