"""k-means classes: centroids fitted once on a sample of the whole image, nearest per chunk.

The fit draws a sample spread uniformly over the whole image, chunk by chunk,
gathers it (about ``sample`` x bands float64 values) and fits scikit-learn's
``MiniBatchKMeans`` on it; the per-chunk map only assigns every pixel to its
nearest centroid in numpy, so workers never import scikit-learn.

Which pixels are drawn depends on the pixels' places in the image, never on
the chunks: a pixel is drawn when a hash of ``(seed, its index in the whole
image)`` falls below ``sample / pixels`` of the hash range. Each chunk draws its
own pixels that way, and the drawn values are put in image order, so the
sample, and with it the centroids and the class map, are the same for any
chunking and any scheduler.
"""

from __future__ import annotations

import math
from typing import Any

import dask
import dask.array as da
import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator

from .._batches import compute_batched
from .._hash import splitmix64
from ..errors import InputValueError
from ._base import Step, register

N_INIT = 3  # scikit-learn's n_init="auto" for k-means++: the best of 3 initialisations


@register
class KMeans(Step):
    """Classes 1..k: each pixel's nearest of k centroids fitted on the whole image.

    ``fit`` draws about ``sample`` pixels spread uniformly over the whole image,
    each pixel with probability ``sample / pixels`` decided by a hash of
    ``seed`` and its index in the image (every pixel when ``sample`` is at
    least the image's pixel count); drawn pixels outside ``valid`` or with a
    NaN band are dropped, so the sample is uniform over the pixels with data
    (and smaller by the nodata fraction). The drawn values (pixels x bands
    float64), in image order, are gathered and
    ``sklearn.cluster.MiniBatchKMeans(n_clusters=k, random_state=seed,
    n_init=3)`` is fitted on them. The fit depends only on the image and
    ``seed``: not on the chunks, the scheduler or the order chunks finish in.

    The centroids are then sorted by the sum of their bands (ties by band 1,
    then band 2, ...), so class 1 is the darkest and class numbers do not
    depend on the clustering's internal order. The state is that k x bands
    float64 array.

    ``apply`` gives each pixel the class of its nearest centroid (squared
    Euclidean distance over the bands, a tie to the lower class) as uint8,
    and 0 to a pixel with a NaN band. It needs no halo.

    Parameters
    ----------
    k
        Number of classes, 2 to 255.
    sample
        Pixels drawn for the fit (default 100 000), at least ``k``; a sample
        larger than the image takes every pixel.
    seed
        Seed of the sample draw and of the clustering.
    bands
        Band numbers (from 1) to cluster on; default all.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> image = np.array([[[0, 1, 9, 10], [1, 0, 10, 9]]], dtype=np.uint8)
    >>> step = KMeans(k=2)
    >>> centroids = step.fit(da.from_array(image, chunks=(1, 1, 2)), None)
    >>> centroids.round(1)  # MiniBatchKMeans: near the class means 0.5 and 9.5
    array([[0.5],
           [9.5]])
    >>> step.apply(image, centroids)
    array([[1, 1, 2, 2],
           [1, 1, 2, 2]], dtype=uint8)
    """

    # ``bands`` in workflows; the attribute has another name, as Step.bands is a method.
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    name = "kmeans"
    output = "classes"

    k: int = Field(ge=2, le=255, description="number of classes")
    sample: int = Field(
        default=100_000, ge=1, description="about this many pixels drawn for the fit"
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="seed of the draw and the fit")
    band_numbers: list[int] | None = Field(
        default=None, alias="bands", min_length=1, description="band numbers (from 1) to cluster on"
    )

    @field_validator("band_numbers")
    @classmethod
    def _bands_count_from_one(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(band < 1 for band in value):
            raise ValueError(f"band numbers count from 1; got {value}")
        return value

    @model_validator(mode="after")
    def _sample_holds_k(self) -> KMeans:
        if self.sample < self.k:
            raise ValueError(f"sample {self.sample} is smaller than k={self.k}; draw at least k")
        return self

    def fit(self, data: da.Array, valid: da.Array | None) -> np.ndarray:
        values = self._select(data)
        values = values.rechunk({0: -1})  # every band of a pixel in one block
        spatial = values.chunks[1:]
        shape = values.shape[1:]
        # A pixel is drawn when its hash is below this: sample / pixels of the hash range.
        pixels = math.prod(shape)
        below = None if self.sample >= pixels else min(self.sample * 2**64 // pixels, 2**64 - 1)
        blocks = values.to_delayed().reshape([len(sizes) for sizes in spatial])
        masks = None if valid is None else valid.rechunk(spatial).to_delayed()
        starts = [np.cumsum((0, *sizes[:-1])) for sizes in spatial]
        draw = dask.delayed(_draw, pure=True)
        parts = [
            draw(
                block,
                None if masks is None else masks[index],
                tuple(int(s[i]) for s, i in zip(starts, index, strict=True)),
                shape,
                below,
                self.seed,
            )
            for index, block in np.ndenumerate(blocks)
        ]
        found = compute_batched(parts)
        order = np.argsort(np.concatenate([np.zeros(0, np.int64), *(p[0] for p in found)]))
        drawn = np.concatenate([p[1] for p in found], axis=0)[order]
        distinct = len(np.unique(drawn, axis=0))
        if distinct < self.k:
            where = "no" if distinct == 0 else f"{distinct} distinct"
            raise InputValueError(
                f"kmeans: the sample holds {where} pixel values with data, too few for "
                f"k={self.k}; ask for at most {distinct} classes or draw a larger sample"
            )
        return fit_centroids(drawn, self.k, self.seed)

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        return nearest_centroid(self._select(block), state)

    def _select(self, values: Any) -> Any:
        """The bands clustered on, band axis first (all of them by default)."""
        if self.band_numbers is None:
            return values
        count = values.shape[0]
        if max(self.band_numbers) > count:
            raise InputValueError(
                f"kmeans: band {max(self.band_numbers)} is out of range; "
                f"the image has bands 1 to {count}"
            )
        return values[[band - 1 for band in self.band_numbers]]


def fit_centroids(values: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k centroids of ``values`` (pixels x bands), sorted darkest first (float64, k x bands)."""
    from sklearn.cluster import MiniBatchKMeans  # type: ignore[import-untyped]
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=N_INIT)
    # Mini-batches of 1024 pixels are too small to share out: one thread is
    # 20x faster than OpenMP's on 2 busy cores, and independent of the core count.
    with threadpool_limits(limits=1):
        model.fit(values)
    return sort_centroids(np.asarray(model.cluster_centers_, dtype=np.float64))


def sort_centroids(centroids: np.ndarray) -> np.ndarray:
    """Centroids by increasing sum over bands, ties by band 1, then band 2, ...

    >>> sort_centroids(np.array([[5.0, 1.0], [0.0, 2.0], [1.0, 5.0]]))
    array([[0., 2.],
           [1., 5.],
           [5., 1.]])
    """
    bands = centroids.shape[1]
    keys = (*(centroids[:, b] for b in reversed(range(bands))), centroids.sum(axis=1))
    return centroids[np.lexsort(keys)]


def nearest_centroid(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Class (1-based) of the nearest centroid per pixel, 0 where a band is NaN.

    ``values`` has the band axis first; the distance is the squared Euclidean
    one, summed band by band in float64; a tie goes to the lower class.
    """
    pixels = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)
    best = np.full(pixels.shape[1], np.inf)
    classes = np.zeros(pixels.shape[1], dtype=np.uint8)
    for number, centroid in enumerate(centroids, start=1):
        distance = np.zeros(pixels.shape[1])
        for band, centre in zip(pixels, centroid, strict=True):
            distance += (band - centre) ** 2
        closer = distance < best  # strict: a tie keeps the lower class; NaN is never closer
        best[closer] = distance[closer]
        classes[closer] = number
    return classes.reshape(values.shape[1:])


def _draw(
    block: np.ndarray,
    valid: np.ndarray | None,
    start: tuple[int, ...],
    shape: tuple[int, ...],
    below: int | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of ``block`` (bands first; its first pixel at ``start`` of an
    image of ``shape``) whose hash of ``(seed, index in the image)`` is below
    ``below`` (every pixel for ``None``), those without data dropped: their
    indices in the image (int64) and their values (pixels x bands, float64)."""
    index = np.zeros(block.shape[1:], dtype=np.int64)
    stride = 1
    for axis in reversed(range(len(shape))):
        place = [1] * len(shape)
        place[axis] = block.shape[1 + axis]
        positions = np.arange(start[axis], start[axis] + place[axis], dtype=np.int64)
        index = index + (positions * stride).reshape(place)
        stride *= shape[axis]
    flat = index.reshape(-1)
    if below is None:
        picked = np.ones(flat.size, dtype=bool)
    else:
        salt = np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
        picked = splitmix64(flat.astype(np.uint64) ^ salt) < np.uint64(below)
    values = block.reshape(block.shape[0], -1)[:, picked].T.astype(np.float64)
    keep = ~np.isnan(values).any(axis=1)
    if valid is not None:
        keep &= valid.reshape(-1)[picked].astype(bool)
    return flat[picked][keep], values[keep]
