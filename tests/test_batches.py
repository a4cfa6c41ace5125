"""Work over chunks goes to the scheduler in batches and gives the whole-image answer.

Every check runs with ``segpipe.batch-size`` small enough that the chunks are
split over several batches, and compares with numpy / scikit-image on the
whole array.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.callbacks import Callback
from skimage.filters import threshold_otsu

from pipeline._batches import block_regions, compute_batched, reduce_blocks, store_batched
from pipeline.kernels import Normalize, Threshold
from pipeline.kernels._postprocess import border_ids, object_sizes
from pipeline.kernels._reductions import add

BINS = np.linspace(0, 1, 17)


class _Graphs(Callback):
    """The number of tasks in every graph the local scheduler runs."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def _start(self, dsk: Any) -> None:
        self.sizes.append(len(dsk))


@pytest.fixture(autouse=True)
def _batches_of_three() -> Iterator[None]:
    with dask.config.set({"segpipe.batch-size": 3, "scheduler": "sync"}):
        yield


def _histogram(block: np.ndarray) -> np.ndarray:
    return np.histogram(block, bins=BINS)[0]


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def test_summed_block_histograms_equal_the_whole_arrays() -> None:
    values = _image((23, 40))
    data = da.from_array(values, chunks=(5, 6))
    assert data.numblocks == (5, 7)
    with _Graphs() as graphs:
        counts = reduce_blocks(_histogram, [data], add)
    np.testing.assert_array_equal(counts, np.histogram(values, bins=BINS)[0])
    assert len(graphs.sizes) == 12  # 35 chunks, 3 at a time
    assert max(graphs.sizes) <= 3 * 3  # a batch's chunks: read, histogram, combine


def test_a_block_is_read_and_reduced_in_one_task(tmp_path: Path) -> None:
    values = _image((23, 40))
    stored = zarr.create_array(
        tmp_path / "image.zarr", shape=values.shape, chunks=(5, 6), dtype="f8"
    )
    stored[...] = values
    data = da.from_zarr(str(tmp_path / "image.zarr"))
    with _Graphs() as graphs:
        counts = reduce_blocks(_histogram, [data], add)
    np.testing.assert_array_equal(counts, np.histogram(values, bins=BINS)[0])
    # Per batch: a task per chunk (read, then histogram), the zarr array, one combine.
    assert graphs.sizes == [3 + 1 + 1] * 11 + [2 + 1 + 1]


def test_one_block_is_reduced_too() -> None:
    values = _image((23, 40))
    counts = reduce_blocks(_histogram, [da.from_array(values, chunks=-1)], add)
    np.testing.assert_array_equal(counts, np.histogram(values, bins=BINS)[0])


def test_blocks_of_several_arrays_meet_at_the_same_place() -> None:
    values, mask = _image((23, 40)), _image((23, 40), seed=1) > 0.3
    arrays = [da.from_array(values, chunks=(5, 6)), da.from_array(mask, chunks=(5, 6))]
    counts = reduce_blocks(lambda block, keep: _histogram(block[keep]), arrays, add)
    np.testing.assert_array_equal(counts, np.histogram(values[mask], bins=BINS)[0])
    with pytest.raises(ValueError, match="one block grid"):
        reduce_blocks(_histogram, [arrays[0], da.from_array(mask, chunks=(5, 5))], add)


def test_compute_batched_keeps_the_order() -> None:
    parts = [dask.delayed(lambda i: i * i, pure=True)(i) for i in range(11)]
    with _Graphs() as graphs:
        results = compute_batched(parts)
    assert results == [i * i for i in range(11)]
    assert len(graphs.sizes) == 4


def test_a_20_by_20_grid_in_batches_of_50_equals_the_whole_array() -> None:
    values = _image((100, 120), seed=2)
    data = da.from_array(values, chunks=(5, 6))
    assert data.numblocks == (20, 20)
    with dask.config.set({"segpipe.batch-size": 50}), _Graphs() as graphs:
        counts = reduce_blocks(_histogram, [data], add)
    np.testing.assert_array_equal(counts, np.histogram(values, bins=BINS)[0])
    assert len(graphs.sizes) == 8  # 400 chunks, 50 at a time
    assert max(graphs.sizes) <= 3 * 50


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("nodata", [False, True])
def test_an_otsu_threshold_fitted_in_batches_equals_skimage(dtype: Any, nodata: bool) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(60, 10, (23, 20)), rng.normal(170, 20, (23, 20))], 1)
    image = np.clip(values, 0, 255).astype(dtype)
    valid = rng.random(image.shape) > 0.2 if nodata else np.ones(image.shape, bool)
    data = da.from_array(image, chunks=(5, 6))[None]
    mask = da.from_array(valid, chunks=(5, 6)) if nodata else None
    assert Threshold(method="otsu").fit(data, mask) == threshold_otsu(image[valid])


@pytest.mark.parametrize("nodata", [False, True])
def test_normalize_fitted_in_batches_equals_numpy_percentiles(nodata: bool) -> None:
    rng = np.random.default_rng(4)
    image = rng.integers(-500, 3000, (2, 23, 40)).astype(np.int16)
    valid = rng.random(image.shape[1:]) > 0.2 if nodata else np.ones(image.shape[1:], bool)
    data = da.from_array(image, chunks=(1, 5, 6))
    mask = da.from_array(valid, chunks=(5, 6)) if nodata else None
    lo, hi = Normalize(low=2, high=98).fit(data, mask)
    for band in range(2):
        kept = image[band][valid]
        assert lo[band] == np.percentile(kept, 2, method="inverted_cdf")
        assert hi[band] == np.percentile(kept, 98, method="inverted_cdf")


def test_object_sizes_and_border_ids_in_batches_equal_numpy() -> None:
    labels = np.random.default_rng(5).integers(0, 30, (23, 40)).astype(np.int32)
    data = da.from_array(labels, chunks=(5, 6))
    np.testing.assert_array_equal(object_sizes(data, 29), np.bincount(labels.ravel(), minlength=30))
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    np.testing.assert_array_equal(border_ids(data), np.unique(border))


@pytest.mark.parametrize(
    ("chunks", "size"),
    [(((2, 2, 2), (3, 3)), 4), (((2, 2), (3, 3, 3)), 2), (((4,) * 5, (3,) * 7, (2,) * 3), 10)],
)
def test_block_regions_cover_the_grid_once_in_small_pieces(
    chunks: tuple[tuple[int, ...], ...], size: int
) -> None:
    shape = tuple(sum(sizes) for sizes in chunks)
    seen = np.zeros(shape, dtype=int)
    blocks = da.zeros(shape, chunks=chunks)
    for region in block_regions(chunks, size):
        seen[region] += 1
        assert 1 <= int(np.prod(blocks[region].numblocks)) <= size
    np.testing.assert_array_equal(seen, 1)


def test_store_batched_writes_what_store_writes(tmp_path: Path) -> None:
    source = da.from_array(np.arange(35 * 48).reshape(35, 48), chunks=(8, 10))
    target = zarr.create_array(tmp_path / "x.zarr", shape=source.shape, chunks=(8, 10), dtype=int)
    store_batched([source], [target])
    np.testing.assert_array_equal(target[...], source.compute())
