"""Per-object partial sums of one chunk, and their merge by label.

A chunk's :class:`Partials` hold, for every object present in it, what the
object's whole-image measurements can be assembled from: the pixel count,
the sum, minimum and maximum of each coordinate, and per band the mean,
M2 (sum of squared deviations from the mean), minimum and maximum (every
band's count is the pixel count: all pixels of an object are measured).
Merging is by label, so the size of a partial is bounded by the number of
objects, never by the number of pixels.

Means and M2 merge as in Chan, Golub & LeVeque's parallel algorithm: for
parts ``i`` of one object with ``n_i`` pixels, mean ``m_i`` and ``M2_i``,
``M2 = sum(M2_i) + sum(n_i * (m_i - m)**2)``; no sum of squares is ever
subtracted from another, so the variance stays accurate however many chunks
an object spans. Each mean is refined by one correction term (the
"corrected two-pass" step), so it does not drift with the summation order.

Everything here is plain numpy, vectorised over objects: one stable sort
by label per chunk (or per merge), then ``ufunc.reduceat`` over the runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Partials:
    """Per-object partial measurements, one row per label, sorted by label.

    Attributes
    ----------
    ids
        ``(k,)`` the labels (all > 0), ascending, in the label image's dtype.
    count
        ``(k,)`` int64 pixels per object.
    coord_sum, lo, hi
        ``(k, ndim)`` int64 sum, minimum and maximum (inclusive) of each
        pixel coordinate, in the whole image's pixel grid.
    mean, m2
        ``(k, bands)`` float64 mean intensity and sum of squared deviations
        from it, per band (``bands`` is 0 without an intensity image).
    vmin, vmax
        ``(k, bands)`` minimum and maximum intensity, in the image's dtype.
    """

    ids: np.ndarray
    count: np.ndarray
    coord_sum: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.size)


def chunk_partials(
    labels: np.ndarray,
    *bands: np.ndarray,
    where: tuple[int, ...],
    starts: tuple[np.ndarray, ...],
) -> Partials:
    """The :class:`Partials` of one chunk.

    Parameters
    ----------
    labels
        The chunk of the label image; values <= 0 are background.
    *bands
        The same chunk of each intensity band, shaped like ``labels``.
    where
        The chunk's place in the block grid.
    starts
        Per axis, the first pixel of every chunk along it: the chunk's offset
        in the whole image is read from these at ``where``.

    Examples
    --------
    >>> labels = np.array([[0, 2, 2], [5, 5, 2]])
    >>> found = chunk_partials(
    ...     labels, labels * 10, where=(0, 1), starts=(np.array([0]), np.array([0, 3]))
    ... )
    >>> found.ids, found.count, found.lo.tolist(), found.mean.ravel().tolist()
    (array([2, 5]), array([3, 2]), [[0, 4], [1, 3]], [20.0, 50.0])
    """
    offset = np.array([int(axis[i]) for axis, i in zip(starts, where, strict=True)], np.int64)

    flat = labels.reshape(-1)
    pixels = np.flatnonzero(flat > 0)
    order = np.argsort(flat[pixels], kind="stable")
    pixels = pixels[order]  # by label, and in C order within each label
    ids_all = flat[pixels]
    if ids_all.size == 0:
        return empty_partials(labels.ndim, len(bands), labels.dtype, _dtype(bands))
    first = np.flatnonzero(np.r_[True, ids_all[1:] != ids_all[:-1]])
    count = np.diff(np.r_[first, ids_all.size]).astype(np.int64)

    coords = np.stack(np.unravel_index(pixels, labels.shape), axis=1).astype(np.int64)
    coords += offset
    coord_sum = np.add.reduceat(coords, first, axis=0)
    lo = np.minimum.reduceat(coords, first, axis=0)
    hi = np.maximum.reduceat(coords, first, axis=0)

    if bands:  # (bands, pixels): each band's values contiguous
        values = np.stack([band.reshape(-1)[pixels] for band in bands])
        mean, m2 = _mean_m2(values.astype(np.float64), first, count)
        vmin = np.minimum.reduceat(values, first, axis=1).T
        vmax = np.maximum.reduceat(values, first, axis=1).T
    else:
        mean = m2 = np.zeros((first.size, 0))
        vmin = vmax = np.zeros((first.size, 0), _dtype(bands))
    return Partials(ids_all[first], count, coord_sum, lo, hi, mean, m2, vmin, vmax)


def merge_partials(parts: list[Partials]) -> Partials:
    """One :class:`Partials` from several (of chunks, or of merged groups of chunks).

    Examples
    --------
    >>> starts = (np.array([0]), np.array([0, 2]))  # two chunks side by side
    >>> labels, values = np.array([[1, 1, 1, 3]]), np.array([[1, 2, 6, 4]])
    >>> left = chunk_partials(labels[:, :2], values[:, :2], where=(0, 0), starts=starts)
    >>> right = chunk_partials(labels[:, 2:], values[:, 2:], where=(0, 1), starts=starts)
    >>> merged = merge_partials([left, right])
    >>> merged.ids, merged.count, merged.mean.ravel(), merged.m2.ravel()
    (array([1, 3]), array([3, 1]), array([3., 4.]), array([14.,  0.]))
    """
    if not parts:
        raise ValueError("merge_partials needs at least one Partials")
    present = [part for part in parts if len(part)]
    if len(present) <= 1:
        return present[0] if present else parts[0]
    ids_all = np.concatenate([part.ids for part in present])
    order = np.argsort(ids_all, kind="stable")
    ids_all = ids_all[order]
    first = np.flatnonzero(np.r_[True, ids_all[1:] != ids_all[:-1]])

    def gathered(name: str) -> np.ndarray:
        return np.concatenate([getattr(part, name) for part in present])[order]

    counts = gathered("count")
    count = np.add.reduceat(counts, first)
    mean, m2 = gathered("mean"), gathered("m2")
    if mean.shape[1]:
        n = counts[:, None].astype(np.float64)
        rough = np.add.reduceat(n * mean, first, axis=0) / count[:, None]
        deviation = mean - np.repeat(rough, np.diff(np.r_[first, counts.size]), axis=0)
        drift = np.add.reduceat(n * deviation, first, axis=0)
        total = np.add.reduceat(m2 + n * deviation**2, first, axis=0)
        mean = rough + drift / count[:, None]
        m2 = np.maximum(total - drift**2 / count[:, None], 0.0)
    else:
        mean = m2 = np.zeros((first.size, 0))
    return Partials(
        ids=ids_all[first],
        count=count,
        coord_sum=np.add.reduceat(gathered("coord_sum"), first, axis=0),
        lo=np.minimum.reduceat(gathered("lo"), first, axis=0),
        hi=np.maximum.reduceat(gathered("hi"), first, axis=0),
        mean=mean,
        m2=m2,
        vmin=np.minimum.reduceat(gathered("vmin"), first, axis=0),
        vmax=np.maximum.reduceat(gathered("vmax"), first, axis=0),
    )


def empty_partials(ndim: int, bands: int, id_dtype: np.dtype, value_dtype: np.dtype) -> Partials:
    """The :class:`Partials` of a chunk without objects."""
    geometry = np.zeros((0, ndim), np.int64)
    return Partials(
        ids=np.zeros(0, id_dtype),
        count=np.zeros(0, np.int64),
        coord_sum=geometry,
        lo=geometry,
        hi=geometry,
        mean=np.zeros((0, bands)),
        m2=np.zeros((0, bands)),
        vmin=np.zeros((0, bands), value_dtype),
        vmax=np.zeros((0, bands), value_dtype),
    )


def _mean_m2(
    values: np.ndarray, first: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(runs, bands)`` mean and M2 of each run of columns of ``values`` (``(bands,
    pixels)``) starting at ``first``, by the corrected two-pass algorithm (sums of
    integer data below 2**53 are exact)."""
    run = np.repeat(np.arange(first.size), count)
    rough = np.add.reduceat(values, first, axis=1) / count
    deviation = values - rough[:, run]
    drift = np.add.reduceat(deviation, first, axis=1)
    mean = rough + drift / count
    np.square(deviation, out=deviation)
    m2 = np.add.reduceat(deviation, first, axis=1) - drift**2 / count
    return mean.T, np.maximum(m2, 0.0).T


def _dtype(bands: tuple[np.ndarray, ...]) -> np.dtype:
    return np.result_type(*bands) if bands else np.dtype(np.float64)
