"""pipeline.label against scipy.ndimage.label on the whole array, over random cases."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

import pipeline
from tests.conftest import assert_same_partition


@st.composite
def chunked_masks(draw: st.DrawFn, values: int = 1) -> tuple[np.ndarray, tuple]:
    ndim = draw(st.sampled_from([2, 3]))
    top = 24 if ndim == 2 else 9
    shape = tuple(draw(st.lists(st.integers(1, top), min_size=ndim, max_size=ndim)))
    chunks = []
    for size in shape:
        cuts = draw(st.lists(st.integers(1, size - 1), max_size=4, unique=True)) if size > 1 else []
        edges = [0, *sorted(cuts), size]
        chunks.append(tuple(int(step) for step in np.diff(edges)))
    density = draw(st.floats(0.0, 1.0))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    foreground = rng.random(shape) < density
    mask = foreground * rng.integers(1, values + 1, shape) if values > 1 else foreground
    return mask, tuple(chunks)


def _by_value_reference(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    reference = np.zeros(mask.shape, dtype=np.int64)
    count = 0
    for value in np.unique(mask[mask != 0]):
        part, found = ndimage.label(mask == value, structure)
        reference[part != 0] = part[part != 0] + count
        count += found
    return reference


@given(case=chunked_masks(), rank=st.integers(1, 3), keep=st.booleans())
def test_label_equals_whole_array_scipy(
    case: tuple[np.ndarray, tuple], rank: int, keep: bool
) -> None:
    mask, chunks = case
    rank = min(rank, mask.ndim)
    structure = ndimage.generate_binary_structure(mask.ndim, rank)
    reference, count = ndimage.label(mask, structure)

    labels, num = pipeline.label(
        da.from_array(mask, chunks=chunks), connectivity=rank, keep_labels=keep
    )
    result = labels.compute(scheduler="sync")

    assert num == count
    assert labels.chunks == da.from_array(mask, chunks=chunks).chunks
    assert result.dtype == np.uint32
    assert_same_partition(result, reference)


@given(case=chunked_masks(values=3), rank=st.integers(1, 3), keep=st.booleans())
def test_by_value_equals_per_class_scipy(
    case: tuple[np.ndarray, tuple], rank: int, keep: bool
) -> None:
    mask, chunks = case
    rank = min(rank, mask.ndim)
    reference = _by_value_reference(mask, ndimage.generate_binary_structure(mask.ndim, rank))

    labels, num = pipeline.label(
        da.from_array(mask, chunks=chunks), connectivity=rank, by_value=True, keep_labels=keep
    )

    assert num == len(np.unique(reference)) - (reference == 0).any()
    assert_same_partition(labels.compute(scheduler="sync"), reference)


@st.composite
def structures(draw: st.DrawFn, ndim: int) -> np.ndarray:
    """Any centrosymmetric structure, most of them not a standard connectivity."""
    half = draw(st.lists(st.booleans(), min_size=3**ndim // 2, max_size=3**ndim // 2))
    flat = np.array([*half, True, *half[::-1]])
    return flat.reshape((3,) * ndim)


@given(case=chunked_masks(), data=st.data(), keep=st.booleans())
def test_any_structure_equals_scipy(
    case: tuple[np.ndarray, tuple], data: st.DataObject, keep: bool
) -> None:
    mask, chunks = case
    structure = data.draw(structures(mask.ndim))
    reference, count = ndimage.label(mask, structure)

    with dask.config.set(scheduler="threads"):
        labels, num = pipeline.label(
            da.from_array(mask, chunks=chunks), structure, keep_labels=keep
        )
        result = labels.compute()

    assert num == count
    assert_same_partition(result, reference)
