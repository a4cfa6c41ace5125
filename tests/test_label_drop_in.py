"""pipeline.label as a drop-in for dask_image.ndmeasure.label: same call, same partition."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from dask_image.ndmeasure import label as dask_image_label
from scipy import ndimage

import pipeline
from tests.conftest import assert_same_partition


@pytest.mark.parametrize(
    ("shape", "chunks", "structure"),
    [
        ((60, 70), (16, 25), None),
        ((60, 70), (16, 25), np.ones((3, 3), dtype=bool)),
        ((20, 24, 28), (10, 12, 14), ndimage.generate_binary_structure(3, 2)),
    ],
)
def test_same_call_same_partition_as_dask_image(
    shape: tuple[int, ...], chunks: tuple[int, ...], structure: np.ndarray | None
) -> None:
    rng = np.random.default_rng(sum(shape))
    mask = da.from_array(rng.random(shape) < 0.45, chunks=chunks)

    theirs, their_num = dask_image_label(mask, structure)
    ours, our_num = pipeline.label(mask, structure)

    assert int(our_num) == int(their_num)
    assert ours.shape == theirs.shape and ours.chunks == theirs.chunks
    assert_same_partition(ours.compute(), np.asarray(theirs.compute()))
