"""Writing a chunked array into a zarr array chunk by chunk, each recorded when durable.

One task per output chunk computes that chunk, writes it to its own zarr chunk
(the dask chunks ARE the zarr chunks, so no two tasks touch one file), syncs
the file to disk, and only then leaves a marker for the chunk::

    .labels.zarr.run-<key>/            the zarr array being written
    .labels.zarr.run-<key>.done/0.3    chunk (0, 3) is on disk

A write may keep a small digest of every chunk (what a report needs of it:
preview pixels, object sizes) in its marker, so nothing reads the chunks
again after the write; a chunk recorded without one (by an earlier version)
is read back once to make it.

A run started again on the same staging folder (``--resume``) builds tasks
for the chunks without a marker only; a chunk written twice (a task rerun
after a worker was lost) gets the same bytes, since its values depend only on
the data and the chunk grid. Large grids are submitted in batches, so the
scheduler never holds every chunk's task at once.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from dask.delayed import Delayed

from ..errors import ChunkError

BATCH = 4096  # chunks submitted to the scheduler at a time

Index = tuple[int, ...]
# A chunk's digest: made from its values and the position of its first pixel.
Digest = Callable[[np.ndarray, Index], Any]


@dataclass(frozen=True)
class Written:
    """What a chunked write did: chunks in the grid, written now, found done already,
    and each chunk's digest when one was asked for."""

    total: int
    written: int
    skipped: int
    digests: dict[Index, Any] = field(default_factory=dict, repr=False)


def done_chunks(done: Path) -> set[tuple[int, ...]]:
    """The chunks recorded as written in the marker folder ``done``."""
    if not done.is_dir():
        return set()
    return {
        tuple(int(i) for i in entry.name.split("."))
        for entry in os.scandir(done)
        if not entry.name.endswith(".tmp")
    }


def store_chunks(
    data: da.Array,
    array_path: Path | None,
    done: Path,
    *,
    progress: bool = False,
    retries: int = 0,
    digest: Digest | None = None,
) -> Written:
    """Write every chunk of ``data`` not yet recorded in ``done`` into the zarr array.

    The array must exist with ``data``'s shape and with chunks equal to
    ``data``'s (all but the last per axis equal). Failed chunks are reported
    together once every other chunk has finished and been recorded. With
    ``digest``, each chunk's digest is kept in its marker and every chunk's is
    returned (pickled: it must be small and picklable). With no ``array_path``
    each chunk is computed for what its task leaves on disk itself and only
    recorded (no ``digest`` then).

    Raises
    ------
    ChunkError
        A chunk failed (after ``retries`` more attempts on a distributed
        cluster); the message names it and its pixels.
    """
    if digest is not None and array_path is None:
        raise ValueError("a digest is made from the written chunks: give their array_path")
    done.mkdir(parents=True, exist_ok=True)
    recorded = done_chunks(done)
    todo = [index for index in np.ndindex(*data.numblocks) if index not in recorded]
    total = int(np.prod(data.numblocks))
    if todo:
        _store(data, array_path, done, todo, progress, retries, digest)
    digests: dict[Index, Any] = {}
    if digest is not None and array_path is not None:
        digests = read_digests(array_path, done, digest)
    return Written(total=total, written=len(todo), skipped=total - len(todo), digests=digests)


def _store(
    data: da.Array,
    array_path: Path | None,
    done: Path,
    todo: list[Index],
    progress: bool,
    retries: int,
    digest: Digest | None,
) -> None:
    stored = da.map_blocks(
        _store_block,
        data,
        None if array_path is None else str(array_path),
        str(done),
        digest,
        block_id=True,
        chunks=(1,) * data.ndim,
        dtype=np.int8,
        meta=np.empty((0,) * data.ndim, dtype=np.int8),
        token="segpipe-store",
    )
    # Fused as dask fuses an array's graph: a chunk's steps in one task, not one each.
    (stored,) = dask.optimize(stored)
    graph = stored.__dask_graph__()
    client = client_or_none()
    failures: list[tuple[tuple[int, ...], BaseException]] = []
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        tasks = [Delayed((stored.name, *index), graph, layer=stored.name) for index in batch]
        if client is None:
            failures += _compute_each_on_failure(batch, tasks, done)
            continue
        futures = client.compute(tasks, retries=retries)
        if progress:
            from distributed import progress as show

            show(futures)
        from distributed import wait

        wait(futures)
        failures += [
            (i, f.exception()) for i, f in zip(batch, futures, strict=True) if f.status == "error"
        ]
        client.cancel(futures)
    if failures:
        raise ChunkError(_describe(failures, data))


