"""Edge steps, chunked through the fused map, against scikit-image on the whole image."""

from __future__ import annotations

import math

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from pydantic import ValidationError
from scipy import ndimage
from skimage import filters
from skimage.feature import canny
from skimage.segmentation import clear_border

from pipeline.data import sample_path
from pipeline.errors import InputValueError, UnsupportedInputError
from pipeline.kernels import ClearBorder
from pipeline.kernels._edges import Canny, Edges, Invert
from pipeline.kernels._morphology import Opening
from pipeline.kernels._smooth import Gaussian
from pipeline.kernels._threshold import Threshold
from pipeline.stitch import label
from pipeline.workflow._fuse import fit_steps, map_steps, total_halo
from tests.conftest import WORKFLOW_DATA, assert_same_partition
from tests.test_kernels_preprocess import run_chunked

LANDSAT = sample_path("L7_ETMs.tif")
NUCLEI = sample_path("nuclei.tif")
SLIDE = WORKFLOW_DATA / "cmu_small_region.svs"

EDGE_CHUNKS_2D = [(1000, 1000), (37, 29), (5, 7)]
EDGE_CHUNKS_3D = [(1000, 1000, 1000), (7, 13, 11)]
# Every chunk at least the default canny halo (<= 40 here) on a 320 x 320 image.
CANNY_CHUNKS = [(1000, 1000), (64, 80), (55, 93), (40, 70)]


def _landsat() -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read())


def _slide(rows: slice, cols: slice, channel: int) -> np.ndarray:
    with tifffile.TiffFile(SLIDE) as tif:
        return np.asarray(tif.series[0].asarray()[rows, cols, channel])


# --- edges --------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", EDGE_CHUNKS_2D)
@pytest.mark.parametrize("method", ["sobel", "scharr", "prewitt"])
def test_edges_2d_equal_skimage_per_band(method: str, chunks: tuple[int, int]) -> None:
    values = _landsat()[:, :60, :45]
    result, _, mapped = run_chunked(values, chunks, [Edges(method=method)])
    edge = getattr(filters, method)
    reference = np.stack([edge(band, mode="reflect") for band in values])
    assert mapped.dtype == result.dtype == np.float32
    np.testing.assert_allclose(result, reference.astype(np.float32), rtol=1e-5, atol=1e-7)


