"""``stitch_instances``: per-chunk object ids made global by matching them in the halos.

Instance methods (watershed, superpixels, models) cut objects differently in
every chunk, so their pieces cannot be joined by touching alone. Each chunk is
segmented with a halo, and neighbours compare what they both saw::

    one axis, halo h; every block is its chunk plus h on each side

        A's block  [h| . . . . . A's chunk . . . . |h]
        B's block                          [h| . . . . . B's chunk . . . |h]
                                           |<-- 2h -->|
                                      the strip both blocks see

    In the strip, A's object a and B's object b overlap by |a & b|; when
    |a & b| / |a | b| (their IoU there) is above the threshold they are one
    object. An IoU above 0.5 pairs each object with at most one partner per
    seam. Diagonal neighbours (edges and corners) are compared the same way.

Only ids with pixels in a block's own chunk take part (an object seen only in
a halo belongs to the neighbour). The final ids come from the same union-find
as :func:`pipeline.label` (:func:`plan_remap`), so they depend only on the data
and the chunk grid.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np

from ..errors import InputValueError, NondeterministicInputError, UnsupportedInputError
from ..io._chunks import Written
from ._grid import persist_blocks, seam_results, step
from ._label import _available_memory
from ._local import final_ids
from ._merge import RemapPlan, plan_remap
from ._recorded import (
    Recording,
    record_first_pass,
    recorded_labels,
    recorded_seam_results,
    save_summary,
)

Index = tuple[int, ...]
Direction = tuple[int, ...]


@dataclass(frozen=True)
class SeamReport:
    """How the objects cut by chunk seams were stitched.

    Attributes
    ----------
    seam_pieces
        Pieces (an object's part in one chunk) that reach into a neighbouring
        chunk, as their own chunk's segmentation saw them.
    matched
        Seam pieces joined to a piece of a neighbour (IoU above the threshold).
    fragments
        Seam pieces left unmatched: each stays an object of its own, cut at the
        seam. Few fragments mean the halo was wide enough.
    merged_objects
        Final objects made of more than one piece.
    iou_threshold
        The IoU a pair needed to be joined.
    """

    seam_pieces: int
    matched: int
    fragments: int
    merged_objects: int
    iou_threshold: float

    def as_dict(self) -> dict[str, Any]:
        """The report as plain numbers, for run records."""
        return asdict(self)


@dataclass(frozen=True)
class _Block:
    """A block's first pass: core object count, the strips it shares with neighbours."""

    count: int
    strips: dict[Direction, np.ndarray]  # this block's local ids where it overlaps +d
    crossing: dict[Direction, np.ndarray]  # local ids reaching into the chunk at +d


def stitch_instances(
    padded: da.Array,
    halo: tuple[int, ...],
    *,
    iou: float = 0.5,
    keep_labels: bool | None = None,
) -> tuple[da.Array, int, SeamReport]:
    """Stitch per-chunk instance ids into one label map.

    Parameters
    ----------
    padded
        A 2D or 3D integer dask array whose every block is one chunk plus
        ``halo`` pixels on each side (what ``map_overlap(..., trim=False)``
        makes), holding that block's object ids (0 is background; any ids).
    halo
        The halo width per axis. Every axis split into several chunks needs
        at least 1.
    iou
        Pieces overlapping with an IoU above this in the shared strip become
        one object; in ``[0.5, 1)`` so that each piece has at most one partner
        per seam.
    keep_labels
        Keep the first pass's blocks on the workers for the second pass
        (``None``: when they take at most a quarter of the workers' memory);
        ``False`` computes ``padded`` again, which must then give the same ids.

    Returns
    -------
    labels
        Lazy labels over the chunks (halos cut off), consecutive ids 1..num,
        uint32 unless num needs uint64.
    num
        Number of objects.
    report
        The seam-quality figures.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from dask.array.overlap import overlap
    >>> image = np.zeros((4, 8), dtype=np.uint32)
    >>> image[1:3, 2:7] = 5
    >>> padded = overlap(da.from_array(image, chunks=(4, 4)), {0: 1, 1: 1}, boundary="reflect")
    >>> labels, num, report = stitch_instances(padded, (1, 1))
    >>> num, report.merged_objects
    (1, 1)
    >>> labels.compute()[1]
    array([0, 0, 1, 1, 1, 1, 1, 0], dtype=uint32)
    """
    array, halo = _check(padded, halo, iou, keep_labels)
    grid = array.numblocks
    core_chunks = _core_chunks(array, halo)
    if keep_labels is None:
        keep_labels = 4 * array.size <= _available_memory() // 4

    first = da.map_blocks(
        _first_block,
        array,
        halo,
        grid,
        keep_labels,
        block_id=True,
        chunks=(1,) * array.ndim,
        dtype=object,
        meta=np.empty((0,) * array.ndim, dtype=object),
        token="segpipe-instances-first-pass",
    )
    if keep_labels:
        first = persist_blocks(first)
    plan, report = _match_seams(
        seam_results(first, _seam_task, _forward_directions(first.ndim), iou), first.numblocks, iou
    )
    plan_task = dask.delayed(plan, pure=True)
    meta = np.empty((0,) * array.ndim, dtype=plan.dtype)
    if keep_labels:
        labels = da.map_blocks(
            _map_kept,
            first,
            plan_task,
            halo,
            block_id=True,
            chunks=core_chunks,
            dtype=plan.dtype,
            meta=meta,
            token="segpipe-instances",
        )
    else:
        labels = da.map_blocks(
            _relabel_block,
            array,
            plan_task,
            halo,
            block_id=True,
            chunks=core_chunks,
            dtype=plan.dtype,
            meta=meta,
            token="segpipe-instances",
        )
    return labels, plan.num, report


def stitch_instances_recorded(
    padded: da.Array, halo: tuple[int, ...], recording: Recording, *, iou: float = 0.5
) -> tuple[da.Array, int, SeamReport, Written]:
    """:func:`stitch_instances` with its first pass recorded on disk (see :mod:`._recorded`).

    Returns the lazy labels (read from the recorded first pass), the number of
    objects, the seam report, and what the first pass wrote and skipped.

    Raises
    ------
    ChunkError
        Computing the instances failed on some chunks; every other chunk's
        first pass is recorded, so a run with ``resume`` redoes only those.
    """
    array, halo = _check(padded, halo, iou, None)
    local = da.map_blocks(
        _record_block,
        array,
        halo,
        array.numblocks,
        str(recording.summaries),
        block_id=True,
        chunks=_core_chunks(array, halo),
        dtype=np.uint32,
        meta=np.empty((0,) * array.ndim, dtype=np.uint32),
        token="segpipe-instances-first-pass-recorded",
    )
    written = record_first_pass(local, recording)
    found = recorded_seam_results(
        recording, array.numblocks, _seam_task, _forward_directions(array.ndim), iou
    )
    plan, report = _match_seams(found, array.numblocks, iou)
    return recorded_labels(recording, plan), plan.num, report, written


def _core_chunks(array: da.Array, halo: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The chunks of the padded blocks with their halos cut off."""
    return tuple(
        tuple(size - 2 * h for size in sizes) for sizes, h in zip(array.chunks, halo, strict=True)
    )


def _check(
    padded: Any, halo: tuple[int, ...], iou: float, keep_labels: bool | None
) -> tuple[da.Array, tuple[int, ...]]:
    if not isinstance(padded, da.Array):
        raise UnsupportedInputError(f"padded must be a dask array; got {type(padded).__name__}")
    if padded.dtype.kind not in "iu":
        raise UnsupportedInputError(
            f"instance ids have dtype {padded.dtype}; expected an integer type"
        )
    if padded.ndim not in (2, 3):
        raise InputValueError(f"instances must be 2D or 3D; got shape {padded.shape}")
    halo = tuple(int(h) for h in halo)
    if len(halo) != padded.ndim or any(h < 0 for h in halo):
        raise InputValueError(f"halo must give one width >= 0 per axis; got {halo}")
    if any(math.isnan(size) for sizes in padded.chunks for size in sizes):
        raise InputValueError("instances have unknown chunk sizes; compute_chunk_sizes() first")
    for axis, (sizes, h) in enumerate(zip(padded.chunks, halo, strict=True)):
        if min(sizes) <= 2 * h:
            raise InputValueError(
                f"axis {axis}: blocks of {min(sizes)} pixels cannot hold a chunk plus a halo "
                f"of {h} on each side"
            )
        if h == 0 and len(sizes) > 1:
            raise InputValueError(
                f"axis {axis} is split into {len(sizes)} chunks but has no halo: instances "
                "are stitched by matching them in the halo, so give it at least 1"
            )
    if not 0.5 <= iou < 1:
        raise InputValueError(f"iou must be in [0.5, 1); got {iou!r}")
    if not (keep_labels is None or isinstance(keep_labels, bool)):
        raise InputValueError(f"keep_labels must be True, False or None; got {keep_labels!r}")
    return padded, halo


def _directions(ndim: int) -> list[Direction]:
    return [d for d in itertools.product((-1, 0, 1), repeat=ndim) if any(d)]


def _forward(d: Direction) -> bool:
    return next(x for x in d if x) == 1


def _strip(shape: tuple[int, ...], halo: tuple[int, ...], d: Direction) -> tuple[slice, ...]:
    """Where a block overlaps its neighbour's block at ``+d``, in its own coordinates."""
    return tuple(
        slice(size - 2 * h, size) if step > 0 else slice(0, 2 * h) if step < 0 else slice(None)
        for size, h, step in zip(shape, halo, d, strict=True)
    )


def _into_neighbour(halo: tuple[int, ...], d: Direction) -> tuple[slice, ...]:
    """Within the strip towards ``+d``: the part inside the neighbour's own chunk."""
    return tuple(
        slice(h, 2 * h) if step > 0 else slice(0, h) if step < 0 else slice(h, -h or None)
        for h, step in zip(halo, d, strict=True)
    )


def _core(halo: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(h, -h or None) for h in halo)


def _local_ids(block: np.ndarray, halo: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Ids 1..n for the objects with pixels in the block's own chunk (in id order);
    everything else, including objects seen only in the halo, 0."""
    ids = np.unique(block[_core(halo)])
    ids = ids[ids != 0]
    if ids.size == 0:
        return np.zeros(block.shape, dtype=np.uint32), 0
    values, inverse = np.unique(block, return_inverse=True)
    rank = np.searchsorted(ids, values)
    found = (rank < ids.size) & (ids[np.minimum(rank, ids.size - 1)] == values)
    lut = np.where(found, rank + 1, 0).astype(np.uint32)
    return lut[inverse.reshape(block.shape)], int(ids.size)


def _first(
    block: np.ndarray, halo: tuple[int, ...], grid: tuple[int, ...], index: Index
) -> tuple[np.ndarray, _Block]:
    """A block's local ids and what its seams need of it."""
    local, count = _local_ids(block, halo)
    strips, crossing = {}, {}
    for d in _directions(block.ndim):
        if not all(0 <= i + s < n for i, s, n in zip(index, d, grid, strict=True)):
            continue
        strip = local[_strip(block.shape, halo, d)].copy()
        strips[d] = strip
        inside = np.unique(strip[_into_neighbour(halo, d)])
        crossing[d] = inside[inside != 0]
    return local, _Block(count, strips, crossing)


def _first_block(
    block: np.ndarray,
    halo: tuple[int, ...],
    grid: tuple[int, ...],
    keep: bool,
    block_id: Index | None = None,
) -> np.ndarray:
    local, summary = _first(block, halo, grid, tuple(block_id or ()))
    out = np.empty((1,) * block.ndim, dtype=object)
    out.flat[0] = (local if keep else None, summary)
    return out


def _record_block(
    block: np.ndarray,
    halo: tuple[int, ...],
    grid: tuple[int, ...],
    summaries: str,
    block_id: Index | None = None,
) -> np.ndarray:
    index = tuple(block_id or ())
    local, summary = _first(block, halo, grid, index)
    save_summary(summaries, index, summary)
    return np.ascontiguousarray(local[_core(halo)])


def _pair_seam(
    mine: _Block, theirs: _Block, d: Direction, iou: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matched id pairs across the seam towards ``+d``, and the ids of both sides
    that reach across it."""
    back = tuple(-x for x in d)
    a, b = mine.strips[d].ravel(), theirs.strips[back].ravel()
    both = (a != 0) & (b != 0)
    if not both.any():
        return np.empty((0, 2), np.uint32), mine.crossing[d], theirs.crossing[back]
    key = (a[both].astype(np.uint64) << np.uint64(32)) | b[both].astype(np.uint64)
    pairs, overlap = np.unique(key, return_counts=True)
    pa = (pairs >> np.uint64(32)).astype(np.int64)
    pb = (pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)
    area_a = np.bincount(a, minlength=int(pa.max()) + 1)
    area_b = np.bincount(b, minlength=int(pb.max()) + 1)
    score = overlap / (area_a[pa] + area_b[pb] - overlap)
    good = score > iou
    matched = np.stack([pa[good], pb[good]], axis=1).astype(np.uint32)
    return matched, mine.crossing[d], theirs.crossing[back]


def _seam_task(
    summary: np.ndarray,
    neighbours: list[np.ndarray],
    steps: list[Direction],
    iou: float,
) -> tuple[int, list[tuple[Direction, np.ndarray, np.ndarray, np.ndarray]]]:
    mine = summary.flat[0]
    found = [
        (d, *_pair_seam(mine, other.flat[0], d, iou))
        for d, other in zip(steps, neighbours, strict=True)
    ]
    return mine.count, found


def _forward_directions(ndim: int) -> list[Index]:
    return [d for d in _directions(ndim) if _forward(d)]


def _match_seams(
    results: list[Any], grid: tuple[int, ...], iou: float
) -> tuple[RemapPlan, SeamReport]:
    """Merge on the client what one task per block found pairing its ids with its
    forward neighbours' (results in C order)."""

    counts = np.zeros(grid, dtype=np.int64)
    for index, (count, _) in zip(np.ndindex(*grid), results, strict=True):
        counts[index] = count
    offsets = (np.cumsum(counts.ravel()) - counts.ravel()).reshape(grid)
    pairs: list[tuple[Index, Index, np.ndarray]] = []
    seam_pieces, matched_pieces = [], []
    for index, (_, found) in zip(np.ndindex(*grid), results, strict=True):
        for d, matched, reach_mine, reach_theirs in found:
            other = step(index, d)
            seam_pieces += [offsets[index] + reach_mine, offsets[other] + reach_theirs]
            if matched.size:
                pairs.append((index, other, matched))
                matched_pieces += [offsets[index] + matched[:, 0], offsets[other] + matched[:, 1]]
    plan = plan_remap(counts, pairs)
    cut = np.unique(np.concatenate(seam_pieces)) if seam_pieces else np.empty(0)
    joined = np.unique(np.concatenate(matched_pieces)) if matched_pieces else np.empty(0)
    merged = np.unique(
        np.concatenate([np.empty(0, np.int64)] + [ids for _, ids in plan.away.values()])
    )
    report = SeamReport(
        seam_pieces=int(cut.size),
        matched=int(np.isin(cut, joined).sum()),
        fragments=int(cut.size - np.isin(cut, joined).sum()),
        merged_objects=int(merged.size),
        iou_threshold=float(iou),
    )
    return plan, report


def _map_kept(
    first: np.ndarray, plan: RemapPlan, halo: tuple[int, ...], block_id: Index | None = None
) -> np.ndarray:
    local = first.flat[0][0][_core(halo)]
    return final_ids(local, plan.chunk(tuple(block_id or ())), in_place=False)


def _relabel_block(
    block: np.ndarray, plan: RemapPlan, halo: tuple[int, ...], block_id: Index | None = None
) -> np.ndarray:
    index = tuple(block_id or ())
    ids = plan.chunk(index)
    local, count = _local_ids(block, halo)
    if count != ids.count:
        raise NondeterministicInputError(
            f"instance chunk {index} held {ids.count} objects in the first pass and {count} "
            "in the second: the instances must compute to the same ids every time; "
            "persist() them (or write them to zarr) before stitching"
        )
    return final_ids(np.ascontiguousarray(local[_core(halo)]), ids, in_place=True)
