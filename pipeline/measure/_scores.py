"""Scores of a segmentation against a reference, computed chunk by chunk.

Both scores read each pair of chunks once and keep only small tables, so
label maps larger than memory can be scored:

- :func:`dice`: per chunk, the foreground pixel counts of each side and of
  both; summed.
- :func:`object_f1`: per chunk, the ``(label, reference label, pixels)``
  triples of the pixels where both have an object, and the pixels of each
  label; merged by label (within a batch of chunks on the workers, then on
  the client), so an object cut by chunk seams is measured whole. The IoU of
  every overlapping pair follows from the merged table, and the matching is
  made on the client over the pairs whose IoU is above the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from .._batches import reduce_blocks
from ..errors import InputValueError, UnsupportedInputError

__all__ = ["ObjectScores", "dice", "object_f1"]


@dataclass(frozen=True)
class ObjectScores:
    """How the objects of a label map match those of a reference.

    Attributes
    ----------
    precision
        ``matched / predicted``: the share of our objects that match one of the
        reference's.
    recall
        ``matched / reference``: the share of the reference's objects found.
    f1
        ``2 * matched / (predicted + reference)``, the harmonic mean of both.
    matched
        Pairs matched one to one (IoU above ``iou``).
    predicted, reference
        Objects in the label map and in the reference.
    iou
        The IoU a pair had to exceed.
    """

    precision: float
    recall: float
    f1: float
    matched: int
    predicted: int
    reference: int
    iou: float


def dice(mask: Any, reference: Any) -> float:
    """Dice coefficient of two masks: ``2 |A & B| / (|A| + |B|)``.

    Non-zero pixels are foreground (NaN is not), so a label map scores its
    objects together and ``ch2bet > 0`` needs no thresholding first. Two empty
    masks agree perfectly (1.0).

    Parameters
    ----------
    mask, reference
        numpy or dask arrays of the same shape (any dimension), boolean,
        integer or real. The reference is read in the mask's chunks.

    Returns
    -------
    float
        From 0 (no overlap) to 1 (the same foreground).

    Raises
    ------
    InputValueError
        The shapes differ, or the arrays are empty.
    UnsupportedInputError
        An array is not boolean, integer or real.

    Examples
    --------
    >>> import numpy as np
    >>> ours = np.array([[0, 1, 1], [0, 2, 2]])
    >>> truth = np.array([[0, 1, 1], [1, 1, 0]])
    >>> dice(ours, truth)
    0.75
    """
    ours, theirs = _pair(mask, reference, "mask", "biuf")
    totals = reduce_blocks(_foregrounds, [ours, theirs], _sum)
    size, size_reference, both = (int(t) for t in totals)
    if size + size_reference == 0:
        return 1.0
    return 2 * both / (size + size_reference)


def object_f1(labels: Any, reference: Any, iou: float = 0.5) -> ObjectScores:
    """Object-level precision, recall and F1 of a label map against reference objects.

    An object of ``labels`` and one of ``reference`` match when their IoU
    (pixels in both / pixels in either) is above ``iou``; each object matches
    at most one other, and the matching is a largest one-to-one matching
    (for ``iou >= 0.5`` every pair above the threshold is one to one anyway),
    as the usual instance-segmentation F1. An object is all the pixels of one
    non-zero id, wherever they are, so the ids need not be consecutive and an
    object cut by chunk seams counts once. A ratio with nothing to divide by
    (no objects on that side) is 0, except that two maps without objects
    agree perfectly (every score 1.0).

    Parameters
    ----------
    labels, reference
        numpy or dask arrays of integer object ids (0 is background), of the
        same shape (any dimension). The reference is read in ``labels``' chunks.
    iou
        A pair matches when its IoU is above this, from 0 (any overlap) up to,
        but not including, 1.

    Returns
    -------
    ObjectScores
        Precision, recall, F1, and the matched, predicted and reference counts.

    Raises
    ------
    InputValueError
        The shapes differ, the arrays are empty, or ``iou`` is outside [0, 1).
    UnsupportedInputError
        An array does not hold integer ids.

    Examples
    --------
    >>> import numpy as np
    >>> ours = np.array([[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 0], [3, 0, 0, 0]])
    >>> truth = np.array([[5, 5, 0, 0], [5, 5, 0, 7], [0, 0, 0, 0], [0, 0, 9, 9]])
    >>> scores = object_f1(ours, truth, iou=0.5)
    >>> scores.matched, scores.predicted, scores.reference
    (1, 3, 3)
    >>> round(scores.f1, 3)
    0.333
    >>> object_f1(ours, truth, iou=0.3).matched  # object 2 and 7 overlap with IoU 1/2
    2
    """
    if not 0 <= iou < 1:
        raise InputValueError(
            f"iou {iou!r} is outside [0, 1): a pair of objects matches when their IoU is "
            "above it; 0.5 is the usual choice"
        )
    ours, theirs = _pair(labels, reference, "labels", "biu")
    table = reduce_blocks(_overlaps, [ours, theirs], _merge_overlaps)
    pairs, overlap, ids, sizes, reference_ids, reference_sizes = table
    predicted, expected = len(ids), len(reference_ids)
    rows = np.searchsorted(ids, pairs[:, 0])
    columns = np.searchsorted(reference_ids, pairs[:, 1])
    union = sizes[rows] + reference_sizes[columns] - overlap
    above = overlap / np.maximum(union, 1) > iou
    candidates = csr_matrix(
        (np.ones(int(above.sum()), dtype=np.int8), (rows[above], columns[above])),
        shape=(predicted, expected),
    )
    matched = int((maximum_bipartite_matching(candidates, perm_type="column") >= 0).sum())
    empty = predicted == expected == 0
    return ObjectScores(
        precision=matched / predicted if predicted else float(empty),
        recall=matched / expected if expected else float(empty),
        f1=2 * matched / (predicted + expected) if not empty else 1.0,
        matched=matched,
        predicted=predicted,
        reference=expected,
        iou=float(iou),
    )


def _pair(first: Any, reference: Any, name: str, kinds: str) -> tuple[da.Array, da.Array]:
    """Both arrays as dask arrays in the same chunks, checked."""
    arrays = []
    for array, called in ((first, name), (reference, "reference")):
        if not isinstance(array, da.Array):
            array = np.asarray(array)
        if array.dtype.kind not in kinds:
            expected = (
                "a boolean, integer or real array"
                if "f" in kinds
                else "integer object ids (label a mask first, e.g. with pipeline.label)"
            )
            raise UnsupportedInputError(f"{called} holds {array.dtype} values; expected {expected}")
        arrays.append(array)
    ours, theirs = arrays
    if ours.shape != theirs.shape:
        raise InputValueError(
            f"{name} has shape {ours.shape} but reference has shape {theirs.shape}; score "
            "against a reference on the same pixel grid"
        )
    if 0 in ours.shape or ours.ndim == 0:
        raise InputValueError(f"{name} and reference are empty (shape {ours.shape})")
    if not isinstance(ours, da.Array):
        ours = da.from_array(ours, chunks=theirs.chunks if isinstance(theirs, da.Array) else "auto")
    theirs = da.asarray(theirs).rechunk(ours.chunks)
    return ours, theirs


def _foregrounds(mask: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Foreground pixels of the mask, of the reference, and of both, in one chunk."""
    ours = (mask != 0) & ~_nan(mask)
    theirs = (reference != 0) & ~_nan(reference)
    return np.array([ours.sum(), theirs.sum(), (ours & theirs).sum()], dtype=np.int64)


