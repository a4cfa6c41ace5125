"""Per-chunk steps fused into one map with the halo they need, and their global fits.

Halo geometry (one spatial axis, total halo h = sum of the steps' halos)::

        |<- h ->|<------- chunk ------->|<- h ->|
        [ halo  |   pixels kept          | halo  ]
    each step runs on the whole padded block; after all of them the h-wide
    borders are cut off, so every kept pixel saw all the context it needs.
    At the image border dask pads by reflection, as scipy's mode="reflect".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np

from ..errors import ChunkError, InputValueError, PipelineError
from ..kernels import SEGMENTS, Step


def total_halo(steps: Sequence[Step], ndim: int) -> tuple[int, ...]:
    """Context every chunk needs on each side so the fused steps are exact."""
    halo = np.zeros(ndim, dtype=int)
    for step in steps:
        halo += np.asarray(step.halo(ndim), dtype=int)
    return tuple(int(h) for h in halo)


def check_chunks(
    data: da.Array, steps: Sequence[Step], halo: tuple[int, ...], source: str = "image"
) -> None:
    """A chunk smaller than the halo cannot be mapped, nor an image thinner than it;
    say which steps need it."""
    names = "zyx"[-len(halo) :]
    for axis, need in enumerate(halo, start=1):
        smallest, size = min(data.chunks[axis]), data.shape[axis]
        needers = ", ".join(s.describe() for s in steps if any(s.halo(len(halo))))
        if need > size:
            raise InputValueError(
                f"{source}: the image is {size} pixels along {names[axis - 1]}, fewer than "
                f"the halo {need} needed by {needers}: give those steps a reach of at most "
                f"{size} pixels (a smaller sigma, size or min_distance, or their halo)"
            )
        if need > smallest and smallest < size:
            raise InputValueError(
                f"{source}: chunks: chunk size {smallest} is smaller than the halo {need} "
                f"needed by {needers}; set chunks >= {2 * need} in the workflow"
            )


def map_steps(
    data: da.Array,
    steps: Sequence[Step],
    states: Sequence[Any],
    halo: tuple[int, ...],
    valid: da.Array | None = None,
) -> da.Array:
    """Apply ``steps`` chunk by chunk to ``data`` (band axis first) in one fused map.

    The result has no band axis when the last step makes a mask, classes or
    instances. Instances keep the halo (blocks of chunk + 2 * halo per axis),
    since they are stitched by matching ids there; everything else is trimmed
    to the chunks of ``data``. ``valid`` (spatial axes: where the image holds
    data) is mapped beside ``data`` with the same halo, padded the same way,
    for the steps that declare ``uses_valid``; they get ``valid=None`` when it
    is ``None``.
    """
    kind = steps[-1].output
    spatial = kind in (*SEGMENTS, "instances")  # one value per pixel: no band axis
    depth = {0: 0, **{axis: h for axis, h in enumerate(halo, start=1)}}
    dtype = np.dtype(
        {"mask": bool, "classes": np.uint8, "instances": np.uint32}.get(kind, np.float32)
    )

    starts = [np.cumsum((0, *sizes[:-1])) for sizes in data.chunks[1:]]

    def run(block: np.ndarray, *masks: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        image = block
        validity = masks[0][0] if masks else None  # the mask's band axis is 1 long
        where = block_info[0]["chunk-location"][1:] if block_info else (0,) * len(halo)
        # Where the padded block's first pixel lies in the image (negative in the halo
        # before the image's first pixel).
        origin = tuple(int(s[i]) - h for s, i, h in zip(starts, where, halo, strict=True))
        for step, state in zip(steps, states, strict=True):
            extra: dict[str, Any] = {"image": image} if step.uses_image else {}
            if step.uses_origin:
                extra["origin"] = origin
            if step.uses_valid:
                extra["valid"] = validity
            try:
                block = step.apply(block, state, **extra)
            except Exception as error:
                raise _in_chunk(error, step, where, origin, halo) from error
            if step.output == "image":
                image = block
        block = block.astype(dtype, copy=False)
        return block[None] if spatial else block

    bands = data.shape[0]
    for step in steps:
        bands = 1 if step.output != "image" else step.bands(bands)
    # map_overlap's chunks= are those of the padded blocks, before trimming.
    padded = [
        tuple(size + 2 * h for size in sizes)
        for sizes, h in zip(data.chunks[1:], halo, strict=True)
    ]
    arrays = [data]
    if valid is not None and any(step.uses_valid for step in steps):
        arrays.append(valid[None].rechunk(((1,), *data.chunks[1:])))
    mapped = da.map_overlap(
        run,
        *arrays,
        depth=depth,
        boundary="reflect",
        trim=kind != "instances",
        dtype=dtype,
        meta=np.empty((0,) * data.ndim, dtype=dtype),
        chunks=((bands,), *padded),
    )
    return mapped[0] if spatial else mapped


def _in_chunk(
    error: Exception, step: Step, where: Any, origin: tuple[int, ...], halo: tuple[int, ...]
) -> Exception:
    """The error of a step on a chunk, with the chunk and its first pixel named."""
    first = tuple(o + h for o, h in zip(origin, halo, strict=True))
    message = f"chunk {tuple(where)} (from pixel {first}): {step.describe()} failed: "
    if isinstance(error, PipelineError):
        return type(error)(message + str(error))
    return ChunkError(message + f"{type(error).__name__}: {error}")


def fit_steps(data: da.Array, steps: Sequence[Step], valid: da.Array | None) -> list[Any]:
    """Each step's global statistics, fitted on the output of the steps before it.

    A step that ``fits_values`` (a histogram: thresholds, multi_otsu) after
    steps that only mark pixels as nodata (``mask_nodata``) fits the image
    itself, in its own type, with the marked pixels left out, so an integer
    image keeps its exact histogram. Every other fit sees the image as the map
    gives it, ``valid`` mapped beside it.
    """
    states: list[Any] = []
    for index, step in enumerate(steps):
        before = steps[:index]
        marks = [s.keeps(data) for s in before] if step.fits_values and before else [None]
        if all(mark is not None for mark in marks):
            where = valid
            for mark in marks:
                where = mark if where is None else where & mark
            states.append(step.fit(data, where))
            continue
        upstream = (
            map_steps(data, before, states, total_halo(before, data.ndim - 1), valid)
            if before
            else data
        )
        states.append(step.fit(upstream, valid))
    return states
