"""The chunk grid of a two-pass stitch: first-pass summaries, seam tasks, kept blocks.

The first pass is an object array with one block per chunk, each holding
``(labels or None, summary)``. The seam pass runs one task per chunk on its
summary and its neighbours' summaries; only the tasks' small results come back
to the client. Both are submitted in batches (:mod:`pipeline._batches`), so a
grid of any size never puts a task for every chunk on the scheduler at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.core import flatten
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from .._batches import batch_size, compute_batched

Index = tuple[int, ...]
Direction = tuple[int, ...]


def step(index: Index, d: Direction) -> Index:
    """The grid position one step ``d`` from ``index``."""
    return tuple(i + s for i, s in zip(index, d, strict=True))


def within(index: Index, grid: tuple[int, ...]) -> bool:
    """Whether ``index`` lies on the grid."""
    return all(0 <= i < n for i, n in zip(index, grid, strict=True))


def seam_results(
    first: da.Array,
    task: Callable[..., Any],
    directions: Sequence[Direction],
    *extra: Any,
) -> list[Any]:
    """``task(summary, neighbour_summaries, steps, *extra)`` for every chunk, in C order.

    ``steps`` are the ``directions`` that stay on the grid from that chunk, and
    the neighbours' summaries come in the same order.
    """
    (summaries,) = dask.optimize(
        da.map_blocks(
            _summary_of, first, dtype=object, meta=np.empty((0,) * first.ndim, dtype=object)
        )
    )
    name = f"segpipe-seams-{tokenize(summaries, task, directions, *extra)}"
    grid = first.numblocks
    layer: dict = {}
    for index in np.ndindex(*grid):
        steps = [d for d in directions if within(step(index, d), grid)]
        neighbours = [(summaries.name, *step(index, d)) for d in steps]
        layer[(name, *index)] = (task, (summaries.name, *index), neighbours, steps, *extra)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[summaries])
    return compute_batched(
        [Delayed((name, *index), graph, layer=name) for index in np.ndindex(*grid)]
    )


def persist_blocks(array: da.Array) -> da.Array:
    """``array.persist()``, :func:`~pipeline._batches.batch_size` blocks at a time."""
    (array,) = dask.optimize(array)
    graph = array.__dask_graph__()
    keys = list(flatten(array.__dask_keys__()))
    held: dict = {}
    size = batch_size()
    for start in range(0, len(keys), size):
        batch = [Delayed(key, graph, layer=array.name) for key in keys[start : start + size]]
        for kept in dask.persist(*batch):
            held.update(kept.__dask_graph__())
    layer = HighLevelGraph.from_collections(array.name, held, dependencies=[])
    return da.Array(layer, array.name, array.chunks, meta=array._meta)


def _summary_of(first: np.ndarray) -> np.ndarray:
    out = np.empty(first.shape, dtype=object)
    out.flat[0] = first.flat[0][1]
    return out
