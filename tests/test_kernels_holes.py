"""fill_holes and clear_border on the stitched labels, against scipy/skimage on the whole array."""

from __future__ import annotations

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.segmentation import clear_border

from pipeline.kernels import ClearBorder, FillHoles, KeepLargest
from pipeline.stitch import label
from tests.conftest import WORKFLOW_DATA, assert_same_partition


@st.composite
def masks(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, ...]]:
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(3, 40 if ndim == 2 else 12)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, s)) for s in shape)
    noise = np.random.default_rng(draw(st.integers(0, 2**31))).random(shape)
    smooth = ndimage.gaussian_filter(noise, draw(st.sampled_from([0.0, 1.0, 1.5])))
    return smooth > np.quantile(smooth, draw(st.floats(0.2, 0.7))), chunks


@settings(max_examples=40)
@given(masks(), st.sampled_from([1, 2, 3]))
def test_the_filled_foreground_equals_binary_fill_holes(
    case: tuple[np.ndarray, tuple[int, ...]], connectivity: int
) -> None:
    mask, chunks = case
    connectivity = min(connectivity, mask.ndim)
    with dask.config.set(scheduler="sync"):
        labels, num = label(da.from_array(mask, chunks=chunks), connectivity=connectivity)
        filled, count = FillHoles().finish(labels, num)
        result = filled.compute()
    before = labels.compute()
    np.testing.assert_array_equal(result > 0, ndimage.binary_fill_holes(mask))
    assert count == num
    np.testing.assert_array_equal(result[mask], before[mask])  # objects keep their ids
    if connectivity == mask.ndim:  # each hole lies inside one object, or holds islands
        holes = (result > 0) & ~mask
        lakes, _ = ndimage.label(holes)
        for lake in range(1, lakes.max() + 1):
            around = ndimage.binary_dilation(lakes == lake) & mask
            assert result[lakes == lake][0] == before[around].max()


def test_a_hole_across_many_chunks_is_filled_and_a_shared_one_takes_the_larger_id() -> None:
    image = np.zeros((60, 80), dtype=np.uint32)
    image[2:58, 2:40] = 1
    image[5:55, 5:37] = 0  # a hole of 50 x 32 inside object 1, across many 8 x 8 chunks
    image[10:20, 50:60] = 2
    image[10:20, 60:70] = 3
    image[13:17, 57:63] = 0  # a gap bordered by objects 2 and 3
    with dask.config.set(scheduler="threads"):
        filled, num = FillHoles().finish(da.from_array(image, chunks=8), 3)
        result = filled.compute()
    assert num == 3
    assert (result[2:58, 2:40] == 1).all()
    assert (result[13:17, 57:63] == 3).all()  # bordered by 2 and 3: the larger id
    assert (result[:, 40:][image[:, 40:] > 0] == image[:, 40:][image[:, 40:] > 0]).all()


def test_brain_mask_largest_component_with_holes_filled() -> None:
    volume = np.asarray(nib.load(WORKFLOW_DATA / "ch2bet.nii.gz").dataobj)
    mask = volume > threshold_otsu(volume)
    with dask.config.set(scheduler="threads"):
        labels, num = label(da.from_array(mask, chunks=(64, 80, 50)), connectivity=3)
        largest, one = KeepLargest().finish(labels, num)
        filled, still_one = FillHoles().finish(largest, one)
        result = filled.compute()
    whole, _ = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    biggest = whole == np.argmax(np.bincount(whole.ravel())[1:]) + 1
    reference = ndimage.binary_fill_holes(biggest)
    assert one == still_one == 1
    assert reference.sum() > biggest.sum()  # the volume has holes to fill
    np.testing.assert_array_equal(result > 0, reference)


@pytest.mark.parametrize("chunks", [(7, 9), (64, 64), (20, 33)])
def test_clear_border_equals_skimage(chunks: tuple[int, int]) -> None:
    noise = np.random.default_rng(5).random((64, 64))
    whole, _ = ndimage.label(ndimage.gaussian_filter(noise, 1.5) > 0.5)
    with dask.config.set(scheduler="threads"):
        labels, num = label(da.from_array(whole > 0, chunks=chunks))
        kept, count = ClearBorder().finish(labels, num)
        result = kept.compute()
    reference = clear_border(whole)
    assert 0 < count == len(np.unique(reference)) - 1 < num
    assert_same_partition(result, ndimage.label(reference > 0)[0])