def _nan(block: np.ndarray) -> np.ndarray:
    return np.isnan(block) if block.dtype.kind == "f" else np.zeros(block.shape, dtype=bool)


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    total: np.ndarray = np.sum(parts, axis=0)
    return total


Table = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _overlaps(labels: np.ndarray, reference: np.ndarray) -> Table:
    """One chunk's overlap table and object sizes.

    ``(pairs, overlap, ids, sizes, reference_ids, reference_sizes)``: ``pairs``
    (n x 2, label then reference label) with the pixels they share, then the
    pixels of each label and of each reference label; ids sorted, int64.
    """
    ours = labels.ravel().astype(np.int64, copy=False)
    theirs = reference.ravel().astype(np.int64, copy=False)
    both = (ours != 0) & (theirs != 0)
    pairs, overlap = np.unique(
        np.stack([ours[both], theirs[both]], axis=1), axis=0, return_counts=True
    )
    ids, sizes = np.unique(ours[ours != 0], return_counts=True)
    reference_ids, reference_sizes = np.unique(theirs[theirs != 0], return_counts=True)
    return (
        pairs.reshape(-1, 2),
        overlap.astype(np.int64),
        ids,
        sizes.astype(np.int64),
        reference_ids,
        reference_sizes.astype(np.int64),
    )


def _merge_overlaps(parts: list[Table]) -> Table:
    """Several chunks' tables as one: the counts of the same pair or id summed."""
    pairs, overlap = _summed([p[0] for p in parts], [p[1] for p in parts])
    ids, sizes = _summed([p[2][:, None] for p in parts], [p[3] for p in parts])
    reference_ids, reference_sizes = _summed([p[4][:, None] for p in parts], [p[5] for p in parts])
    return pairs, overlap, ids[:, 0], sizes, reference_ids[:, 0], reference_sizes


def _summed(keys: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of the stacked ``keys`` and the sum of their ``counts``."""
    unique, where = np.unique(np.concatenate(keys), axis=0, return_inverse=True)
    totals = np.bincount(where.ravel(), weights=np.concatenate(counts), minlength=len(unique))
    return unique, totals.astype(np.int64)
