"""Pre-processing steps, chunked through the fused map, against whole-image numpy/scipy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import rasterio
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import ndimage
from skimage.filters import threshold_otsu

from pipeline.data import sample_path
from pipeline.errors import InputValueError
from pipeline.kernels import Step
from pipeline.kernels._preprocess import Expression, Median, Normalize, Window
from pipeline.workflow._fuse import check_chunks, fit_steps, map_steps, total_halo
from tests.conftest import assert_same_partition

LANDSAT = sample_path("L7_ETMs.tif")
CHUNKS_2D = [(1000, 1000), (37, 29), (64, 100), (5, 7)]
CHUNKS_3D = [(1000, 1000, 1000), (7, 13, 11), (16, 32, 20)]


def run_chunked(
    values: np.ndarray, chunks: tuple[int, ...], steps: list[Step], valid: np.ndarray | None = None
) -> tuple[np.ndarray, list[Any], da.Array]:
    """Fit and map ``steps`` on ``values`` (band axis first), chunked spatially by ``chunks``."""
    data = da.from_array(values, chunks=(values.shape[0], *chunks))
    mask = None if valid is None else da.from_array(valid, chunks=chunks)
    halo = total_halo(steps, data.ndim - 1)
    check_chunks(data, steps, halo)
    states = fit_steps(data, steps, mask)
    mapped = map_steps(data, steps, states, halo)
    return mapped.compute(), states, mapped


def _landsat() -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read())


# --- median -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", CHUNKS_2D)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_median_2d_equals_scipy_on_the_whole_image(chunks: tuple[int, int], size: int) -> None:
    values = _landsat()[:, :120, :90]
    if size // 2 > min(chunks):
        with pytest.raises(InputValueError, match="smaller than the halo"):
            run_chunked(values, chunks, [Median(size=size)])
        return
    result, _, mapped = run_chunked(values, chunks, [Median(size=size)])
    reference = ndimage.median_filter(values, size=(1, size, size), mode="reflect")
    assert mapped.dtype == result.dtype == np.float32
    np.testing.assert_array_equal(result, reference.astype(np.float32))


@pytest.mark.parametrize("chunks", CHUNKS_3D)
def test_median_3d_float_equals_scipy(chunks: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(2, 30, 40, 35)).astype(np.float32)
    result, _, _ = run_chunked(values, chunks, [Median(size=3)])
    reference = ndimage.median_filter(values, size=(1, 3, 3, 3), mode="reflect")
    np.testing.assert_array_equal(result, reference)


def test_median_with_chunks_of_one_pixel() -> None:
    values = np.random.default_rng(2).integers(0, 50, (1, 9, 8)).astype(np.int16)
    result, _, _ = run_chunked(values, (1, 1), [Median(size=3)])
    reference = ndimage.median_filter(values, size=(1, 3, 3), mode="reflect")
    np.testing.assert_array_equal(result, reference.astype(np.float32))


# --- normalize ------------------------------------------------------------------------------


def _inverted_cdf(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q, method="inverted_cdf"))


@pytest.mark.parametrize("chunks", CHUNKS_2D)
def test_normalize_uint8_percentiles_equal_numpy_with_nodata(chunks: tuple[int, int]) -> None:
    values = _landsat()
    valid = np.ones(values.shape[1:], dtype=bool)
    valid[::3, ::7] = False
    valid[:40] = False
    values[:, :40] = 255  # nodata fill: must not move the percentiles
    step = Normalize(low=2, high=98)
    result, states, _ = run_chunked(values, chunks, [step], valid)
    lo, hi = states[0]
    for band in range(values.shape[0]):
        assert lo[band] == _inverted_cdf(values[band][valid], 2)
        assert hi[band] == _inverted_cdf(values[band][valid], 98)
    l32, h32 = lo.astype(np.float32)[:, None, None], hi.astype(np.float32)[:, None, None]
    reference = np.clip((values.astype(np.float32) - l32) / (h32 - l32), 0, 1)
    np.testing.assert_array_equal(result, reference)


@given(
    q=st.lists(st.floats(0, 100), min_size=2, max_size=2, unique=True).map(sorted),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**16),
)
def test_normalize_int16_percentiles_equal_numpy_for_any_q(
    q: list[float], n: int, seed: int
) -> None:
    values = np.random.default_rng(seed).integers(-300, 300, (1, n, 3)).astype(np.int16)
    data = da.from_array(values, chunks=(1, 17, 2))
    lo, hi = Normalize(low=q[0], high=q[1]).fit(data, None)
    assert lo[0] == _inverted_cdf(values, q[0])
    assert hi[0] == _inverted_cdf(values, q[1])


@pytest.mark.parametrize("chunks", CHUNKS_3D)
def test_normalize_float_within_half_a_bin_of_numpy_with_nodata(
    chunks: tuple[int, int, int],
) -> None:
    rng = np.random.default_rng(3)
    values = rng.lognormal(0, 1.5, (2, 20, 30, 25))
    values[1] *= -7
    valid = rng.random(values.shape[1:]) > 0.2
    values[:, ~valid] = 1e9  # nodata fill, far outside the data
    values[0, 0, 0, 0] = np.nan  # non-finite values are not data either
    valid_finite = valid.copy()
    valid_finite[0, 0, 0] = False
    step = Normalize(low=1, high=99.5, clip=False)
    result, states, _ = run_chunked(values, chunks, [step], valid)
    lo, hi = states[0]
    for band in range(2):
        kept = values[band][valid_finite]
        half_bin = (kept.max() - kept.min()) / 2**17 * (1 + 1e-9)
        assert abs(lo[band] - _inverted_cdf(kept, 1)) <= half_bin
        assert abs(hi[band] - _inverted_cdf(kept, 99.5)) <= half_bin
    l32, h32 = (s.astype(np.float32)[:, None, None, None] for s in (lo, hi))
    reference = (values.astype(np.float32) - l32) / (h32 - l32)
    np.testing.assert_array_equal(result, reference)


def test_normalize_constant_band_and_no_valid_pixels() -> None:
    values = np.full((1, 10, 10), 4.5)
    (lo, hi), result = Normalize().fit(da.from_array(values, chunks=4), None), None
    assert lo[0] == hi[0] == 4.5
    result = Normalize().apply(values, (lo, hi))
    np.testing.assert_array_equal(result, np.zeros_like(values, dtype=np.float32))
    with pytest.raises(InputValueError, match="no valid pixels"):
        Normalize().fit(da.from_array(values), da.zeros((10, 10), dtype=bool))


# --- expression ---------------------------------------------------------------------------


def _ndvi(values: np.ndarray) -> np.ndarray:
    b4, b3 = values[3].astype(np.float32), values[2].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (b4 - b3) / (b4 + b3)
    return np.where(b4 + b3 == 0, np.float32(np.nan), ndvi)[None]


@pytest.mark.parametrize("chunks", CHUNKS_2D)
def test_ndvi_on_landsat_equals_numpy(chunks: tuple[int, int]) -> None:
    values = _landsat()
    result, _, _ = run_chunked(values, chunks, [Expression(expression="(b4 - b3) / (b4 + b3)")])
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, _ndvi(values))


def test_ndvi_output_is_declared_as_one_band() -> None:
    data = da.from_array(_landsat(), chunks=(6, 100, 100))
    step = Expression(expression="(b4 - b3) / (b4 + b3)")
    mapped = map_steps(data, [step], fit_steps(data, [step], None), (0, 0))
    assert mapped.shape == (1, *data.shape[1:])


def test_division_by_zero_is_nan_silently() -> None:
    values = np.array([[[0, 1, 0, 3]], [[0, 0, 2, 1]]], dtype=np.uint8)
    result, _, _ = run_chunked(values, (1, 3), [Expression(expression="(b2 - b1) / (b2 + b1)")])
    np.testing.assert_array_equal(result, _ndvi(np.stack([values[0]] * 2 + [values[0], values[1]])))
    np.testing.assert_array_equal(result[0, 0], np.float32([np.nan, -1, 1, -0.5]))


@pytest.mark.parametrize(
    ("expression", "reference"),
    [
        ("-b1 + 2 * b2 ** 2 - 2 ** -1", lambda b: -b[0] + 2 * b[1] ** 2 - 0.5),
        (
            "sqrt(abs(b1 - b2)) + exp(b2 / 100)",
            lambda b: np.sqrt(abs(b[0] - b[1])) + np.exp(b[1] / 100),
        ),
        (
            "minimum(b1, b2) - maximum(b1, 3)",
            lambda b: np.minimum(b[0], b[1]) - np.maximum(b[0], 3),
        ),
        (
            "where((b1 > 10) & (b2 <= 20), b1, -1)",
            lambda b: np.where((b[0] > 10) & (b[1] <= 20), b[0], -1),
        ),
        ("log(b1 + 1)", lambda b: np.log(b[0] + 1)),
        ("7", lambda b: np.full(b.shape[1:], 7)),
    ],
)
def test_expressions_equal_numpy(expression: str, reference: Any) -> None:
    values = np.random.default_rng(5).integers(0, 40, (2, 23, 17)).astype(np.float32)
    result, _, _ = run_chunked(values, (6, 5), [Expression(expression=expression)])
    expected = np.asarray(reference(values), dtype=np.float32)[None]
    np.testing.assert_allclose(result, expected, rtol=1e-6)


# --- window -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", CHUNKS_3D)
def test_window_equals_numpy(chunks: tuple[int, int, int]) -> None:
    values = np.random.default_rng(6).integers(-1024, 3000, (1, 25, 40, 33)).astype(np.int16)
    result, _, _ = run_chunked(values, chunks, [Window(center=40, width=400)])
    lo, hi = np.float32(-160), np.float32(240)
    reference = (np.clip(values.astype(np.float32), lo, hi) - lo) / (hi - lo)
    np.testing.assert_array_equal(result, reference)
    assert result.min() == 0 and result.max() == 1


def test_steps_chain_in_one_map() -> None:
    values = _landsat()[:, :90, :70]
    steps: list[Step] = [Median(size=3), Window(center=100, width=80)]
    result, _, _ = run_chunked(values, (31, 17), steps)
    median = ndimage.median_filter(values, size=(1, 3, 3), mode="reflect").astype(np.float32)
    lo, hi = np.float32(60), np.float32(140)
    np.testing.assert_array_equal(result, (np.clip(median, lo, hi) - lo) / (hi - lo))


# --- bad parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Median(size=0), "greater than or equal to 1"),
        (lambda: Median(size=2.5), "valid integer"),
        (lambda: Window(center=0, width=0), "greater than 0"),
        (lambda: Window(center=0, width=-3), "greater than 0"),
        (lambda: Normalize(low=99, high=1), "low (99.0) must be below high (1.0)"),
        (lambda: Normalize(low=5, high=5), "must be below high"),
        (lambda: Normalize(high=101), "less than or equal to 100"),
        (lambda: Expression(expression="__import__('os')"), "__import__('os')\" in"),
        (lambda: Expression(expression="b1.real"), "'b1.real' in 'b1.real'"),
        (lambda: Expression(expression="b0 + b1"), "'b0' in"),
        (lambda: Expression(expression="b1 // 2"), "the operators are"),
        (lambda: Expression(expression="sin(b1)"), "'sin(b1)' in"),
        (lambda: Expression(expression="sqrt(b1, b2)"), "sqrt() takes 1 positional argument"),
        (lambda: Expression(expression="b1 < b2"), "'b1 < b2' in"),
        (lambda: Expression(expression="where(b1, b1, 0)"), "condition of where()"),
        (lambda: Expression(expression="'b1'"), "only numbers"),
        (lambda: Expression(expression="(b1"), "not a valid expression"),
        (lambda: Expression(expression="[b for b in b1]"), "only numbers, bands"),
    ],
)
def test_bad_parameters_fail_at_construction(make: Any, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        make()
    assert message in str(error.value)


def test_missing_band_fails_at_fit_before_any_graph() -> None:
    data = da.from_array(_landsat(), chunks=(6, 100, 100))
    step = Expression(expression="(b7 - b3) / (b7 + b3)")
    with pytest.raises(InputValueError, match=r"uses band b7 but the image has 6 bands \(b1..b6\)"):
        fit_steps(data, [step], None)


# --- end to end ---------------------------------------------------------------------------


@pytest.mark.cluster
def test_ndvi_otsu_label_workflow_equals_whole_image(
    cluster_client: object, tmp_path: Path
) -> None:
    from pipeline import Workflow

    flow = Workflow(
        source=str(LANDSAT),
        steps=[
            {"expression": {"expression": "(b4 - b3) / (b4 + b3)"}},
            {"threshold": {"method": "otsu"}},
            "label",
        ],
        output=str(tmp_path / "ndvi_labels.zarr"),
        chunks=100,
    )
    result = flow.run(client=cluster_client)

    ndvi = _ndvi(_landsat())[0]
    reference, count = ndimage.label(ndvi > threshold_otsu(ndvi))
    assert result.num == count
    assert_same_partition(result.labels.compute(), reference)
