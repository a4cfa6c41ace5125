"""pipeline.label on the shapes that break stitching, against whole-array scipy."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

import pipeline
from pipeline.stitch._local import ChunkIds, final_ids
from pipeline.stitch._merge import plan_remap
from tests.conftest import assert_same_partition


def _check(mask: np.ndarray, chunks: object, connectivity: int = 1) -> int:
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    reference, count = ndimage.label(mask, structure)
    labels, num = pipeline.label(da.from_array(mask, chunks=chunks), connectivity=connectivity)
    assert num == count
    assert_same_partition(labels.compute(), reference)
    return num


def _spiral(size: int) -> np.ndarray:
    """A one-pixel-wide square spiral with one-pixel gaps between its turns.

    Walking inwards it leaves and re-enters every chunk it crosses many times.
    """
    mask = np.zeros((size, size), dtype=bool)
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    row, col = 0, 0
    lengths = [size - 1, size - 1, size - 1]
    lengths += [n for n in range(size - 3, 0, -2) for _ in (0, 1)]
    mask[row, col] = True
    for turn, length in enumerate(lengths):
        dr, dc = steps[turn % 4]
        for _ in range(length):
            row, col = row + dr, col + dc
            mask[row, col] = True
    return mask


@pytest.mark.parametrize("chunks", [1, 2, 3, 7, 16, (5, 11), 64])
def test_spiral_is_one_object_for_every_chunking(chunks: object) -> None:
    mask = _spiral(41)
    assert ndimage.label(mask)[1] == 1
    assert ndimage.label(~mask)[1] == 1  # the gap is a spiral too
    assert _check(mask, chunks) == 1


@pytest.mark.parametrize("chunks", [1, 2, 3, 8])
def test_diagonal_chunks_join_only_at_their_corner_2d(chunks: int) -> None:
    # A staircase: every pixel touches the next only at a corner, and with these
    # chunkings many of those corners are corners of four chunks at once.
    mask = np.eye(24, dtype=bool) | np.eye(24, k=5, dtype=bool)[::-1]
    assert _check(mask, chunks, connectivity=2) == ndimage.label(mask, np.ones((3, 3)))[1]
    assert _check(mask, chunks, connectivity=1) == mask.sum()


@pytest.mark.parametrize("chunks", [1, 2, 3, (2, 3, 4)])
@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_diagonal_chunks_3d(chunks: object, connectivity: int) -> None:
    line = np.zeros((12, 12, 12), dtype=bool)
    index = np.arange(12)
    line[index, index, index] = True  # touches only through chunk corners
    line[index, index, 11 - index] = True
    line[5, :, 0] = True  # and a face-connected bar
    _check(line, chunks, connectivity)


def test_one_chunk_for_the_whole_array_and_chunks_of_one() -> None:
    rng = np.random.default_rng(7)
    mask = ndimage.gaussian_filter(rng.random((40, 50)), 2) > 0.5
    for chunks in [(40, 50), 1, (1, 50), (40, 1), (13, 17)]:
        for connectivity in (1, 2):
            _check(mask, chunks, connectivity)


def test_objects_crossing_many_chunks_3d() -> None:
    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((30, 40, 50)), 3) > 0.5
    for chunks in [(7, 9, 11), (30, 1, 50), 10]:
        for connectivity in (1, 2, 3):
            _check(mask, chunks, connectivity)


def test_numpy_and_integer_and_float_masks() -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(0, 4, (30, 30)) * (rng.random((30, 30)) < 0.5)
    reference, count = ndimage.label(values)
    for mask in (values, values.astype(np.int16), values.astype(np.float32)):
        labels, num = pipeline.label(mask)
        assert num == count
        assert_same_partition(labels.compute(), reference)


def test_schedulers_agree_with_scipy(tmp_path: object) -> None:
    rng = np.random.default_rng(11)
    mask = rng.random((64, 64)) < 0.55
    reference, count = ndimage.label(mask, np.ones((3, 3)))
    for scheduler in ("sync", "threads"):
        with dask.config.set(scheduler=scheduler):
            labels, num = pipeline.label(da.from_array(mask, chunks=9), connectivity=2)
            result = labels.compute()
        assert num == count
        assert_same_partition(result, reference)


def test_labels_do_not_depend_on_the_run() -> None:
    """The same data and chunk grid give the same ids (resumable outputs rely on it)."""
    rng = np.random.default_rng(2)
    mask = da.from_array(rng.random((50, 50)) < 0.5, chunks=8)
    first = pipeline.label(mask)[0].compute(scheduler="threads")
    second = pipeline.label(mask)[0].compute(scheduler="sync")
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("keep", [True, False])
def test_graph_has_one_task_per_chunk(keep: bool) -> None:
    mask = da.from_array(np.random.default_rng(0).random((64, 64)) < 0.5, chunks=8)
    labels, _ = pipeline.label(mask, keep_labels=keep)
    graph = dict(labels.__dask_graph__())
    label_tasks = [key for key in graph if isinstance(key, tuple) and key[0] == labels.name]
    assert len(label_tasks) == mask.npartitions
    # the kept first pass or the mask, the plan and the label tasks: nothing per neighbour
    assert len(graph) <= 2 * mask.npartitions + 2
    # kept labels are mapped without computing the mask again; otherwise it is recomputed
    assert any(isinstance(key, tuple) and key[0] == mask.name for key in graph) != keep


def test_small_masks_keep_their_labels_by_default() -> None:
    mask = da.from_array(np.random.default_rng(0).random((64, 64)) < 0.5, chunks=8)
    labels, _ = pipeline.label(mask)
    graph = dict(labels.__dask_graph__())
    assert not any(isinstance(key, tuple) and key[0] == mask.name for key in graph)


def test_available_memory_is_the_clusters(cluster_client: object) -> None:
    from pipeline.stitch._label import _available_memory

    workers = cluster_client.scheduler_info()["workers"].values()  # type: ignore[attr-defined]
    assert _available_memory() == sum(w["memory_limit"] for w in workers)


def test_dtype_widens_from_the_counts_instead_of_overflowing() -> None:
    small = plan_remap(np.array([[2**31, 2**31 - 1]]), [])
    assert small.num == 2**32 - 1 and small.dtype == np.uint32
    large = plan_remap(np.array([[2**31, 2**31]]), [])
    assert large.num == 2**32 and large.dtype == np.uint64
    # a merge across the seam brings the count back into uint32
    merged = plan_remap(
        np.array([[2**31, 2**31]]), [((0, 0), (0, 1), np.array([[5, 1]], dtype=np.uint64))]
    )
    assert merged.num == 2**32 - 1 and merged.dtype == np.uint32


def test_a_mask_that_changes_between_passes_is_refused() -> None:
    def noisy(block: np.ndarray) -> np.ndarray:
        return np.random.default_rng().random(block.shape) < 0.5

    mask = da.zeros((40, 40), chunks=20).map_blocks(noisy, dtype=bool)
    labels, _ = pipeline.label(mask, keep_labels=False)
    with pytest.raises(pipeline.NondeterministicInputError, match=r"persist\(\)"):
        labels.compute(scheduler="sync")


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
@pytest.mark.parametrize("merged", [0, 1, 40])
def test_final_ids_in_place_equal_the_plain_lookup(dtype: type, merged: int) -> None:
    """The in-place lookup (fastremap) gives what indexing a table gives, and
    writes into the labels it was given."""
    rng = np.random.default_rng(merged)
    count = 300
    labels = rng.integers(0, count + 1, size=(64, 48)).astype(dtype)
    away_local = np.sort(rng.choice(np.arange(1, count + 1), size=merged, replace=False))
    away = (away_local, rng.integers(1, 50, size=merged)) if merged else None
    ids = ChunkIds(count=count, base=1000, away=away, dtype=np.dtype(dtype))
    expected = final_ids(labels, ids, in_place=False)
    local = np.arange(count + 1)
    table = 1000 + local - np.searchsorted(away_local, local, side="left")
    if away is not None:
        table[away_local] = away[1]
    table[0] = 0
    np.testing.assert_array_equal(expected, table[labels])
    given = labels.copy()
    found = final_ids(given, ids, in_place=True)
    assert found is given and found.dtype == dtype
    np.testing.assert_array_equal(found, expected)
    strided = np.ascontiguousarray(np.repeat(labels, 2, axis=1))[:, ::2]  # not contiguous
    np.testing.assert_array_equal(final_ids(strided, ids, in_place=True), expected)
