"""Global thresholds fitted on the distributed histogram equal scikit-image on the whole image.

The reference is ``skimage.filters.threshold_<method>`` of the whole image (of
``image[valid]`` with a nodata mask), never our own histogram. Integer images
must match bit for bit; float images exactly for the methods skimage itself
computes from the histogram, and within one bin width for ``li`` and ``mean``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import ndimage
from skimage import filters

from pipeline.data import sample_path
from pipeline.kernels import Threshold
from pipeline.kernels._reductions import value_counts
from pipeline.kernels._threshold import compare

METHODS = ["otsu", "li", "yen", "triangle", "mean", "isodata"]
EXACT_ON_FLOATS = {"otsu", "yen", "triangle", "isodata"}
REFERENCE: dict[str, Callable[[np.ndarray], Any]] = {
    method: getattr(filters, f"threshold_{method}") for method in METHODS
}


def _reference(method: str, values: np.ndarray) -> float:
    # skimage's yen takes log(0) where the float32 cumulative histogram reaches
    # 1 before the last bin, and warns; that bin never wins, so the warning is
    # noise here (our fit silences it the same way).
    with np.errstate(divide="ignore"):
        return float(REFERENCE[method](values))


def _fit(
    method: str,
    image: np.ndarray,
    chunks: int | tuple[int, ...],
    valid: np.ndarray | None = None,
) -> float:
    data = da.from_array(image, chunks=chunks)[None]
    mask = None if valid is None else da.from_array(valid, chunks=chunks)
    return Threshold(method=method).fit(data, mask)


def _quantised(values: np.ndarray) -> np.ndarray:
    """Each value replaced by the centre of its bin among skimage's 256 over the range."""
    edges = np.histogram_bin_edges(values, bins=256)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, 255)
    centers = (edges[:-1] + edges[1:]) / 2
    quantised: np.ndarray = centers[index].astype(np.float64)
    return quantised


def _check(
    method: str,
    image: np.ndarray,
    chunks: int | tuple[int, ...],
    valid: np.ndarray | None = None,
    li_bins: float | None = 1,
) -> None:
    """Ours equals skimage on the whole image: exactly, or within the documented bins.

    ``li`` on floats must equal skimage's ``threshold_li`` of the image
    quantised to its bin centres (up to rounding) and, unless ``li_bins`` is
    None, lie within ``li_bins`` bin widths of skimage on the image itself.
    """
    values = image if valid is None else image[valid]
    ours = _fit(method, image, chunks, valid)
    theirs = _reference(method, values)
    if image.dtype.kind in "iu" or method in EXACT_ON_FLOATS:
        assert ours == theirs, f"{method}: ours {ours!r} != skimage {theirs!r}"
        return
    bin_width = (float(values.max()) - float(values.min())) / 256
    if method == "mean":
        assert abs(ours - theirs) <= bin_width / 2 + 1e-6 * bin_width
        return
    on_quantised = _reference("li", _quantised(values))
    assert abs(ours - on_quantised) <= 1e-6 * bin_width, (ours, on_quantised)
    if li_bins is not None:
        assert abs(ours - theirs) <= li_bins * bin_width, (
            f"li: ours {ours!r} is more than {li_bins} bins ({bin_width}) from skimage {theirs!r}"
        )


# --- synthetic mixtures ---------------------------------------------------------


@st.composite
def mixtures(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, int], np.ndarray | None]:
    """A uint8 image of 2 or 3 normal populations in blocks, a chunking, maybe a nodata mask."""
    shape = (draw(st.integers(8, 90)), draw(st.integers(8, 90)))
    chunks = (draw(st.integers(4, shape[0])), draw(st.integers(4, shape[1])))
    seed = draw(st.integers(0, 2**32 - 1))
    populations = draw(
        st.lists(
            st.tuples(st.floats(0, 255), st.floats(0.5, 40), st.floats(0.05, 1)),
            min_size=2,
            max_size=3,
        )
    )
    rng = np.random.default_rng(seed)
    weights = np.array([weight for _, _, weight in populations])
    which = rng.choice(len(populations), size=shape, p=weights / weights.sum())
    means = np.array([mean for mean, _, _ in populations])[which]
    sds = np.array([sd for _, sd, _ in populations])[which]
    image = rng.normal(means, sds).clip(0, 255).round().astype(np.uint8)
    valid = None
    if draw(st.booleans()):
        valid = rng.random(shape) > draw(st.floats(0.0, 0.6))
        valid.flat[rng.integers(valid.size)] = True
    return image, chunks, valid


