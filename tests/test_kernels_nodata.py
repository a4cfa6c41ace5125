"""mask_nodata, and the global fits after it: NaN is left out, and never foreground."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from pydantic import ValidationError
from skimage.filters import threshold_multiotsu, threshold_otsu

from pipeline.data import sample_path
from pipeline.kernels._classes import MultiOtsu
from pipeline.kernels._nodata import MaskNodata
from pipeline.kernels._preprocess import Normalize
from pipeline.kernels._threshold import Threshold
from tests.conftest import DATA
from tests.test_kernels_preprocess import run_chunked

LANDSAT = sample_path("L7_ETMs.tif")
NUCLEI = sample_path("nuclei.tif")
AERIAL = DATA / "rmnp-rgb.tif"  # nodata = 255
CHUNKS_2D = [(1000, 1000), (64, 100), (37, 29), (13, 11)]


def _aerial() -> np.ndarray:
    with rasterio.open(AERIAL) as src:
        return np.asarray(src.read())[:, :200, :240]


def _landsat() -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read())[:, :150, :120]


def _with_nan(values: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    out = values.astype(np.float32)
    out[np.broadcast_to(nodata, values.shape)] = np.nan
    return out


# --- the step -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", CHUNKS_2D)
def test_fill_values_are_nodata_in_every_band(chunks: tuple[int, int]) -> None:
    values = _aerial()
    result, _, mapped = run_chunked(values, chunks, [MaskNodata(values=[255])])
    assert mapped.dtype == result.dtype == np.float32
    nodata = (values == 255).any(axis=0)
    assert nodata.sum() > 1000  # the crop holds nodata, and partly-filled pixels
    assert ((values == 255).any(axis=0) != (values == 255).all(axis=0)).any()
    np.testing.assert_array_equal(result, _with_nan(values, nodata))


def test_per_band_nodata_values_and_range() -> None:
    values = _landsat()
    step = MaskNodata(values=[0, 87], valid_range=(20, 200), any_band=False)
    result, _, _ = run_chunked(values, (37, 29), [step])
    nodata = (values == 0) | (values == 87) | (values < 20) | (values > 200)
    assert 0 < nodata.sum() < nodata.size and not np.array_equal(nodata[0], nodata[1])
    np.testing.assert_array_equal(result, _with_nan(values, nodata))


def test_nan_stays_nodata_and_the_range_ends_are_valid() -> None:
    values = np.array([[[np.nan, 1.0, 2.0, 3.0, 4.0]], [[2, 2, 2, 2, np.nan]]])
    result = MaskNodata(valid_range=(1, 3)).apply(values, None)
    expected = np.array([[[np.nan, 1, 2, 3, np.nan]], [[np.nan, 2, 2, 2, np.nan]]])
    np.testing.assert_array_equal(result, expected.astype(np.float32))
    result = MaskNodata(any_band=False).apply(values, None)
    np.testing.assert_array_equal(result, values.astype(np.float32))


def test_values_are_compared_in_the_image_dtype() -> None:
    values = np.array([[[65535, 65534, 3]]], dtype=np.uint16)  # 65535 != 65534 in float32 too
    result = MaskNodata(values=[65535]).apply(values, None)
    np.testing.assert_array_equal(result, np.array([[[np.nan, 65534, 3]]], dtype=np.float32))
    floats = np.array([[[-9999.0, 0.1, 0.2]]])  # 0.1 as float64, kept as float64
    result = MaskNodata(values=[0.1, -9999]).apply(floats, None)
    np.testing.assert_array_equal(result, np.array([[[np.nan, np.nan, 0.2]]]))
    wide = np.array([[[2**31 - 1, 2**24 + 1, 7]]], dtype=np.int32)  # beyond float32's integers
    result = MaskNodata(values=[7]).apply(wide, None)
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, [[[2**31 - 1, 2**24 + 1, np.nan]]])


def test_3d_valid_range() -> None:
    values = np.asarray(tifffile.imread(NUCLEI)[20:40, 100:160, 90:150])[None]
    result, _, _ = run_chunked(values, (7, 13, 11), [MaskNodata(valid_range=(1000, 20000))])
    nodata = (values < 1000) | (values > 20000)
    assert 0 < nodata.sum() < nodata.size
    np.testing.assert_array_equal(result, _with_nan(values, nodata))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"valid_range": (5, 1)}, r"valid_range\n.*\[5.0, 1.0\] is empty; give \[low, high\]"),
        ({"valid_range": (1, 2, 3)}, "valid_range"),
        ({"values": ["nodata"]}, "values.0"),
        ({"values": 0}, "values"),
        ({"nodata": 0}, "nodata\n.*Extra inputs are not permitted"),
    ],
)
def test_bad_parameters_fail_at_construction(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MaskNodata(**params)


# --- fits after it ignore NaN -----------------------------------------------------------------


def _band_with_nodata() -> tuple[np.ndarray, np.ndarray]:
    """Aerial band 1 and its nodata, with whole chunks of nodata in the corner."""
    values = _aerial()[:1]
    values[0, :40, :60] = 255
    return values, values[0] == 255


@pytest.mark.parametrize("chunks", CHUNKS_2D)
@pytest.mark.parametrize("foreground", ["above", "below"])
def test_otsu_after_mask_nodata_fits_the_valid_pixels(
    chunks: tuple[int, int], foreground: str
) -> None:
    values, nodata = _band_with_nodata()
    steps = [MaskNodata(values=[255]), Threshold(method="otsu", foreground=foreground)]
    result, states, _ = run_chunked(values, chunks, steps)
    valid = values[0][~nodata]  # fitted in the image's own type: the exact histogram
    assert states[1] == threshold_otsu(valid)
    assert states[1] != threshold_otsu(values[0])  # 255 would move it
    assert not result[nodata].any()
    kept = values[0] > states[1] if foreground == "above" else values[0] <= states[1]
    np.testing.assert_array_equal(result, kept & ~nodata)


@pytest.mark.parametrize("chunks", [(1000, 1000), (37, 29)])
def test_multi_otsu_after_mask_nodata_fits_the_valid_pixels_and_gives_them_class_0(
    chunks: tuple[int, int],
) -> None:
    values, nodata = _band_with_nodata()
    result, states, _ = run_chunked(values, chunks, [MaskNodata(values=[255]), MultiOtsu()])
    expected = threshold_multiotsu(values[0][~nodata], classes=3)  # in the image's own type
    np.testing.assert_array_equal(states[1], expected)
    np.testing.assert_array_equal(result[nodata], 0)
    np.testing.assert_array_equal(result[~nodata], np.digitize(values[0][~nodata], expected) + 1)


def test_normalize_after_mask_nodata_fits_the_valid_pixels() -> None:
    values, nodata = _band_with_nodata()
    steps = [MaskNodata(values=[255]), Normalize(low=2, high=98)]
    result, states, _ = run_chunked(values, (37, 29), steps)
    valid = values[0][~nodata]
    lo, hi = states[1]
    half_bin = (valid.max() - valid.min()) / 2**17 * (1 + 1e-9)
    assert abs(lo[0] - np.percentile(valid, 2, method="inverted_cdf")) <= half_bin
    assert abs(hi[0] - np.percentile(valid, 98, method="inverted_cdf")) <= half_bin
    assert np.isnan(result[0][nodata]).all() and not np.isnan(result[0][~nodata]).any()


def test_an_image_of_nodata_only_cannot_be_fitted() -> None:
    values = np.full((1, 20, 20), 255, dtype=np.uint8)
    with pytest.raises(ValueError, match="no valid pixels"):
        run_chunked(values, (10, 10), [MaskNodata(values=[255]), Threshold()])
    data = da.from_array(np.full((1, 4, 4), np.nan, dtype=np.float32), chunks=2)
    with pytest.raises(ValueError, match="no valid pixels"):
        MultiOtsu().fit(data, None)
