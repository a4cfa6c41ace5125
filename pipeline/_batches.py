"""Computing one thing per chunk without handing the scheduler every chunk's task at once.

A graph over tens of thousands of chunks costs the scheduler memory and time
for every task it holds (about 7 ms and a few kB each). Work over chunks is
therefore submitted in batches of at most :func:`batch_size` chunks; each
batch is its own graph, culled to what its chunks need, and a batch's
partial results are combined on the workers before the next batch goes in.

The batch size is the dask config value ``segpipe.batch-size`` (4096 unless
set, e.g. ``DASK_SEGPIPE__BATCH_SIZE=1024``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

BATCH = 4096
FAN_IN = 16  # partial results combined per task within a batch


def batch_size() -> int:
    """Chunks submitted to the scheduler at a time."""
    size = int(dask.config.get("segpipe.batch-size", BATCH))
    return max(size, 1)


def compute_batched(parts: Sequence[Delayed]) -> list[Any]:
    """``dask.compute(*parts)``, :func:`batch_size` parts at a time; the results in order.

    Each batch's own tasks go in one graph layer beside the layers they share
    (the image's), so the graph is culled once per batch rather than once per part.
    """
    size = batch_size()
    results: list[Any] = []
    for start in range(0, len(parts), size):
        batch = parts[start : start + size]
        layers: dict[str, Any] = {}
        dependencies: dict[str, set[str]] = {}
        own: dict = {}
        for part in batch:
            graph = cast(HighLevelGraph, part.__dask_graph__())
            (name,) = part.__dask_layers__()
            own.update(graph.layers[name])
            for layer, depends in graph.dependencies.items():
                if layer != name:
                    layers[layer] = graph.layers[layer]
                    dependencies[layer] = set(depends)
        gather = f"segpipe-batch-{tokenize([part.key for part in batch])}"
        own[gather] = (list, [part.key for part in batch])
        layers[gather] = own
        dependencies[gather] = set(layers) - {gather}
        results.extend(Delayed(gather, HighLevelGraph(layers, dependencies)).compute())
    return results


def reduce_blocks(
    func: Callable[..., Any],
    arrays: Sequence[da.Array],
    combine: Callable[[list[Any]], Any],
    *args: Any,
) -> Any:
    """``combine`` of ``func(*blocks, *args)`` over every block, batch by batch.

    ``arrays`` must share their block grid; ``func`` gets the blocks at one
    place of that grid. ``combine`` takes a list of partial results and
    returns one of the same kind (a sum of histograms, a min and a max); it
    runs on the workers within a batch and on the client across batches.
    """
    grids = {array.numblocks for array in arrays}
    if len(grids) != 1:
        raise ValueError(f"arrays must share one block grid; got {sorted(grids)}")
    (grid,) = grids
    # Each block's partial result as a one-element object block of an array, so
    # that dask fuses reading a block and reducing it into one task.
    (parts,) = dask.optimize(
        da.map_blocks(
            partial(_wrapped, func, args),
            *arrays,
            dtype=object,
            chunks=tuple((1,) * count for count in grid),
            name=f"segpipe-part-{tokenize(func, *arrays, *args)}",
            meta=np.empty((0,) * len(grid), dtype=object),
        )
    )
    name = f"segpipe-reduce-{tokenize(combine, parts)}"
    places = list(np.ndindex(*grid))
    size = batch_size()
    results = []
    for start in range(0, len(places), size):
        level = [(parts.name, *place) for place in places[start : start + size]]
        layer: dict = {}
        merge: Callable[..., Any] = partial(_unwrapped, combine)
        depth = 0
        while depth == 0 or len(level) > 1:  # the first level unwraps, even of one part
            depth += 1
            merged = []
            for first in range(0, len(level), FAN_IN):
                key = (name, depth, start + first)
                layer[key] = (merge, level[first : first + FAN_IN])
                merged.append(key)
            level, merge = merged, combine
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[parts])
        results.append(Delayed(level[0], graph, layer=name).compute())
    return combine(results)


def _wrapped(func: Callable[..., Any], args: tuple[Any, ...], *blocks: np.ndarray) -> np.ndarray:
    """``func(*blocks, *args)`` as the one element of an object block."""
    out = np.empty((1,) * blocks[0].ndim, dtype=object)
    out.flat[0] = func(*blocks, *args)
    return out


def _unwrapped(combine: Callable[[list[Any]], Any], parts: list[np.ndarray]) -> Any:
    return combine([part.flat[0] for part in parts])


def block_regions(chunks: tuple[tuple[int, ...], ...], size: int) -> list[tuple[slice, ...]]:
    """Regions on block boundaries that cover the grid, each of at most ``size`` blocks
    (or of one block), in C order: whole slabs along the first axis while they fit."""
    if not chunks:
        return [()]
    bounds = np.cumsum((0, *chunks[0]))
    count = len(chunks[0])
    per_slab = int(np.prod([len(sizes) for sizes in chunks[1:]]))
    if per_slab <= size:
        step = max(size // per_slab, 1)
        rest = tuple(slice(None) for _ in chunks[1:])
        return [
            (slice(int(bounds[i]), int(bounds[min(i + step, count)])), *rest)
            for i in range(0, count, step)
        ]
    inner = block_regions(chunks[1:], size)
    return [(slice(int(bounds[i]), int(bounds[i + 1])), *r) for i in range(count) for r in inner]


def store_batched(sources: Sequence[da.Array], targets: Sequence[Any]) -> None:
    """``da.store(sources, targets)``, :func:`batch_size` chunks of one source at a time."""
    for source, target in zip(sources, targets, strict=True):
        for region in block_regions(source.chunks, batch_size()):
            da.store(source[region], target, regions=region, lock=False)


def compute_array(array: da.Array) -> np.ndarray:
    """``array.compute()``, :func:`batch_size` chunks at a time, into one numpy array."""
    out = np.empty(array.shape, dtype=array.dtype)
    for region in block_regions(array.chunks, batch_size()):
        out[region] = array[region].compute()
    return out
