"""Watershed instances: a foreground mask split into touching objects, chunk by chunk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import sobel
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from ..errors import InputValueError
from ._base import Step, register
from ._units import Physical, Pixels, one, per_axis


@register
class Watershed(Step):
    """Split the mask into objects by a marker-controlled watershed.

    Markers are the peaks of the mask's distance transform: local maxima at
    least ``min_distance`` apart (``markers="distance"``, as
    ``skimage.feature.peak_local_max(..., exclude_border=False)``), or its
    ``h``-maxima (``markers="h_maxima"``); touching peaks form one marker.
    The flooded surface is the inverted distance transform
    (``surface="distance"``: round objects split at their necks) or the
    gradient magnitude of the image (``surface="gradient"``: objects split
    along edges; the image is the last one before the mask step, its bands
    averaged).

    Each chunk is segmented with ``halo`` pixels of context and the pieces are
    stitched by matching them in the halos. The result equals the whole-image
    watershed for every object that, with its markers, fits within the halo
    around the seams it crosses: make ``halo`` about the diameter of the
    largest object (the default is ``4 * min_distance``, at least 16).
    ``sampling`` gives the pixel spacing per axis for anisotropic volumes.

    Parameters
    ----------
    markers
        ``"distance"`` or ``"h_maxima"``.
    min_distance
        Least distance between distance peaks, >= 1: pixels, or a length such
        as ``"3 um"`` converted with the image's spacing and rounded to the
        nearest whole pixel. scikit-image takes one distance for every axis,
        so a length must come to the same pixels along each axis.
    h
        Height of the h-maxima, > 0, in pixels of distance (in ``sampling``'s
        units when it is given), or a length on square pixels (within 1 %),
        without ``sampling``.
    surface
        ``"distance"`` or ``"gradient"``.
    compactness
        Compactness of the watershed, >= 0.
    sampling
        Pixel spacing per spatial axis for the distance transform.
    halo
        Context on each side, >= 1: pixels (one number, or one per spatial
        axis) or a length, rounded to the nearest whole pixel per axis.
    """

    name = "watershed"
    output = "instances"
    accepts = ("mask",)
    uses_image = True

    markers: Literal["distance", "h_maxima"] = "distance"
    min_distance: Annotated[float | str, Physical("length", ge=1, integer=True, per_axis=False)] = (
        Field(default=5, description="between distance peaks: pixels or a length")
    )
    h: Annotated[float | str, Physical("length", gt=0, per_axis=False)] = Field(
        default=2.0, description="height of h-maxima: pixels of distance or a length"
    )
    surface: Literal["distance", "gradient"] = "distance"
    compactness: float = Field(default=0.0, ge=0)
    sampling: list[float] | None = Field(default=None, min_length=2, max_length=3)
    halo_px: Annotated[Pixels | None, Physical("length", ge=1, integer=True)] = Field(
        default=None, alias="halo", description="context: pixels, per axis, or a length"
    )

    @model_validator(mode="after")
    def _h_in_pixels_of_distance(self) -> Watershed:
        if isinstance(self.h, str) and self.sampling is not None:
            raise ValueError(
                f"h {self.h!r} is a length, but with sampling the distance is measured in "
                "sampling's units: give h as a number in those units"
            )
        return self

    def halo(self, ndim: int) -> tuple[int, ...]:
        if self.sampling is not None and len(self.sampling) != ndim:
            raise InputValueError(
                f"{self.describe()}: sampling gives {len(self.sampling)} spacings for a "
                f"{ndim}D image; give one per spatial axis"
            )
        if self.sampling is not None and min(self.sampling) <= 0:
            raise InputValueError(f"{self.describe()}: sampling must be positive")
        if self.halo_px is None:
            return (max(16, 4 * int(one(self, "min_distance"))),) * ndim
        return tuple(int(width) for width in per_axis(self, "halo_px", ndim))

    def apply(self, block: np.ndarray, state: Any, image: np.ndarray | None = None) -> np.ndarray:
        return watershed_instances(
            block,
            None if image is None else image.mean(axis=0),
            markers=self.markers,
            min_distance=int(one(self, "min_distance")),
            h=one(self, "h"),
            surface=self.surface,
            compactness=self.compactness,
            sampling=self.sampling,
        )


def watershed_instances(
    mask: np.ndarray,
    image: np.ndarray | None,
    *,
    markers: str,
    min_distance: int,
    h: float,
    surface: str,
    compactness: float,
    sampling: list[float] | None,
) -> np.ndarray:
    """The per-chunk watershed, the same on a chunk as on the whole image."""
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    distance = ndimage.distance_transform_edt(mask, sampling=sampling)
    if markers == "distance":
        peaks = np.zeros(mask.shape, dtype=bool)
        found = peak_local_max(
            distance, min_distance=min_distance, exclude_border=False, labels=mask.astype(np.int32)
        )
        peaks[tuple(found.T)] = True
    elif markers == "h_maxima":
        peaks = h_maxima(distance, h).astype(bool) & mask
    else:
        raise InputValueError(f"markers must be 'distance' or 'h_maxima'; got {markers!r}")
    seeds, _ = ndimage.label(peaks, structure=np.ones((3,) * mask.ndim))
    if surface == "distance":
        relief = -distance
    elif surface == "gradient":
        if image is None:
            raise InputValueError("surface='gradient' needs an image before the mask step")
        relief = sobel(image.astype(np.float64))
    else:
        raise InputValueError(f"surface must be 'distance' or 'gradient'; got {surface!r}")
    return watershed(relief, seeds, mask=mask, compactness=compactness).astype(np.int32)
