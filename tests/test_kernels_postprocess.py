"""Post-processing of stitched labels: whole objects, whatever the chunks cut."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from scipy import ndimage
from skimage.filters import threshold_otsu

from pipeline.data import sample_path
from pipeline.kernels import KeepLargest, RemoveSmall
from pipeline.workflow import Workflow, WorkflowError
from tests.conftest import assert_same_partition

LANDSAT = sample_path("L7_ETMs.tif")


def _without_small(labels: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    """Reference: drop objects under min_size pixels and renumber, with numpy only."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return np.where(keep[labels], labels, 0), int(keep.sum())


def test_an_object_cut_by_seams_keeps_its_whole_size() -> None:
    image = np.zeros((16, 16), dtype=np.uint32)
    image[3:13, 3:13] = 1  # 100 pixels, in four chunks of at most 25 pixels each
    image[0, 15] = 2  # 1 pixel
    labels = da.from_array(image, chunks=8)
    kept, num = RemoveSmall(min_size=60).finish(labels, 2)
    assert num == 1
    np.testing.assert_array_equal(kept.compute(), (image == 1).astype(np.uint32))


@pytest.mark.cluster
@pytest.mark.parametrize("min_size", [1, 5, 40])
def test_remove_small_after_stitching_equals_the_whole_image(
    cluster_client: object, tmp_path: Path, min_size: int
) -> None:
    flow = Workflow(
        source={"path": str(LANDSAT), "bands": [5]},
        steps=[
            {"threshold": {"foreground": "below"}},
            {"label": {"connectivity": 2}},
            {"remove_small": {"min_size": min_size}},
        ],
        output=str(tmp_path / "water.zarr"),
        chunks=64,
    )
    result = flow.run(cluster_client)

    with rasterio.open(LANDSAT) as src:
        band = src.read(5)
    whole, _ = ndimage.label(band <= threshold_otsu(band), np.ones((3, 3)))
    reference, count = _without_small(whole, min_size)
    assert result.num == count
    assert_same_partition(result.labels.compute(), reference)


@pytest.mark.parametrize(
    "steps",
    [
        ["threshold", {"remove_small": {"min_size": 5}}, "label"],
        ["threshold", "label", "label"],
        ["threshold", "label", "threshold"],
    ],
)
def test_post_processing_comes_after_the_one_label_step(steps: list) -> None:
    with pytest.raises(WorkflowError, match="end with one label step"):
        Workflow(source="a.tif", steps=steps, output="o.zarr")


def test_min_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RemoveSmall(min_size=0)


def test_keep_largest_keeps_the_largest_object_across_seams() -> None:
    rng = np.random.default_rng(9)
    mask = ndimage.gaussian_filter(rng.random((90, 70)), 3) > 0.52
    whole, num = ndimage.label(mask)
    sizes = np.bincount(whole.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    labels = da.from_array(whole.astype(np.uint32), chunks=(17, 23))
    kept, count = KeepLargest().finish(labels, num)
    assert count == 1
    np.testing.assert_array_equal(kept.compute(), (whole == largest).astype(np.uint32))
    empty, none = KeepLargest().finish(da.zeros((8, 8), dtype=np.uint32, chunks=4), 0)
    assert none == 0 and not empty.compute().any()


@pytest.mark.parametrize("spread", [10, 10**6])
def test_object_sizes_count_every_id_in_narrow_and_wide_chunks(spread: int) -> None:
    from pipeline.kernels._postprocess import object_sizes

    rng = np.random.default_rng(spread)
    ids = rng.integers(0, 50, size=(96, 80)).astype(np.int64)
    ids[ids > 0] += rng.integers(0, spread, size=1)[0]  # some chunks hold far ids only
    ids[5:9, 70:80] = spread + 49  # a wide range inside one chunk
    labels = da.from_array(ids.astype(np.uint32), chunks=(32, 40))
    expected = np.bincount(ids.ravel())
    sizes = object_sizes(labels, int(ids.max()))
    assert sizes.dtype == np.int64
    np.testing.assert_array_equal(sizes[expected.nonzero()], expected[expected.nonzero()])
    assert sizes.sum() == ids.size
