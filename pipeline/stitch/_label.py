"""``label``: connected components of a chunked mask, exactly as on the whole array."""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from ..errors import InputValueError, UnsupportedInputError
from ._local import relabel_chunk, summarise_chunk
from ._merge import RemapPlan, plan_remap
from ._neighbourhood import Neighbourhood, resolve_neighbourhood
from ._seams import chunk_equivalences, seam_directions


def label(
    mask: Any,
    structure: Any = None,
    *,
    connectivity: int | None = None,
    by_value: bool = False,
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
    cc3d and keeps only its object count and faces; equivalences are found
    where chunks touch (faces, and edges and corners when the connectivity
    allows it) and merged on the client by union-find over that small seam
    graph. This pass runs when ``label`` is called, on the current dask
    scheduler. The returned array is the second pass: each chunk is computed
    and labelled again and its ids mapped to the final ones, so no labels are
    held between passes. The mask must therefore compute to the same values
    each time; persist an expensive or random mask first.

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
    if not isinstance(by_value, bool):
        raise InputValueError(f"by_value must be True or False; got {by_value!r}")
    plan = _first_pass(array, nbh, by_value)
    labels = da.map_blocks(
        _relabel_block,
        array,
        dask.delayed(plan, pure=True),
        nbh,
        by_value,
        block_id=True,
        dtype=plan.dtype,
        meta=np.empty((0,) * array.ndim, dtype=plan.dtype),
        token="segpipe-label",
    )
    return labels, plan.num


def _as_mask(mask: Any) -> da.Array:
    if isinstance(mask, da.Array):
        array = mask
    elif isinstance(mask, np.ndarray):
        array = da.from_array(mask, chunks="auto")
    else:
        raise UnsupportedInputError(
            f"mask must be a dask or numpy array; got {type(mask).__name__}"
        )
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
    if any(0 in sizes for sizes in array.chunks):
        array = array.rechunk(tuple(tuple(s for s in sizes if s) for sizes in array.chunks))
    largest = int(np.prod([max(sizes) for sizes in array.chunks]))
    if largest >= 2**32:
        raise InputValueError(
            f"mask chunks of up to {largest} pixels are too large to label; "
            "use chunks of fewer than 2**32 pixels, e.g. mask.rechunk(2048)"
        )
    return array


def _first_pass(array: da.Array, nbh: Neighbourhood, by_value: bool) -> RemapPlan:
    """Label every chunk once, keep counts and faces, pair labels across seams.

    One summary task and one seam task per chunk; only the counts and the seam
    pairs come back to the client, the faces stay on the workers.
    """
    token = tokenize(array, nbh, by_value)
    summary, seams, gather = (
        f"segpipe-summary-{token}",
        f"segpipe-seams-{token}",
        f"segpipe-counts-{token}",
    )
    grid = array.numblocks
    crossings = dict(seam_directions(nbh))
    layer: dict = {}
    for index in np.ndindex(*grid):
        layer[(summary, *index)] = (summarise_chunk, (array.name, *index), nbh, by_value, index)
    for index in np.ndindex(*grid):
        steps = [d for d in crossings if _within(_step(index, d), grid)]
        neighbours = [(summary, *_step(index, d)) for d in steps]
        layer[(seams, *index)] = (
            chunk_equivalences,
            (summary, *index),
            neighbours,
            steps,
            crossings,
        )
    layer[gather] = (list, [(seams, *index) for index in np.ndindex(*grid)])
    graph = HighLevelGraph.from_collections(gather, layer, dependencies=[array])
    results = Delayed(gather, graph).compute()

    counts = np.zeros(grid, dtype=np.int64)
    pairs = []
    for index, (count, found) in zip(np.ndindex(*grid), results, strict=True):
        counts[index] = count
        pairs.extend((index, _step(index, d), touching) for d, touching in found)
    return plan_remap(counts, pairs)


def _step(index: tuple[int, ...], d: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(i + s for i, s in zip(index, d, strict=True))


def _within(index: tuple[int, ...], grid: tuple[int, ...]) -> bool:
    return all(0 <= i < n for i, n in zip(index, grid, strict=True))


def _relabel_block(
    block: np.ndarray,
    plan: RemapPlan,
    nbh: Neighbourhood,
    by_value: bool,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    index = tuple(block_id or ())
    return relabel_chunk(
        block,
        nbh,
        by_value,
        count=int(plan.counts[index]),
        base=int(plan.base[index]),
        away=plan.away.get(index),
        dtype=plan.dtype,
        index=index,
    )
