"""Edge steps: gradient magnitude, Canny edges, and the inverse of a mask.

``edges`` is local (a 3-pixel stencil), so chunked results equal whole-image
results exactly. ``canny`` is local up to its hysteresis, which follows
connected edge pixels as far as they go; in chunks it follows them as far as
the halo reaches::

    |<------ halo ------>|<-------- chunk -------->|<------ halo ------>|
    |<- local ->|        |                         |        |<- local ->|
                 \\______ an edge traced from the chunk is seen only
                          this far; a strong pixel farther out is missed

``local`` (smoothing, gradient, thinning) is ``int(4 * sigma + 0.5) + 2``; the
rest of the halo is for hysteresis. ``invert`` turns a mask around, e.g. edges
into the regions they enclose.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import dask.array as da
import numpy as np
from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from scipy import ndimage
from skimage import filters
from skimage.feature import canny

from ..errors import InputValueError, UnsupportedInputError
from ._base import Step, register
from ._smooth import TRUNCATE  # skimage's gaussian uses scipy's default too
from ._units import Physical, Pixels, one, per_axis

HYSTERESIS_HALO = 32  # the default halo's share for hysteresis, beyond the local reach

EDGE_FILTERS: dict[str, Callable[..., np.ndarray]] = {
    "sobel": filters.sobel,
    "scharr": filters.scharr,
    "prewitt": filters.prewitt,
}


@register
class Edges(Step):
    """Gradient magnitude of each band: ``skimage.filters.sobel``, ``scharr`` or ``prewitt``.

    Each band is filtered on its own over the spatial axes with
    ``mode="reflect"``, as the scikit-image function does on the whole image:
    integer images are first scaled to [0, 1] (``img_as_float``: uint8 by
    1/255), floats are kept as they are, and in nD the magnitude is
    ``sqrt(sum of squared axis gradients / ndim)``. Returns float32. The halo
    is 1 (the stencil is 3 pixels wide), so chunked results equal
    whole-image results.

    Parameters
    ----------
    method
        ``"sobel"``, ``"scharr"`` or ``"prewitt"``.

    Examples
    --------
    >>> import numpy as np
    >>> Edges(method="prewitt").apply(np.array([[[0.0, 0.0, 3.0, 3.0]] * 3]), None)
    array([[[0.       , 2.1213202, 2.1213202, 0.       ],
            [0.       , 2.1213202, 2.1213202, 0.       ],
            [0.       , 2.1213202, 2.1213202, 0.       ]]], dtype=float32)
    """

    name = "edges"
    output = "image"

    method: Literal["sobel", "scharr", "prewitt"] = "sobel"

    def halo(self, ndim: int) -> tuple[int, ...]:
        return (1,) * ndim

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        edge = EDGE_FILTERS[self.method]
        out = np.empty(block.shape, dtype=np.float32)
        for band, values in enumerate(block):
            out[band] = edge(values, mode="reflect")
        return out


@register
class Canny(Step):
    """Canny edges of a single-band 2D image, as ``skimage.feature.canny(image, sigma,
    low, high, mode="reflect")`` on the whole image.

    Gaussian smoothing (``sigma``), Sobel gradient, thinning to one-pixel
    lines (non-maximum suppression), then hysteresis: a thinned pixel with a
    gradient magnitude of at least ``low`` is an edge when its 8-connected
    line of such pixels holds one of at least ``high``. The image's outermost
    rows and columns are never edges, as in scikit-image. Past the image
    border (in the halo, for the steps after this one) the edges are the
    mirror of those inside, as the map's reflection makes them for an image.

    Everything but the hysteresis is local, and exact in chunks. Hysteresis
    follows a line as far as it goes, but a chunk sees only its halo: a weak
    stretch whose nearest strong pixel lies beyond the halo is dropped, and
    one that reaches a strong pixel only through a detour outside the chunk
    and its halo too. The larger the halo, the rarer that is; the tests
    measure the pixels that differ from the whole-image result on real images.

    Parameters
    ----------
    sigma
        Standard deviation of the Gaussian smoothing, > 0: pixels or a length
        such as ``"0.5 mm"``, converted with the image's spacing. skimage takes
        one sigma for both axes, so the pixels must be square (their sizes
        within 1 %).
    low, high
        Hysteresis thresholds on the gradient magnitude, ``0 <= low <= high``,
        in the image's own units (skimage scales integer images to [0, 1] and
        divides the thresholds by the dtype's maximum, which cancels out).
    halo
        Context around each chunk, at least ``int(4 * sigma + 0.5) + 2`` pixels
        along each axis: pixels (one number, or one per axis) or a length,
        converted per axis and rounded to the nearest whole pixel; default
        ``ceil(4 * sigma) + 32``.

    Raises
    ------
    InputValueError
        From ``halo`` for a 3D image, from ``fit`` for an image of several bands.
    UnsupportedInputError
        From ``fit`` for 64-bit integer images (skimage refuses them).

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> image = np.zeros((1, 14, 14)); image[0, :, 7:] = 10.0  # a step between columns 6 and 7
    >>> step = Canny(sigma=1, low=1, high=2)
    >>> step.describe()
    'canny(sigma=1.0, low=1.0, high=2.0, halo=36)'
    >>> edges = step.apply(image, step.fit(da.from_array(image), None))
    >>> np.flatnonzero(edges.any(axis=0)), int(edges.sum())  # column 6, not the border rows
    (array([6]), 12)
    """

    model_config = ConfigDict(serialize_by_alias=True)

    name = "canny"
    output = "mask"
    uses_origin = True

    sigma: Annotated[float | str, Physical("length", gt=0, per_axis=False)] = Field(
        default=1.0, description="smoothing: pixels or a length"
    )
    low: float = Field(ge=0, allow_inf_nan=False, description="weak edge threshold")
    high: float = Field(ge=0, allow_inf_nan=False, description="strong edge threshold")
    reach: Annotated[Pixels | None, Physical("length", ge=0, integer=True)] = Field(
        default=None, alias="halo", validate_default=True, description="context: pixels, a length"
    )

    @field_validator("high")
    @classmethod
    def _high_not_below_low(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("low")
        if low is not None and high < low:
            raise ValueError(
                f"high ({high}) is below low ({low}); give low <= high, e.g. {{low: 10, high: 30}}"
            )
        return high

    @field_validator("reach")
    @classmethod
    def _enough_halo(cls, reach: Pixels | None, info: ValidationInfo) -> Pixels | None:
        sigma = info.data.get("sigma")
        if sigma is None or isinstance(sigma, str) or isinstance(reach, str):
            return reach  # sigma is invalid (and reported), or a size checked once in pixels
        if reach is None:
            return _default_halo(sigma)
        least = _local_reach(sigma)
        if min(reach if isinstance(reach, tuple) else (reach,)) < least:
            raise ValueError(
                f"halo {reach} is less than the {least} pixels canny(sigma={sigma}) needs "
                f"before hysteresis; use halo >= {least} (default {_default_halo(sigma)})"
            )
        return reach

    def halo(self, ndim: int) -> tuple[int, ...]:
        if ndim != 2:
            raise InputValueError(
                f"{self.describe()}: canny works on 2D images only; this image has {ndim} "
                "spatial axes (use edges, which works in 3D, or one 2D plane)"
            )
        if self.reach is None:  # only when made with model_construct
            return (_default_halo(one(self, "sigma")),) * ndim
        return tuple(int(reach) for reach in per_axis(self, "reach", ndim))

    def fit(self, data: da.Array, valid: da.Array | None) -> tuple[int, ...]:
        """Check the image, and return its spatial shape (where its border lies)."""
        if data.shape[0] != 1:
            raise InputValueError(
                f"canny needs a single band; the image has {data.shape[0]}: select one with "
                "source: {path: ..., bands: [n]} or combine them with a grayscale step"
            )
        if data.dtype.kind in "iu" and data.dtype.itemsize == 8:
            raise UnsupportedInputError(
                f"canny: {data.dtype} images are not supported (nor by skimage.feature.canny); "
                "convert first, e.g. with - expression: {expression: b1} (float32)"
            )
        return tuple(int(size) for size in data.shape[1:])

    def apply(
        self, block: np.ndarray, state: tuple[int, ...], origin: tuple[int, ...] = (0, 0)
    ) -> np.ndarray:
        image, sigma = block[0], one(self, "sigma")
        weak = canny(image, sigma, self.low, self.low, mode="reflect")
        strong = canny(image, sigma, self.high, self.high, mode="reflect")
        # Where the image border crosses the block: (axis, line, at_end), with line the
        # image's first row, or the first row past its last one.
        borders = [
            (axis, line, at_end)
            for axis, (start, size, length) in enumerate(
                zip(origin, state, image.shape, strict=True)
            )
            for line, at_end in ((-start, False), (size - start, True))
            if 0 < line < length
        ]
        for axis, line, at_end in borders:  # the outermost row is never an edge
            weak[(slice(None),) * axis + (line - 1 if at_end else line,)] = False
        lines, count = ndimage.label(weak, structure=np.ones((3, 3), dtype=bool))
        keep = np.zeros(count + 1, dtype=bool)
        keep[lines[strong & weak]] = True
        keep[0] = False
        edges: np.ndarray = keep[lines]
        for axis, line, at_end in borders:  # beyond the border: the mirror, as for an image
            rows = np.moveaxis(edges, axis, 0)
            if at_end:
                rows[line:] = rows[2 * line - len(rows) : line][::-1]
            else:
                rows[:line] = rows[line : 2 * line][::-1]
        return edges


@register
class Invert(Step):
    """The logical not of a mask: ``~mask``.

    After ``canny`` it gives the regions the edges enclose (with a ``label``
    step, and a post-processing step that drops what touches the border).

    Examples
    --------
    >>> import numpy as np
    >>> Invert().apply(np.array([[True, False]]), None)
    array([[False,  True]])
    """

    name = "invert"
    pointwise = True
    output = "mask"
    accepts = ("mask",)

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        return np.logical_not(block)


def _default_halo(sigma: float) -> int:
    """The default halo of canny(sigma): the Gaussian's reach and room for hysteresis."""
    return math.ceil(TRUNCATE * sigma) + HYSTERESIS_HALO


def _local_reach(sigma: float) -> int:
    """Pixels canny needs before hysteresis: the Gaussian's reach, the gradient's, the
    thinning's."""
    return int(TRUNCATE * float(sigma) + 0.5) + 2
