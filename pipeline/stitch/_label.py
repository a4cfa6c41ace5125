"""``label``: connected components of a chunked mask, exactly as on the whole array."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import psutil

from .._arrays import as_dask_array
from ..errors import InputValueError, UnsupportedInputError
from ..io._chunks import Written
from ..measure._sizes import ChunkSizes, SizeCounts, combine_sizes
from ._grid import persist_blocks, seam_results, step
from ._local import final_ids, relabel_chunk, summarise_chunk
from ._merge import RemapPlan, plan_remap
from ._neighbourhood import Neighbourhood, resolve_neighbourhood
from ._recorded import (
    Recording,
    plan_of,
    record_first_pass,
    recorded_labels,
    recorded_seam_results,
    save_plan,
    save_summary,
)
from ._seams import Direction, chunk_equivalences, seam_directions

Index = tuple[int, ...]


def label(
    mask: Any,
    structure: Any = None,
    *,
    connectivity: int | None = None,
    by_value: bool = False,
    keep_labels: bool | None = None,
) -> tuple[da.Array, int]:
    """Label the connected components of a 2D or 3D mask, chunk by chunk.

    The result is the same partition as ``scipy.ndimage.label`` on the whole
    array, for any chunking. It is a drop-in replacement for
    ``dask_image.ndmeasure.label``.

    Parameters
    ----------
    mask
        A dask or numpy array, 2D or 3D, of bools, integers or finite floats;
        non-zero is foreground.
    structure
        A centrosymmetric array of shape ``(3,) * mask.ndim``: which neighbours
        connect, as in ``scipy.ndimage.label``. Give this or ``connectivity``.
    connectivity
        ``1..mask.ndim``, as in ``skimage.measure.label``: 1 joins faces only
        (the default), ``mask.ndim`` also edges and corners.
    by_value
        Join neighbours only when they hold the same value (class maps).
    keep_labels
        Keep every chunk's first-pass labels in memory (on the workers, on a
        cluster) for the second pass, so each chunk is labelled once. ``False``
        recomputes the mask and labels each chunk again in the second pass, so
        memory stays bounded by a few chunks per worker whatever the image
        size. ``None`` (the default) keeps them when they take at most a
        quarter of the memory available to the workers.

    Returns
    -------
    labels
        A lazy dask array chunked like ``mask``: 0 is background and objects
        are numbered ``1..num``; uint32 when ``num`` fits, else uint64.
    num
        The number of objects.

    Raises
    ------
    UnsupportedInputError
        ``mask`` is not an array, or its dtype is not bool, integer or float.
    InputValueError
        ``mask`` is empty, not 2D or 3D, holds NaN, or ``structure`` /
        ``connectivity`` are not valid for it.

    Notes
    -----
    Two passes, each one task per chunk. The first labels every chunk with
    cc3d and collects its object count and faces; equivalences are found
    where chunks touch (faces, and edges and corners when the connectivity
    allows it) and merged on the client by union-find over that small seam
    graph. This pass runs when ``label`` is called, on the current dask
    scheduler. The returned array is the second pass: each chunk's local ids
    are mapped to the final ones through a small lookup table. When the
    first-pass labels are not kept, the mask is computed and labelled again,
    so it must compute to the same values each time (persist an expensive or
    random mask first; a mask that changed is detected and refused).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> mask = da.from_array(np.array([[1, 0, 1], [1, 0, 1], [1, 1, 1]]), chunks=2)
    >>> labels, num = label(mask)
    >>> num
    1
    >>> labels.compute()
    array([[1, 0, 1],
           [1, 0, 1],
           [1, 1, 1]], dtype=uint32)
    """
    array = _as_mask(mask)
    nbh = resolve_neighbourhood(array.ndim, structure, connectivity)
    for name, flag in (("by_value", by_value), ("keep_labels", keep_labels)):
        if not (isinstance(flag, bool) or (name == "keep_labels" and flag is None)):
            raise InputValueError(f"{name} must be True or False; got {flag!r}")
    if keep_labels is None:
        keep_labels = 4 * array.size <= _available_memory() // 4

    first = da.map_blocks(
        _first_block,
        array,
        nbh,
        by_value,
        keep_labels,
        block_id=True,
        chunks=(1,) * array.ndim,
        dtype=object,
        meta=np.empty((0,) * array.ndim, dtype=object),
        token="segpipe-first-pass",
    )
    if keep_labels:
        first = persist_blocks(first)
    plan, _ = _merged(seam_results(first, _equivalences_task, *_crossings(nbh)), first.numblocks)
    if not keep_labels:
        return _relabelled(array, plan, nbh, by_value), plan.num
    labels = da.map_blocks(
        _map_kept,
        first,
        dask.delayed(plan, pure=True),
        block_id=True,
        chunks=array.chunks,
        dtype=plan.dtype,
        meta=np.empty((0,) * array.ndim, dtype=plan.dtype),
        token="segpipe-label",
    )
    return labels, plan.num


@dataclass(frozen=True)
class RecordedLabels:
    """What :func:`label_recorded` made.

    Attributes
    ----------
    labels
        The lazy final labels, read from the recorded first pass.
    num
        The number of objects.
    first
        What the first pass wrote and found recorded already.
    sizes
        The objects' sizes, counted in the first pass (``None`` when a chunk was
        recorded without them by an earlier version).
    """

    labels: da.Array
    num: int
    first: Written
    sizes: SizeCounts | None


def label_recorded(
    mask: da.Array,
    recording: Recording,
    *,
    connectivity: int = 1,
    by_value: bool = False,
) -> RecordedLabels:
    """:func:`label` with its first pass recorded on disk (see :mod:`._recorded`).

    Each chunk's object sizes are counted on its local labels in the first
    pass (a count over ``0..n``, whatever the final ids) and come back with its
    seams, so the sizes of the objects are known before the second pass. The
    second pass reads the recorded labels, or, when ``recording.keep_labels``
    is off, computes each chunk of ``mask`` and labels it again.

    Raises
    ------
    ChunkError
        Computing the mask failed on some chunks; every other chunk's first
        pass is recorded, so a run with ``resume`` redoes only those.
    NondeterministicInputError
        (When computing), without ``keep_labels``: a chunk of the mask held
        another number of objects in the second pass than in the first.
    """
    array = _as_mask(mask)
    nbh = resolve_neighbourhood(array.ndim, None, connectivity)
    dtype = np.uint32 if recording.keep_labels else np.uint8
    local = da.map_blocks(
        _record_block,
        array,
        nbh,
        by_value,
        str(recording.summaries),
        recording.keep_labels,
        block_id=True,
        dtype=dtype,
        meta=np.empty((0,) * array.ndim, dtype=dtype),
        token="segpipe-first-pass-recorded",
    )
    written = record_first_pass(local, recording)
    found = recorded_seam_results(recording, array.numblocks, _equivalences_task, *_crossings(nbh))
    plan, parts = _merged(found, array.numblocks)
    if recording.keep_labels:
        labels = recorded_labels(recording, plan)
    else:
        labels = _relabelled(array, plan, nbh, by_value, saved=save_plan(recording, plan))
    return RecordedLabels(labels, plan.num, written, _final_sizes(plan, parts))


def _available_memory() -> int:
    """Memory of the workers that will run the graph: the cluster's, or this machine's."""
    scheduler = dask.base.get_scheduler()
    client = getattr(scheduler, "__self__", None)
    if client is not None and hasattr(client, "scheduler_info"):
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        limits = [w.get("memory_limit") or 0 for w in workers]
        if limits and all(limits):
            return int(sum(limits))
    return int(psutil.virtual_memory().available)


def _as_mask(mask: Any) -> da.Array:
    array = as_dask_array(mask, "mask")
    if array.dtype.kind not in "biuf":
        raise UnsupportedInputError(
            f"mask has dtype {array.dtype}; expected bool, an integer type or a float type"
        )
    if array.ndim not in (2, 3):
        raise InputValueError(
            f"mask must be 2D or 3D; got a {array.ndim}D array of shape {array.shape}"
        )
    if array.size == 0:
        raise InputValueError(
            f"mask has shape {array.shape}: it holds no pixels; pass a non-empty 2D or 3D array"
        )
    if isinstance(mask, np.ndarray) and mask.dtype.kind == "f" and np.isnan(mask).any():
        raise InputValueError(
            "mask contains NaN; a mask must be finite: replace NaN first, "
            "e.g. np.nan_to_num(mask) or mask > threshold"
        )
    if any(math.isnan(size) for sizes in array.chunks for size in sizes):
        raise InputValueError(
            f"mask has unknown chunk sizes {array.chunks}; "
            "call mask.compute_chunk_sizes() before labelling"
        )
    if any(0 in sizes for sizes in array.chunks):
        array = array.rechunk(tuple(tuple(s for s in sizes if s) for sizes in array.chunks))
    largest = int(np.prod([max(sizes) for sizes in array.chunks]))
    if largest >= 2**32:
        raise InputValueError(
            f"mask chunks of up to {largest} pixels are too large to label; "
            "use chunks of fewer than 2**32 pixels, e.g. mask.rechunk(2048)"
        )
    return array


def _crossings(
    nbh: Neighbourhood,
) -> tuple[list[Direction], dict[Direction, tuple[Direction, ...]]]:
    """The forward directions a seam task looks in, and the crossings of each."""
    crossings = dict(seam_directions(nbh))
    return list(crossings), crossings


def _merged(
    results: list[Any], grid: tuple[int, ...]
) -> tuple[RemapPlan, list[tuple[Index, ChunkSizes | None]]]:
    """Merge the seam tasks' results (one per chunk, in C order) on the client.

    Only the counts, the seam pairs and the sizes the summaries hold come back
    to the client; the faces stay on the workers.
    """
    counts = np.zeros(grid, dtype=np.int64)
    pairs: list[tuple[Index, Index, np.ndarray]] = []
    sizes: list[tuple[Index, ChunkSizes | None]] = []
    for index, (count, found, own) in zip(np.ndindex(*grid), results, strict=True):
        counts[index] = count
        pairs.extend((index, step(index, d), touching) for d, touching in found)
        sizes.append((index, own))
    return plan_remap(counts, pairs), sizes


def _final_sizes(
    plan: RemapPlan, parts: list[tuple[Index, ChunkSizes | None]]
) -> SizeCounts | None:
    """The objects' sizes from every chunk's local ones: pieces take their final ids."""
    if any(own is None for _, own in parts):
        return None
    final = [
        ChunkSizes(
            own.whole,
            final_ids(own.ids, plan.chunk(index), in_place=False).astype(np.int64),
            own.pixels,
        )
        for index, own in parts
        if own is not None
    ]
    return combine_sizes(final)


def _first_block(
    block: np.ndarray,
    nbh: Neighbourhood,
    by_value: bool,
    keep: bool,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """A chunk's first pass as a one-element object array: (labels or None, summary)."""
    labels, summary = summarise_chunk(block, nbh, by_value, tuple(block_id or ()))
    out = np.empty((1,) * block.ndim, dtype=object)
    out.flat[0] = (labels if keep else None, summary)
    return out


