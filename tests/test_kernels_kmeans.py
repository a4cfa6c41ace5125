"""k-means classes: chunked class maps against scikit-learn on the whole array."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from pydantic import ValidationError
from sklearn.cluster import KMeans as WholeImageKMeans
from sklearn.metrics import pairwise_distances_argmin

from pipeline.data import sample_path
from pipeline.errors import InputValueError
from pipeline.kernels._kmeans import KMeans, _draw, sort_centroids
from pipeline.workflow._fuse import check_chunks, fit_steps, map_steps, total_halo

LANDSAT = sample_path("L7_ETMs.tif")

# Largest centroid difference (in 8-bit DN) from KMeans on every pixel of
# L7_ETMs with k=3: 0.1 to 1.93 measured over 5 chunkings x 4 seeds.
CENTROID_TOLERANCE = 2.5


def _landsat() -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read())


def _nuclei() -> np.ndarray:
    return np.asarray(tifffile.imread(sample_path("nuclei.tif"))[20:40, 64:128, 96:160])


def run_chunked(
    values: np.ndarray, chunks: tuple[int, ...], step: KMeans, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fit and map ``step`` on ``values`` (band axis first) chunked by ``chunks``:
    the class map and the centroids."""
    data = da.from_array(values, chunks=(values.shape[0], *chunks))
    mask = None if valid is None else da.from_array(valid, chunks=chunks)
    halo = total_halo([step], data.ndim - 1)
    check_chunks(data, [step], halo)
    (centroids,) = fit_steps(data, [step], mask)
    mapped = map_steps(data, [step], [centroids], halo)
    assert mapped.dtype == np.uint8
    return mapped.compute(), centroids


