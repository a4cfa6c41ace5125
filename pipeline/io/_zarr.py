"""Label maps written to zarr v3, complete or not at all."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from ..errors import OutputExistsError


def write_labels_zarr(
    labels: da.Array,
    path: str | Path,
    *,
    attributes: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Compute ``labels`` into a zarr v3 array at ``path``, one zarr chunk per dask chunk.

    The array is written under a staging name next to ``path`` and moved into
    place only when every chunk is written, so a failed run leaves no partial
    output; an existing ``path`` is replaced only with ``overwrite=True``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"output {target} already exists; choose another path or pass overwrite=True "
            "(--overwrite on the command line) to replace it"
        )
    # Regular chunks (all but the last per axis equal) map one-to-one onto zarr chunks.
    labels = labels.rechunk(tuple(sizes[0] for sizes in labels.chunks))
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        array = zarr.create_array(
            staging,
            shape=labels.shape,
            chunks=tuple(sizes[0] for sizes in labels.chunks),
            dtype=labels.dtype,
            fill_value=np.zeros((), labels.dtype),
            attributes=dict(attributes or {}),
            # zarr's own all-fill-value check costs about 3x the write of a label chunk.
            config={"write_empty_chunks": True},
        )
        da.store(labels, array, lock=False)  # type: ignore[arg-type]
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target