def _distinct_values(image: np.ndarray, valid: np.ndarray | None) -> int:
    return np.unique(image if valid is None else image[valid]).size


@settings(max_examples=40)
@given(case=mixtures(), method=st.sampled_from(METHODS))
def test_uint8_mixtures_equal_skimage_exactly(
    case: tuple[np.ndarray, tuple[int, int], np.ndarray | None], method: str
) -> None:
    image, chunks, valid = case
    if _distinct_values(image, valid) < 2:
        return  # constant images: see test_a_constant_image_thresholds_at_its_value
    _check(method, image, chunks, valid)


@settings(max_examples=40)
@given(case=mixtures(), method=st.sampled_from(METHODS), sigma=st.floats(0.5, 3))
def test_smoothed_float32_mixtures_equal_skimage(
    case: tuple[np.ndarray, tuple[int, int], np.ndarray | None], method: str, sigma: float
) -> None:
    image, chunks, valid = case
    floats = ndimage.gaussian_filter(image.astype(np.float32), sigma)
    if _distinct_values(floats, valid) < 2:
        return
    _check(method, floats, chunks, valid, li_bins=None)  # tiny images: li can be bins off


# --- real images ----------------------------------------------------------------


@pytest.fixture(scope="module")
def landsat_band5() -> np.ndarray:
    with rasterio.open(sample_path("L7_ETMs.tif")) as source:
        band: np.ndarray = source.read(5)
    return band


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    image: np.ndarray = tifffile.imread(sample_path("nuclei.tif"))
    return image