def test_edges_with_chunks_of_one_pixel() -> None:
    values = _landsat()[:2, :9, :8]
    result, _, _ = run_chunked(values, (1, 1), [Edges()])
    reference = np.stack([filters.sobel(band, mode="reflect") for band in values])
    np.testing.assert_allclose(result, reference.astype(np.float32), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("chunks", EDGE_CHUNKS_3D)
@pytest.mark.parametrize("method", ["sobel", "scharr", "prewitt"])
def test_edges_3d_equal_skimage(method: str, chunks: tuple[int, int, int]) -> None:
    values = tifffile.imread(NUCLEI)[20:44, 100:150, 90:140][None]  # uint16
    result, _, _ = run_chunked(values, chunks, [Edges(method=method)])
    reference = getattr(filters, method)(values[0], mode="reflect")  # the nD magnitude
    np.testing.assert_allclose(result[0], reference.astype(np.float32), rtol=1e-5, atol=1e-7)


def test_edges_of_a_float_image_are_in_its_units() -> None:
    values = _landsat()[3:4, :80, :70].astype(np.float32) * 4
    result, _, _ = run_chunked(values, (23, 31), [Gaussian(sigma=1.5), Edges()])
    smoothed = ndimage.gaussian_filter(values[0], 1.5, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(result[0], filters.sobel(smoothed), rtol=1e-5, atol=1e-5)


def test_an_unknown_edge_method_lists_the_methods() -> None:
    with pytest.raises(ValidationError, match="'sobel', 'scharr' or 'prewitt'"):
        Edges(method="roberts")


# --- canny: equal to skimage up to hysteresis beyond the halo -------------------------------

# Measured mismatch with the default halo ceil(4 * sigma) + 32 (pixels that differ from
# skimage on the whole image, per chunking in CANNY_CHUNKS order):
#   landsat band 1, sigma 1, 5/15:    0 0 0 0 of 28030 edge pixels
#   landsat band 1, sigma 2, 2/20:    0 8 0 0 of 10805 (0.074 %: the widest low/high ratio)
#   slide, sigma 1.5, 10/25:          0 0 0 0 of 22666
#   slide, sigma 2, 5/15:             0 0 0 0 of 18801
# With a halo of ceil(4 * sigma) + 16 the worst seen was 0.2 % (0.9 % at low/high = 1/10).
MAX_MISMATCH = 0.001  # of the edge pixels


def _canny_cases() -> list[tuple[str, float, float, float]]:
    return [
        ("landsat", 1, 5, 15),
        ("landsat", 2, 2, 20),
        ("slide", 1.5, 10, 25),
        ("slide", 2, 5, 15),
    ]


def _canny_image(name: str) -> np.ndarray:
    if name == "landsat":
        return _landsat()[0, :320, :320]
    return _slide(slice(2000, 2320), slice(1200, 1520), 0)


@pytest.mark.parametrize(("image", "sigma", "low", "high"), _canny_cases())
def test_canny_differs_from_skimage_only_by_hysteresis_beyond_the_halo(
    image: str, sigma: float, low: float, high: float
) -> None:
    values = _canny_image(image)
    reference = canny(values, sigma, low, high, mode="reflect")
    step = Canny(sigma=sigma, low=low, high=high)
    assert step.halo(2) == (math.ceil(4 * sigma) + 32,) * 2
    for chunks in CANNY_CHUNKS:
        result, _, mapped = run_chunked(values[None], chunks, [step])
        assert mapped.dtype == result.dtype == bool
        differ = np.count_nonzero(result != reference)
        if chunks == CANNY_CHUNKS[0]:  # one chunk: nothing is cut, the result is exact
            assert differ == 0
        assert differ <= MAX_MISMATCH * reference.sum(), f"{chunks}: {differ} pixels differ"


def test_canny_is_exact_where_hysteresis_is_local() -> None:
    # With low == high no weak pixel needs a strong one: the local halo is enough.
    values = _landsat()[3, 30:270, 40:280]
    reference = canny(values, 1.0, 12, 12, mode="reflect")
    step = Canny(sigma=1, low=12, high=12, halo=6)
    for chunks in [(1000, 1000), (19, 23), (12, 13)]:
        result, _, _ = run_chunked(values[None], chunks, [step])
        np.testing.assert_array_equal(result, reference)


def test_canny_never_marks_the_image_border_also_after_other_steps() -> None:
    # The border is found at the seams of the total halo (gaussian before, opening after).
    values = _landsat()[4, :200, :180]
    smoothed = ndimage.gaussian_filter(values.astype(np.float32), 1.0, mode="reflect")
    edges = canny(smoothed, 1.0, 4, 12, mode="reflect")
    steps = [Gaussian(sigma=1.0), Canny(sigma=1, low=4, high=12), Invert(), Opening(radius=2)]
    reference = ndimage.binary_opening(
        np.pad(~edges, 4, mode="symmetric"), structure=Opening(radius=2).structure(2)
    )[4:-4, 4:-4]
    whole, _, _ = run_chunked(values[None], (1000, 1000), steps)
    np.testing.assert_array_equal(whole, reference)
    chunked, _, _ = run_chunked(values[None], (100, 90), steps)
    assert np.count_nonzero(chunked != reference) <= MAX_MISMATCH * edges.sum()
    result, _, _ = run_chunked(values[None], (100, 90), steps[:2])
    assert not result[[0, -1]].any() and not result[:, [0, -1]].any()


def test_rows_repeated_across_a_seam_keep_their_edges() -> None:
    # Identical rows mirror each other about every line: only the block's position
    # tells a seam among them from the image border.
    values = np.zeros((1, 160, 60), dtype=np.float32)
    values[0, :, 30:] = 10
    step = Canny(sigma=1, low=1, high=2)
    reference = canny(values[0], 1.0, 1, 2, mode="reflect")
    for chunks in [(1000, 1000), (80, 60), (40, 60)]:
        result, _, _ = run_chunked(values, chunks, [step])
        np.testing.assert_array_equal(result, reference)


def test_canny_refuses_3d_before_any_graph_is_built() -> None:
    step = Canny(sigma=1, low=1, high=2)
    with pytest.raises(InputValueError, match=r"canny\(sigma=1.0.*2D images only.*3 spatial"):
        total_halo([step], 3)


def test_canny_refuses_several_bands_and_64_bit_integers() -> None:
    step = Canny(sigma=1, low=1, high=2)
    with pytest.raises(InputValueError, match="canny needs a single band; the image has 3"):
        step.fit(da.zeros((3, 8, 8), chunks=4), None)
    with pytest.raises(UnsupportedInputError, match="int64 images are not supported"):
        step.fit(da.zeros((1, 8, 8), dtype=np.int64, chunks=4), None)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sigma": 0, "low": 1, "high": 2}, "sigma"),
        ({"sigma": -1, "low": 1, "high": 2}, "greater than 0"),
        ({"low": 5, "high": 2}, r"high \(2.0\) is below low \(5.0\)"),
        ({"low": -1, "high": 2}, "low"),
        ({"high": 2}, "low"),
        ({"sigma": 2, "low": 1, "high": 2, "halo": 9}, "halo 9 is less than the 10 pixels"),
        ({"low": 1, "high": 2, "sigma": 1, "size": 3}, "size"),
    ],
)
def test_bad_canny_parameters_fail_at_construction(params: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Canny(**params)


def test_canny_halo_is_a_parameter_named_halo() -> None:
    step = Canny(sigma=1.5, low=1, high=2, halo=12)
    assert step.halo(2) == (12, 12)
    assert step.describe() == "canny(sigma=1.5, low=1.0, high=2.0, halo=12)"
    assert Canny(sigma=1.5, low=1, high=2).describe().endswith("halo=38)")


# --- invert ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [(1000, 1000), (37, 29), (2, 3)])
def test_invert_is_the_logical_not_of_the_mask(chunks: tuple[int, int]) -> None:
    values = _landsat()[3:4, :40, :30]
    steps = [Threshold(method="otsu"), Invert()]
    result, states, mapped = run_chunked(values, chunks, steps)
    assert mapped.dtype == bool and Invert.accepts == ("mask",) and Invert.output == "mask"
    np.testing.assert_array_equal(result, ~(values[0] > states[0]))
    np.testing.assert_array_equal(result, values[0] <= filters.threshold_otsu(values[0]))


@pytest.mark.parametrize("chunks", [(64, 80), (160, 107)])
def test_regions_enclosed_by_canny_edges(chunks: tuple[int, int]) -> None:
    values = _canny_image("slide")
    edges = canny(values, 1.5, 10, 25, mode="reflect")
    regions, _ = ndimage.label(~edges)
    reference = clear_border(regions)
    steps = [Canny(sigma=1.5, low=10, high=25), Invert()]
    data = da.from_array(values[None], chunks=(1, *chunks))
    halo = total_halo(steps, 2)
    with dask.config.set(scheduler="threads"):
        inside = map_steps(data, steps, fit_steps(data, steps, None), halo)
        labels, num = label(inside, connectivity=1)
        enclosed, count = ClearBorder().finish(labels, num)
        result = enclosed.compute()
    assert count == len(np.unique(reference)) - 1 > 20
    assert_same_partition(result, ndimage.label(reference > 0)[0])
