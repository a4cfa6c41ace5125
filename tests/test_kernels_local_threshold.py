"""Local (adaptive) thresholds in chunks against ``skimage.filters.threshold_local`` on the
whole array."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from pydantic import ValidationError
from scipy import ndimage
from skimage.filters import threshold_local

from pipeline.data import sample_path
from pipeline.errors import InputValueError
from pipeline.kernels._smooth import Gaussian
from pipeline.kernels._threshold import Threshold, local_reach
from tests.test_kernels_preprocess import run_chunked

LANDSAT = sample_path("L7_ETMs.tif")
NUCLEI = sample_path("nuclei.tif")
CHUNKS_2D = [(1000, 1000), (41, 31), (11, 13), (5, 7)]  # on 120 x 90
CHUNKS_3D = [(1000, 1000, 1000), (7, 13, 11), (10, 20, 30)]  # on 20 x 60 x 60


def _band(number: int) -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read(number))[:120, :90]


def _nuclei() -> np.ndarray:
    return np.asarray(tifffile.imread(NUCLEI)[20:40, 100:160, 90:150])  # uint16


def _reference(image: np.ndarray, step: Threshold) -> np.ndarray:
    assert step.block_size is not None
    local = threshold_local(
        image, step.block_size, step.local_method, offset=step.offset, mode="reflect"
    )
    return image > local if step.foreground == "above" else image <= local


def _below_the_halo(image: np.ndarray, step: Threshold, chunks: tuple[int, ...]) -> bool:
    sizes = da.from_array(image, chunks=chunks).chunks
    return any(min(s) < h and len(s) > 1 for s, h in zip(sizes, step.halo(image.ndim), strict=True))


def _check_exact(image: np.ndarray, step: Threshold, chunks: tuple[int, ...]) -> None:
    if _below_the_halo(image, step, chunks):
        with pytest.raises(InputValueError, match="smaller than the halo"):
            run_chunked(image[None], chunks, [step])
        return
    result, states, mapped = run_chunked(image[None], chunks, [step])
    assert states == [None]  # nothing is fitted globally
    assert mapped.dtype == result.dtype == bool
    np.testing.assert_array_equal(result, _reference(image, step))


# --- gaussian and median: exactly skimage -------------------------------------------------


@pytest.mark.parametrize("chunks", CHUNKS_2D)
@pytest.mark.parametrize(
    "params",
    [
        {"local_method": "gaussian", "block_size": 3},
        {"local_method": "gaussian", "block_size": 21, "offset": -2.5},
        {"local_method": "median", "block_size": 7, "foreground": "below"},
        {"local_method": "median", "block_size": 15, "offset": 3},
    ],
)
def test_2d_gaussian_and_median_equal_skimage(params: dict, chunks: tuple[int, int]) -> None:
    _check_exact(_band(4), Threshold(method="local", **params), chunks)


@pytest.mark.parametrize("chunks", CHUNKS_3D)
@pytest.mark.parametrize(
    "params",
    [
        {"local_method": "gaussian", "block_size": 7, "offset": -40},
        {"local_method": "median", "block_size": 5, "foreground": "below"},
    ],
)
def test_3d_gaussian_and_median_equal_skimage(params: dict, chunks: tuple[int, ...]) -> None:
    _check_exact(_nuclei(), Threshold(method="local", **params), chunks)


def test_float32_after_a_gaussian_step_equals_skimage() -> None:
    image = _band(3)
    step = Threshold(method="local", block_size=11, offset=0.25)
    result, _, _ = run_chunked(image[None], (30, 45), [Gaussian(sigma=1.0), step])
    smoothed = ndimage.gaussian_filter(image.astype(np.float32), 1.0, mode="reflect")
    np.testing.assert_array_equal(result, _reference(smoothed, step))


# --- mean: exact sums; skimage's running sum differs only on ties ---------------------------


def _window_sums(image: np.ndarray, size: int) -> np.ndarray:
    """Exact int64 sums of each ``size`` wide window of the symmetric-padded image."""
    sums = np.pad(image.astype(np.int64), size // 2, mode="symmetric")
    for axis in range(image.ndim):
        cumulative = np.cumsum(sums, axis=axis)
        cumulative = np.concatenate([np.zeros_like(cumulative.take([0], axis)), cumulative], axis)
        length = cumulative.shape[axis]
        sums = cumulative.take(range(size, length), axis) - cumulative.take(
            range(length - size), axis
        )
    return sums


def _exact_mean_mask(image: np.ndarray, size: int, offset: int) -> np.ndarray:
    """``image > mean - offset`` in integers."""
    count = size**image.ndim
    return image.astype(np.int64) * count > _window_sums(image, size) - offset * count


@pytest.mark.parametrize("chunks", CHUNKS_2D)
@pytest.mark.parametrize(("size", "offset"), [(3, 0), (7, 2), (21, -1)])
def test_2d_mean_equals_exact_arithmetic(size: int, offset: int, chunks: tuple[int, int]) -> None:
    image = _band(4)
    step = Threshold(method="local", block_size=size, local_method="mean", offset=offset)
    if _below_the_halo(image, step, chunks):
        with pytest.raises(InputValueError, match="smaller than the halo"):
            run_chunked(image[None], chunks, [step])
        return
    result, _, _ = run_chunked(image[None], chunks, [step])
    np.testing.assert_array_equal(result, _exact_mean_mask(image, size, offset))


@pytest.mark.parametrize("chunks", CHUNKS_3D)
def test_3d_mean_equals_exact_arithmetic(chunks: tuple[int, ...]) -> None:
    image = _nuclei()
    step = Threshold(method="local", block_size=5, local_method="mean", offset=-30)
    result, _, _ = run_chunked(image[None], chunks, [step])
    np.testing.assert_array_equal(result, _exact_mean_mask(image, 5, -30))


@pytest.mark.parametrize(("band", "size"), [(4, 3), (1, 5), (6, 15)])
def test_mean_differs_from_skimage_only_on_ties(band: int, size: int) -> None:
    # uniform_filter's running sum is off by ~1e-14 depending on where the line starts,
    # which flips pixels equal to their window's mean; exact sums make them background.
    image = _band(band)
    step = Threshold(method="local", block_size=size, local_method="mean")
    result, _, _ = run_chunked(image[None], (41, 31), [step])
    ties = image.astype(np.int64) * size**2 == _window_sums(image, size)
    assert not result[ties].any()
    differ = result != (image > threshold_local(image, size, "mean", mode="reflect"))
    assert np.all(ties[differ]), "a pixel that is not a tie differs from skimage"


def test_mean_of_a_float32_image_differs_from_skimage_only_within_float32_rounding() -> None:
    image = np.random.default_rng(5).normal(100, 20, (1, 69, 80)).astype(np.float32)
    step = Threshold(method="local", block_size=9, local_method="mean", offset=1.5)
    result, _, _ = run_chunked(image, (23, 27), [step])
    skimage_local = threshold_local(image[0], 9, "mean", offset=1.5, mode="reflect")
    differ = result != (image[0] > skimage_local)
    close = np.isclose(image[0], skimage_local, rtol=1e-6, atol=0)
    assert np.all(close[differ])


# --- halo ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gaussian", "mean"])
@pytest.mark.parametrize("size", [3, 5, 7, 21, 35])
def test_the_halo_is_how_far_an_impulse_reaches(method: str, size: int) -> None:
    impulse = np.zeros(201)
    impulse[100] = 1
    reached = np.flatnonzero(threshold_local(impulse, size, method, mode="reflect"))
    assert reached[-1] - 100 == 100 - reached[0] == local_reach(size, method)
    assert (
        Threshold(method="local", block_size=size, local_method=method).halo(3)
        == (local_reach(size, method),) * 3
    )


def test_the_halo_of_gaussian_35_and_median_are_those_of_their_windows() -> None:
    assert Threshold(method="local", block_size=35).halo(2) == (23, 23)
    assert Threshold(method="local", block_size=35, local_method="median").halo(2) == (17, 17)
    assert Threshold(method="otsu").halo(2) == (0, 0)


def test_local_needs_a_single_band() -> None:
    step = Threshold(method="local", block_size=3)
    with pytest.raises(InputValueError, match="threshold needs a single band; the image has 2"):
        step.fit(da.zeros((2, 8, 8), chunks=4), None)


# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "local"}, "method 'local' needs block_size"),
        ({"method": "local", "block_size": 4}, "block_size 4 is even.*use 3 or 5"),
        ({"method": "local", "block_size": 1}, "block_size\n.*greater than or equal to 3"),
        ({"method": "otsu", "block_size": 5}, "block_size is only for method 'local', not 'otsu'"),
        ({"method": "manual", "value": 3, "offset": 2}, "offset is only for method 'local'"),
        ({"local_method": "mean"}, "local_method is only for method 'local', not 'otsu'"),
        ({"method": "local", "block_size": 5, "local_method": "max"}, "local_method"),
        ({"method": "local", "block_size": 5, "value": 2}, "value is only for method 'manual'"),
    ],
)
def test_bad_local_parameters_fail_at_construction(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Threshold(**params)