def _holes(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A nodata mask: a rectangular hole plus scattered pixels."""
    rng = np.random.default_rng(seed)
    valid = rng.random(shape) > 0.1
    valid[tuple(slice(s // 4, s // 2) for s in shape)] = False
    return valid


LANDSAT_CHUNKS = [(352, 349), (64, 64), (101, 37), (1, 349), (352, 7)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunks", LANDSAT_CHUNKS)
@pytest.mark.parametrize("nodata", [False, True])
def test_landsat_band5_equals_skimage(
    landsat_band5: np.ndarray, method: str, chunks: tuple[int, int], nodata: bool
) -> None:
    valid = _holes(landsat_band5.shape) if nodata else None
    _check(method, landsat_band5, chunks, valid)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunks", [(352, 349), (101, 37)])
@pytest.mark.parametrize("nodata", [False, True])
def test_smoothed_landsat_band5_equals_skimage(
    landsat_band5: np.ndarray, method: str, chunks: tuple[int, int], nodata: bool
) -> None:
    floats = ndimage.gaussian_filter(landsat_band5.astype(np.float32), 1.5)
    valid = _holes(floats.shape) if nodata else None
    _check(method, floats, chunks, valid)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunks", [(60, 256, 256), (17, 100, 77)])
@pytest.mark.parametrize("nodata", [False, True])
def test_nuclei_uint16_equals_skimage(
    nuclei: np.ndarray, method: str, chunks: tuple[int, ...], nodata: bool
) -> None:
    valid = _holes(nuclei.shape) if nodata else None
    _check(method, nuclei, chunks, valid)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("nodata", [False, True])
def test_smoothed_nuclei_float32_equals_skimage(
    nuclei: np.ndarray, method: str, nodata: bool
) -> None:
    floats = ndimage.gaussian_filter(nuclei.astype(np.float32), 1)
    valid = _holes(floats.shape) if nodata else None
    _check(method, floats, (23, 128, 99), valid)


def test_nodata_pixels_do_not_count() -> None:
    """Nodata holding extreme values must not move any threshold."""
    rng = np.random.default_rng(1)
    image = np.concatenate([rng.normal(60, 10, 500), rng.normal(170, 15, 300)])
    image = image.clip(0, 255).astype(np.uint8).reshape(40, 20)
    valid = np.ones(image.shape, dtype=bool)
    valid[:, :2] = False
    polluted = image.copy()
    polluted[~valid] = 255
    for method in METHODS:
        assert _fit(method, polluted, (13, 7), valid) == _fit(method, image[valid], 97)


# --- degenerate images ----------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "image",
    [np.full((9, 7), 42, np.uint8), np.full((9, 7), 0.1, np.float32), np.zeros((5, 5), np.uint16)],
    ids=["uint8", "float32", "uint16-zeros"],
)
def test_a_constant_image_thresholds_at_its_value(method: str, image: np.ndarray) -> None:
    """Every method returns the value, so nothing is foreground with ``above``.

    skimage agrees except where it misbehaves on a constant float image: its
    yen returns a value below the image (-0.398 for 0.1) after divide-by-zero
    warnings, its isodata raises IndexError, and its mean of many float32
    0.1s rounds to 0.099999994.
    """
    value = float(image.flat[0])
    assert _fit(method, image, 4) == value
    if image.dtype.kind in "iu" or method in {"otsu", "li", "triangle"}:
        assert _reference(method, image) == value
    step = Threshold(method=method)
    assert not step.apply(image[None], value).any()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_two_valued_image_separates_the_two_values(method: str, dtype: type) -> None:
    """The threshold lies in [low, high): the low value is background, the high foreground.

    otsu and yen give the low value; the others a value in between (li and
    mean about the mean, triangle one step or bin above low, isodata about
    the midpoint). Integer results equal skimage exactly.
    """
    image = np.full((6, 5), 3, dtype)
    image[:2] = 7
    ours = _fit(method, image, (4, 3))
    assert 3 <= ours < 7
    _check(method, image, (4, 3))
    mask = Threshold(method=method).apply(image[None], ours)
    np.testing.assert_array_equal(mask, image == 7)


# --- parameters -----------------------------------------------------------------


def test_an_unknown_method_lists_the_methods() -> None:
    with pytest.raises(ValidationError) as error:
        Threshold(method="lee")
    message = str(error.value)
    for method in [*METHODS, "manual"]:
        assert repr(method) in message


@pytest.mark.parametrize("method", METHODS)
def test_a_value_with_an_automatic_method_is_refused(method: str) -> None:
    with pytest.raises(ValidationError, match=f"value is only for method 'manual', not '{method}'"):
        Threshold(method=method, value=3)


def test_manual_needs_a_value() -> None:
    with pytest.raises(ValidationError, match="method 'manual' needs a value"):
        Threshold(method="manual")
    assert Threshold(method="manual", value=3).fit(da.zeros((1, 4, 4), chunks=2), None) == 3


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.bool_, np.uint16, np.int16])
@pytest.mark.parametrize("shape", [(1,), (7, 9), (64, 64), (3, 5, 11)])
@pytest.mark.parametrize("masked", [False, True])
def test_value_counts_equal_a_bincount_of_the_values(
    dtype: type, shape: tuple[int, ...], masked: bool
) -> None:
    """One-byte images are counted two bytes at a time (a fast path), the others by
    value; both give np.bincount over the dtype's whole range."""
    rng = np.random.default_rng(len(shape))
    info = np.iinfo(np.uint8 if dtype is np.bool_ else dtype)
    values = rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)
    valid = rng.random(shape) < 0.7 if masked else None
    picked = values if valid is None else values[valid]
    expected = np.bincount(
        picked.ravel().astype(np.int64) - int(info.min), minlength=int(info.max) - info.min + 1
    )
    found = value_counts(values[..., ::1], valid)
    assert found.dtype == np.int64
    np.testing.assert_array_equal(found, expected)
    if values.ndim == 2:  # a strided view
        np.testing.assert_array_equal(
            value_counts(values[:, ::2]),
            np.bincount(
                values[:, ::2].ravel().astype(np.int64) - int(info.min), minlength=expected.size
            ),
        )


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.float32]
)
@pytest.mark.parametrize("above", [False, True])
def test_an_integer_image_compares_with_a_level_as_numpy_does(dtype: type, above: bool) -> None:
    """Integer images are compared in their own dtype (a fast path): the answer is
    numpy's float comparison, for levels between values, on them and out of range."""
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        low, high = -1e6, 1e6
    else:
        info = np.iinfo(dtype)
        low, high = int(info.min), int(info.max)
    values = rng.integers(max(low, -(2**40)), min(high, 2**40), size=(40, 50), endpoint=True)
    values = values.astype(dtype)
    values[0, :4] = [low, high, 0, 1]
    levels = [low - 1.5, low - 0.5, low, low + 0.5, -1.5, -0.5, 0.0, 0.5, 59.99, 60.0]
    levels += [high - 0.5, high, high + 0.5, 2.0**70, -(2.0**70), float("inf"), float("-inf")]
    levels += [float("nan"), np.float32(12.5), np.float64(-3.25), 7]
    for level in levels:
        expected = (
            values.astype(np.float64) > level if above else values.astype(np.float64) <= level
        )
        found = compare(values, level, above=above)
        assert found.dtype == bool and found.shape == values.shape
        np.testing.assert_array_equal(found, expected, err_msg=f"level {level!r}")