def _record_block(
    block: np.ndarray,
    nbh: Neighbourhood,
    by_value: bool,
    summaries: str,
    keep: bool,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Save a chunk's summary; return its labels, or with ``keep`` off a stand-in of
    the chunk's shape that holds one byte."""
    index = tuple(block_id or ())
    labels, summary = summarise_chunk(block, nbh, by_value, index, sizes=True)
    save_summary(summaries, index, summary)
    return labels if keep else np.broadcast_to(np.uint8(1), block.shape)


def _equivalences_task(
    summary: np.ndarray,
    neighbours: list[np.ndarray],
    steps: list[tuple[int, ...]],
    crossings: dict[tuple[int, ...], tuple[tuple[int, ...], ...]],
) -> tuple[int, list[tuple[tuple[int, ...], np.ndarray]], ChunkSizes | None]:
    own = summary.flat[0]
    count, pairs = chunk_equivalences(
        own, [other.flat[0] for other in neighbours], steps, crossings
    )
    return count, pairs, own.sizes


def _relabelled(
    array: da.Array,
    plan: RemapPlan,
    nbh: Neighbourhood,
    by_value: bool,
    saved: str | None = None,
) -> da.Array:
    """The second pass that labels each chunk of the mask again and maps it to final
    ids. With ``saved`` (where :func:`save_plan` wrote ``plan``) the tasks read the
    plan from there and depend on nothing but their chunk."""
    return da.map_blocks(
        _relabel_block,
        array,
        dask.delayed(plan, pure=True) if saved is None else saved,
        nbh,
        by_value,
        block_id=True,
        dtype=plan.dtype,
        meta=np.empty((0,) * array.ndim, dtype=plan.dtype),
        token="segpipe-label",
    )


def _relabel_block(
    block: np.ndarray,
    plan: RemapPlan | str,
    nbh: Neighbourhood,
    by_value: bool,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    index = tuple(block_id or ())
    return relabel_chunk(block, nbh, by_value, plan_of(plan).chunk(index), index)


def _map_kept(
    first: np.ndarray, plan: RemapPlan, block_id: tuple[int, ...] | None = None
) -> np.ndarray:
    labels = first.flat[0][0]
    # Not in place: the kept labels may be read again if the result is recomputed.
    return final_ids(labels, plan.chunk(tuple(block_id or ())), in_place=False)