def nearest(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """scikit-learn's nearest centroid of every pixel (classes from 1)."""
    pixels = values.reshape(values.shape[0], -1).T.astype(np.float64)
    return (pairwise_distances_argmin(pixels, centroids) + 1).reshape(values.shape[1:])


@pytest.mark.parametrize("chunks", [(1000, 1000), (37, 29), (64, 100), (5, 7)])
def test_2d_class_map_is_the_nearest_centroid_of_every_pixel(chunks: tuple[int, int]) -> None:
    values = _landsat()[:, 100:250, 150:270]
    classes, centroids = run_chunked(values, chunks, KMeans(k=4, sample=5000))
    assert centroids.shape == (4, 6) and centroids.dtype == np.float64
    np.testing.assert_array_equal(classes, nearest(values, centroids))
    np.testing.assert_array_equal(np.unique(classes), [1, 2, 3, 4])


@pytest.mark.parametrize("chunks", [(1000, 1000, 1000), (7, 13, 11), (16, 32, 20)])
def test_3d_class_map_is_the_nearest_centroid_of_every_voxel(chunks: tuple[int, ...]) -> None:
    values = _nuclei()[None]
    classes, centroids = run_chunked(values, chunks, KMeans(k=3, sample=20_000))
    np.testing.assert_array_equal(classes, nearest(values, centroids))


@pytest.mark.parametrize("chunks", [(352, 349), (64, 100), (37, 29)])
def test_centroids_are_close_to_kmeans_on_every_pixel(chunks: tuple[int, int]) -> None:
    values = _landsat()
    pixels = values.reshape(6, -1).T.astype(np.float64)
    reference = sort_centroids(WholeImageKMeans(3, random_state=0).fit(pixels).cluster_centers_)
    fitted = KMeans(k=3).fit(da.from_array(values, chunks=(6, *chunks)), None)
    np.testing.assert_allclose(fitted, reference, rtol=0, atol=CENTROID_TOLERANCE)


def test_classes_are_numbered_darkest_first() -> None:
    values = _landsat()
    centroids = KMeans(k=5).fit(da.from_array(values, chunks=(6, 100, 100)), None)
    assert np.all(np.diff(centroids.sum(axis=1)) > 0)
    classes = KMeans(k=5).apply(values, centroids)
    brightness = [values[:, classes == c].sum(axis=0).mean() for c in range(1, 6)]
    assert brightness == sorted(brightness)


def test_the_fit_is_reproducible_and_does_not_depend_on_the_scheduler() -> None:
    data = da.from_array(_landsat(), chunks=(6, 64, 100))
    step = KMeans(k=4, sample=20_000, seed=7)
    first = step.fit(data, None)
    np.testing.assert_array_equal(step.fit(data, None), first)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(step.fit(data, None), first)
    with dask.config.set(scheduler="threads", num_workers=2):
        np.testing.assert_array_equal(step.fit(data, None), first)
    assert not np.array_equal(KMeans(k=4, sample=20_000, seed=8).fit(data, None), first)


def test_nodata_and_nan_pixels_are_left_out_of_the_fit_and_nan_gets_no_class() -> None:
    rng = np.random.default_rng(3)
    values = np.where(rng.random((2, 60, 50)) < 0.5, 10.0, 50.0) + rng.normal(size=(2, 60, 50))
    values[:, :20] = 1000.0  # nodata by the mask
    values[1, 40:45] = np.nan
    valid = np.ones((60, 50), dtype=bool)
    valid[:20] = False
    classes, centroids = run_chunked(values, (13, 17), KMeans(k=2, sample=2000), valid)
    assert np.all(centroids < 100)
    assert np.all(classes[40:45] == 0)
    rest = np.ones((60, 50), dtype=bool)
    rest[40:45] = False
    assert np.all(classes[rest] > 0)
    np.testing.assert_array_equal(
        classes[rest], nearest(values[:, rest][..., None], centroids)[:, 0]
    )


def test_a_band_subset_clusters_those_bands_only() -> None:
    values = _landsat()[:, :120, :100]
    data = da.from_array(values, chunks=(6, 50, 50))
    step = KMeans(k=3, bands=[4, 5])
    assert step.describe() == "kmeans(k=3, sample=100000, seed=0, bands=[4, 5])"
    centroids = step.fit(data, None)
    np.testing.assert_array_equal(centroids, KMeans(k=3).fit(data[[3, 4]], None))
    np.testing.assert_array_equal(step.apply(values, centroids), nearest(values[[3, 4]], centroids))
    with pytest.raises(InputValueError, match="band 7 is out of range; the image has bands 1 to 6"):
        KMeans(k=3, bands=[2, 7]).fit(data, None)


def test_too_few_distinct_values_are_refused() -> None:
    two = da.from_array(np.array([[[0, 0, 9, 9]]], dtype=np.uint8), chunks=2)
    with pytest.raises(InputValueError, match="2 distinct pixel values with data, too few for k=3"):
        KMeans(k=3).fit(two, None)
    nothing = da.from_array(np.full((1, 4, 4), np.nan), chunks=2)
    with pytest.raises(InputValueError, match="no pixel values with data"):
        KMeans(k=2).fit(nothing, None)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": 1}, "greater than or equal to 2"),
        ({"k": 300}, "less than or equal to 255"),
        ({"k": 3, "sample": 0}, "greater than or equal to 1"),
        ({"k": 3, "sample": 2}, "sample 2 is smaller than k=3"),
        ({"k": 3, "bands": [0]}, "band numbers count from 1"),
        ({"k": 3, "bands": []}, "at least 1 item"),
        ({"k": 3, "seed": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_parameters_fail_at_construction(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KMeans(**params)


def test_the_fit_and_the_classes_do_not_depend_on_the_chunks() -> None:
    values = _landsat()
    step = KMeans(k=5, sample=20_000, seed=3)
    first, centroids = run_chunked(values, (352, 349), step)
    for chunks in [(100, 100), (37, 29), (5, 349), (352, 7)]:
        classes, again = run_chunked(values, chunks, step)
        np.testing.assert_array_equal(again, centroids)
        np.testing.assert_array_equal(classes, first)


@pytest.mark.parametrize("sample", [500, 20_000])
def test_the_sample_is_drawn_uniformly_by_place_in_the_image(sample: int) -> None:
    """About ``sample`` pixels (a binomial count), spread evenly over the image, the
    same whichever chunk a pixel lies in; every pixel when sample >= pixels."""
    values = _landsat()
    shape = values.shape[1:]
    pixels = shape[0] * shape[1]
    below = sample * 2**64 // pixels
    index, drawn = _draw(values, None, (0, 0), shape, below, seed=0)
    spread = np.sqrt(sample * (1 - sample / pixels))
    assert abs(index.size - sample) < 5 * spread
    np.testing.assert_array_equal(drawn, values.reshape(6, -1)[:, index].T)
    halves = np.bincount(index // shape[1] >= shape[0] // 2)
    assert abs(halves[0] - halves[1]) < 5 * np.sqrt(index.size)
    corner, _ = _draw(values[:, 100:, 200:], None, (100, 200), shape, below, seed=0)
    inside = index[(index // shape[1] >= 100) & (index % shape[1] >= 200)]
    np.testing.assert_array_equal(corner, inside)
    every, _ = _draw(values, None, (0, 0), shape, None, seed=0)
    np.testing.assert_array_equal(every, np.arange(pixels))