def read_digests(array_path: Path, done: Path, digest: Digest) -> dict[Index, Any]:
    """Every recorded chunk's digest, from its marker, or made from the chunk on disk
    when its marker holds none."""
    array = zarr.open_array(str(array_path), mode="r")
    found: dict[Index, Any] = {}
    for index in sorted(done_chunks(done)):
        marker = done / ".".join(str(i) for i in index)
        content = marker.read_bytes()
        if content:
            found[index] = pickle.loads(content)
            continue
        start = tuple(i * size for i, size in zip(index, array.chunks, strict=True))
        region = tuple(
            slice(s, min(s + size, extent))
            for s, size, extent in zip(start, array.chunks, array.shape, strict=True)
        )
        found[index] = digest(np.asarray(array[region]), start)
    return found


def _compute_each_on_failure(
    batch: list[tuple[int, ...]], tasks: list[Delayed], done: Path
) -> list[tuple[tuple[int, ...], BaseException]]:
    """Compute a batch on a local scheduler; if it fails, compute its unrecorded chunks
    one by one, so every chunk that can be written is, and return those that failed."""
    try:
        dask.compute(*tasks)
        return []
    except Exception:
        recorded = done_chunks(done)
    failures: list[tuple[tuple[int, ...], BaseException]] = []
    for index, task in zip(batch, tasks, strict=True):
        if index in recorded:
            continue
        try:
            dask.compute(task)
        except Exception as error:
            failures.append((index, error))
    return failures


def _describe(failures: list[tuple[tuple[int, ...], BaseException]], data: da.Array) -> str:
    index, error = failures[0]
    starts = [int(np.sum(sizes[:i])) for sizes, i in zip(data.chunks, index, strict=True)]
    pixels = ", ".join(
        f"{s}:{s + sizes[i]}" for s, sizes, i in zip(starts, data.chunks, index, strict=True)
    )
    others = f" (and {len(failures) - 1} more chunks)" if len(failures) > 1 else ""
    return (
        f"chunk {index} (pixels [{pixels}]) failed{others}: {type(error).__name__}: {error}; "
        "every other chunk was written and recorded: fix the cause and run again with "
        "--resume to do only the failed chunks"
    )


def client_or_none() -> Any:
    """The distributed client dask computes on now, or None on a local scheduler."""
    scheduler = dask.base.get_scheduler()
    client = getattr(scheduler, "__self__", None)
    return client if client is not None and hasattr(client, "compute") else None


def _store_block(
    block: np.ndarray,
    array_path: str | None,
    done: str,
    digest: Digest | None,
    block_id: Index | None = None,
) -> np.ndarray:
    index = tuple(block_id or ())
    marker = Path(done) / ".".join(str(i) for i in index)
    if array_path is None:  # computed for its side effects: recorded only
        _touch(marker)
        return np.ones((1,) * block.ndim, dtype=np.int8)
    array = _writable(array_path, os.stat(Path(array_path) / "zarr.json").st_mtime_ns)
    region = tuple(
        slice(i * size, i * size + extent)
        for i, size, extent in zip(index, array.chunks, block.shape, strict=True)
    )
    array[region] = block
    _sync(Path(array_path) / array.metadata.encode_chunk_key(index))
    if digest is None:
        _touch(marker)
        return np.ones((1,) * block.ndim, dtype=np.int8)
    start = tuple(i * size for i, size in zip(index, array.chunks, strict=True))
    scratch = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    with open(scratch, "wb") as handle:
        pickle.dump(digest(block, start), handle, protocol=pickle.HIGHEST_PROTOCOL)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, marker)
    return np.ones((1,) * block.ndim, dtype=np.int8)


@functools.lru_cache(maxsize=16)
def _writable(path: str, stamp: int) -> zarr.Array:
    """The zarr array at ``path`` opened for writing once per process while its
    metadata (``stamp``: its modification time) stays the same."""
    # zarr's own all-fill-value check costs about 3x the write of a label chunk.
    return zarr.open_array(path, mode="r+").with_config({"write_empty_chunks": True})


def _touch(marker: Path) -> None:
    """Leave an empty marker, durably."""
    with open(marker, "wb") as handle:
        os.fsync(handle.fileno())


def _sync(path: Path) -> None:
    """Make a written file durable (no-op when the store did not leave one there)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
