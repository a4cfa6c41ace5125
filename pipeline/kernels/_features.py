"""Multi-scale pixel features that leave the pixels without data out.

``skimage.feature.multiscale_basic_features`` smooths every band with a
Gaussian and takes Sobel edges and Hessian eigenvalues of the smoothed band;
a fill value (or a NaN) inside a Gaussian's footprint spreads into the
features of every pixel around it. Here, where a block has pixels without
data, each Gaussian is a normalised convolution::

    smoothed = G(x v) / G(v)      v = 1 where the pixel has data, else 0;
                                  x = 0 where v = 0

the mean of the pixels with data in the footprint, weighed by the Gaussian.
Edges and Hessian eigenvalues are then taken from ``smoothed`` exactly as
scikit-image takes them. A pixel whose footprint (``int(4 sigma + 0.5)``
pixels each way, a square) holds no pixel without data keeps ``G(x)``, which
``G(x v)`` equals there bit for bit, so the features of a pixel with no pixel
without data within the classifier's halo equal scikit-image's bit for bit.
A pixel without data farther than the footprint from any pixel with data is
smoothed to 0; it is never within the two-pixel reach of the derivatives of a
pixel with data once ``sigma >= 0.375`` (footprint >= 2 pixels).
"""

from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np
from scipy import ndimage
from skimage import feature, filters
from skimage.util import img_as_float32

TRUNCATE = 4.0  # scipy's gaussian_filter default, which scikit-image keeps


def with_data(block: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Pixels (spatial axes) of ``block`` (band axis first) in ``valid`` with no NaN band."""
    usable = np.ones(block.shape[1:], dtype=bool) if valid is None else np.array(valid, bool)
    if block.dtype.kind in "fc":
        usable &= ~np.isnan(block).any(axis=0)
    return usable


def masked_features(
    block: np.ndarray,
    valid: np.ndarray,
    sigmas: np.ndarray,
    *,
    intensity: bool,
    edges: bool,
    texture: bool,
) -> np.ndarray:
    """The features ``multiscale_basic_features(block, channel_axis=0)`` would give at
    ``sigmas``, with the pixels outside ``valid`` left out of every Gaussian.

    Parameters
    ----------
    block
        Bands first, then the spatial axes.
    valid
        Pixels with data, over the spatial axes.
    sigmas
        The Gaussians' scales, as ``multiscale_basic_features`` picks them.
    intensity, edges, texture
        Which features, as ``multiscale_basic_features``.

    Returns
    -------
    numpy.ndarray
        float32, spatial shape x features, in scikit-image's order (band,
        then scale, then intensity, edges, Hessian eigenvalues).

    Examples
    --------
    A step from 0 to 1 next to a fill of 9 (not valid): the fill leaves the
    smoothed intensity of the valid pixels untouched.

    >>> block = np.array([[[0.0, 0.0, 1.0, 1.0, 9.0, 9.0]]], dtype=np.float32)
    >>> valid = block[0] < 9
    >>> smoothed = masked_features(
    ...     block, valid, np.array([1.0]), intensity=True, edges=False, texture=False
    ... )[..., 0]
    >>> bool(np.all(smoothed[valid] <= 1)), bool(smoothed[0, 3] > smoothed[0, 2])
    (True, True)
    """
    weight = valid.astype(np.float32)
    # Chessboard distance to the nearest pixel without data: the Gaussian's
    # footprint of radius r holds one when it is <= r.
    reach = (
        np.full(valid.shape, np.iinfo(np.int32).max)
        if valid.all()
        else ndimage.distance_transform_cdt(valid, metric="chessboard")
    )
    weights = [filters.gaussian(weight, sigma=float(s), preserve_range=False) for s in sigmas]
    results: list[np.ndarray] = []
    for band in block:
        values = np.where(valid, np.ascontiguousarray(img_as_float32(band)), np.float32(0))
        for sigma, total in zip(sigmas, weights, strict=True):
            smoothed = filters.gaussian(values, sigma=float(sigma), preserve_range=False)
            mixed = (reach <= int(TRUNCATE * float(sigma) + 0.5)) & (total > 0)
            np.divide(smoothed, total, out=smoothed, where=mixed)
            if intensity:
                results.append(smoothed)
            if edges:
                results.append(filters.sobel(smoothed))
            if texture:
                results.extend(_hessian_eigenvalues(smoothed))
    return np.stack(results, axis=-1)


def _hessian_eigenvalues(smoothed: np.ndarray) -> list[np.ndarray]:
    """The Hessian's eigenvalues from ``np.gradient``, as scikit-image's texture features."""
    elements = [
        np.gradient(np.gradient(smoothed)[first], axis=second)
        for first, second in combinations_with_replacement(range(smoothed.ndim), 2)
    ]
    return list(feature.hessian_matrix_eigvals(elements))
