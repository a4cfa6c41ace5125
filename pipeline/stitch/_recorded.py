"""A stitch whose first pass is recorded on disk, chunk by chunk, so a run survives anything.

For runs that take hours: the first pass writes every chunk's local labels
and its summary (object count, and the faces or halo strips its seams need)
into a folder next to the output, and records the chunk only once both are
on disk::

    <folder>/local.zarr         every chunk's first-pass labels (uint32, local ids)
    <folder>/local.zarr.done/   one marker per chunk whose labels and summary are on disk
    <folder>/summaries/0.3      chunk (0, 3)'s summary (written before its labels)

A run started again with ``resume`` does the first pass only for chunks
without a marker. The seams are paired from the recorded summaries, and the
second pass reads the recorded labels instead of running the kernels again, so
every kernel runs once per chunk while memory stays at a few chunks per worker.
A chunk that fails does not stop the others: they finish and are recorded,
and the error names the chunk.

When a chunk of the mask is cheaper to compute again than its labels are to
write and read back (a threshold of the image: reading a uint8 chunk and
labelling it again takes less than writing and reading 4 bytes a pixel), the
labels are not kept (``keep_labels=False``): the first pass records only the
summaries, with markers in ``<folder>/first.done/``, and the second pass
computes the mask chunk and labels it again, checking it finds the same
number of objects.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from .._batches import compute_batched
from ..errors import InputValueError
from ..io._chunks import Written, store_chunks
from ..io._zarr import record_chunks
from ._grid import Direction, step, within
from ._local import final_ids
from ._merge import RemapPlan

SEAM_RUN = 32  # chunks whose seams one task finds

Index = tuple[int, ...]


@dataclass(frozen=True)
class Recording:
    """Where and how a recorded stitch keeps its first pass.

    Attributes
    ----------
    folder
        The folder of the first pass's records (created when missing).
    resume
        Keep the chunks an interrupted run recorded in ``folder``; otherwise
        start afresh.
    progress
        Show a progress bar per batch of chunks.
    retries
        Further attempts per chunk on a distributed cluster.
    keep_labels
        Record each chunk's first-pass labels for the second pass to read;
        otherwise the second pass computes the chunk again.
    """

    folder: Path
    resume: bool = False
    progress: bool = False
    retries: int = 0
    keep_labels: bool = True

    @property
    def summaries(self) -> Path:
        """The folder of the chunks' summaries."""
        return self.folder / "summaries"

    @property
    def labels(self) -> Path:
        """The zarr array of the first pass's labels (when they are kept)."""
        return self.folder / "local.zarr"

    @property
    def done(self) -> Path:
        """The folder of the markers of the chunks whose first pass is recorded."""
        return self.folder / ("local.zarr.done" if self.keep_labels else "first.done")


def record_first_pass(local: da.Array, recording: Recording) -> Written:
    """Write ``local`` (uint32 local labels whose blocks save their summaries) chunk by
    chunk, or, without ``keep_labels``, compute each block and record it.

    Raises
    ------
    InputValueError
        ``local``'s chunks are not regular, so they cannot be zarr chunks.
    ChunkError
        Chunks failed; every other chunk is recorded.
    """
    for axis, sizes in enumerate(local.chunks):
        if len(set(sizes[:-1])) > 1 or sizes[-1] > sizes[0]:
            raise InputValueError(
                f"axis {axis} has irregular chunks {sizes}: rechunk the image to one chunk "
                "size per axis before stitching"
            )
    recording.summaries.mkdir(parents=True, exist_ok=True)
    if recording.keep_labels:
        return record_chunks(
            local,
            recording.labels,
            resume=recording.resume,
            progress=recording.progress,
            retries=recording.retries,
            scratch=True,
        )
    if not recording.resume and recording.done.exists():
        shutil.rmtree(recording.done)
    return store_chunks(
        local, None, recording.done, progress=recording.progress, retries=recording.retries
    )


def save_summary(folder: str, index: tuple[int, ...], summary: Any) -> None:
    """Write a chunk's summary atomically and durably (a rewrite leaves the same bytes)."""
    _save(Path(folder) / ".".join(str(i) for i in index), summary)


def save_plan(recording: Recording, plan: RemapPlan) -> str:
    """Write the second pass's plan next to the summaries, for its tasks to read
    (see :func:`plan_of`): then a chunk's second pass depends on nothing but the
    chunk, and dask fuses it into one task with the chunk's own computation."""
    path = recording.folder / "plan.pkl"
    _save(path, plan)
    return str(path)


def plan_of(plan: RemapPlan | str) -> RemapPlan:
    """The plan itself, or the one saved at that path (read once per process)."""
    if isinstance(plan, RemapPlan):
        return plan
    return _load_plan(plan, os.stat(plan).st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_plan(path: str, stamp: int) -> RemapPlan:
    with open(path, "rb") as handle:
        loaded: RemapPlan = pickle.load(handle)
    return loaded


def _save(path: Path, value: Any) -> None:
    scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(scratch, "wb") as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, path)


def recorded_seam_results(
    recording: Recording,
    grid: tuple[int, ...],
    task: Callable[..., Any],
    directions: Sequence[Direction],
    *extra: Any,
) -> list[Any]:
    """:func:`~._grid.seam_results` over the recorded summaries, in C order.

    Each task takes a run of :data:`SEAM_RUN` chunks and reads their summaries
    and their neighbours' from disk, so no summary travels between workers and
    no task waits on another; a run rather than a chunk per task, because a
    chunk's seams take under a millisecond and a task costs the scheduler more.
    """
    run = dask.delayed(_seams_from_disk, pure=True)
    folder = str(recording.summaries)
    places = [
        (index, [d for d in directions if within(step(index, d), grid)])
        for index in np.ndindex(*grid)
    ]
    parts = [
        run(folder, places[start : start + SEAM_RUN], task, extra)
        for start in range(0, len(places), SEAM_RUN)
    ]
    return [result for results in compute_batched(parts) for result in results]


def recorded_labels(recording: Recording, plan: RemapPlan) -> da.Array:
    """The second pass: the recorded local labels, mapped to their final ids."""
    local = da.from_zarr(str(recording.labels))
    return da.map_blocks(
        _final_block,
        local,
        save_plan(recording, plan),
        block_id=True,
        dtype=plan.dtype,
        meta=np.empty((0,) * local.ndim, dtype=plan.dtype),
        token="segpipe-recorded-labels",
    )


def _seams_from_disk(
    folder: str,
    places: list[tuple[Index, list[Direction]]],
    task: Callable[..., Any],
    extra: tuple[Any, ...],
) -> list[Any]:
    """``task`` at each chunk of ``places`` (a run in C order) with its neighbours'
    summaries; a summary read for one chunk of the run serves the others."""
    read: dict[Index, np.ndarray] = {}

    def summary(index: Index) -> np.ndarray:
        if index not in read:
            read[index] = _load_summary(folder, index)
        return read[index]

    return [
        task(summary(index), [summary(step(index, d)) for d in steps], steps, *extra)
        for index, steps in places
    ]


def _load_summary(folder: str, index: Index) -> np.ndarray:
    """A chunk's recorded summary as seam tasks take it: a one-element object array."""
    with open(Path(folder) / ".".join(str(i) for i in index), "rb") as handle:
        summary = pickle.load(handle)
    out = np.empty((1,) * len(index), dtype=object)
    out.flat[0] = summary
    return out


def _final_block(
    local: np.ndarray, plan: str, block_id: tuple[int, ...] | None = None
) -> np.ndarray:
    return final_ids(local, plan_of(plan).chunk(tuple(block_id or ())), in_place=True)
