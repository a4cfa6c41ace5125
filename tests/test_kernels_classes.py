"""Class maps: multi-Otsu classes, global and labelled per class across seams."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from scipy import ndimage
from skimage.filters import threshold_multiotsu

import pipeline
from pipeline.data import sample_path
from pipeline.kernels import MultiOtsu
from pipeline.workflow import Workflow
from tests.conftest import assert_same_partition

LANDSAT = sample_path("L7_ETMs.tif")


def _band(number: int) -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return src.read(number)


@pytest.mark.parametrize("classes", [2, 3, 4])
@pytest.mark.parametrize("chunks", [(352, 349), (64, 101), (17, 349)])
def test_thresholds_equal_skimage_on_the_whole_image(classes: int, chunks: tuple) -> None:
    band = _band(4)
    data = da.from_array(band, chunks=chunks)[None]
    fitted = MultiOtsu(classes=classes).fit(data, None)
    np.testing.assert_array_equal(fitted, threshold_multiotsu(band, classes=classes))


def test_nodata_is_left_out_of_the_fit() -> None:
    band = _band(5)
    valid = np.ones(band.shape, dtype=bool)
    valid[:100] = False
    fitted = MultiOtsu().fit(da.from_array(band, chunks=64)[None], da.from_array(valid, chunks=64))
    np.testing.assert_array_equal(fitted, threshold_multiotsu(band[valid]))


def test_sixteen_bit_scans_are_regrouped_into_256_bins() -> None:
    stack = tifffile.imread(sample_path("nuclei.tif"))
    fitted = MultiOtsu().fit(da.from_array(stack, chunks=(20, 128, 128))[None], None)
    as_float = stack.astype(np.float64)  # skimage bins floats in 256 bins over the range
    expected = threshold_multiotsu(as_float)
    width = (stack.max() - stack.min()) / 256
    assert np.all(np.abs(fitted - expected) <= width)


def test_too_few_values_and_bad_parameters_are_refused() -> None:
    two_values = da.from_array(np.array([[0, 0, 9, 9]], dtype=np.uint8), chunks=2)[None]
    with pytest.raises(pipeline.InputValueError, match="2 distinct values, too few for 3"):
        MultiOtsu(classes=3).fit(two_values, None)
    with pytest.raises(ValueError, match="greater than or equal to 2"):
        MultiOtsu(classes=1)


@pytest.mark.cluster
def test_class_map_workflow_labels_each_class_like_the_whole_image(
    cluster_client: object, tmp_path: Path
) -> None:
    flow = Workflow(
        source={"path": str(LANDSAT), "bands": [4]},
        steps=[{"multi_otsu": {"classes": 3}}, {"label": {"connectivity": 1}}],
        output=str(tmp_path / "classes.zarr"),
        chunks=[64, 100],
    )
    result = flow.run(cluster_client)

    band = _band(4)
    classes = np.digitize(band, bins=threshold_multiotsu(band, classes=3)) + 1
    reference = np.zeros(band.shape, dtype=np.int64)
    count = 0
    for value in (1, 2, 3):
        part, found = ndimage.label(classes == value)
        reference[part > 0] = part[part > 0] + count
        count += found
    assert result.num == count
    assert_same_partition(result.labels.compute(), reference)
    fitted = result.record["fitted"]["multi_otsu(classes=3)"]
    np.testing.assert_array_equal(fitted, threshold_multiotsu(band, classes=3))
