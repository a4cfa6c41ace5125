"""pixel_classifier next to pixels without data: a scene's fill (a declared nodata
value, or mask_nodata's NaN) is left out of the features of the pixels around it,
so their classes are those of the untouched scene, exactly for any chunking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from scipy import ndimage
from skimage.feature import multiscale_basic_features

import pipeline
from pipeline.data import sample_path
from pipeline.kernels import MaskNodata, PixelClassifier
from pipeline.kernels._classifier import _training_set, pixel_features
from pipeline.kernels._features import masked_features
from pipeline.workflow._fuse import check_chunks, fit_steps, map_steps, total_halo
from pipeline.workflow._run import run_spec

LANDSAT = sample_path("L7_ETMs.tif")
FILL = (slice(0, 100), slice(250, None))  # the scene's top-right corner, set to 0
# The training rectangles of workflows/landsat_classifier.yaml, all farther from
# the fill than the halo (34 pixels), so both runs train the same forest.
POLYGONS: dict[int, list[list[list[float]]]] = {
    1: [
        [[290, 240], [290, 270], [310, 270], [310, 240]],
        [[160, 315], [160, 335], [190, 335], [190, 315]],
    ],
    2: [
        [[40, 25], [40, 50], [65, 50], [65, 25]],
        [[178, 6], [178, 24], [198, 24], [198, 6]],
        [[188, 200], [188, 218], [200, 218], [200, 200]],
    ],
    3: [
        [[195, 255], [195, 280], [225, 280], [225, 255]],
        [[260, 100], [260, 140], [290, 140], [290, 100]],
    ],
}
CLASSIFIER = {"pixel_classifier": {"polygons": POLYGONS, "sigma_max": 8, "trees": 20, "seed": 0}}
SMALL: dict[str, Any] = {"sigma_max": 2, "trees": 10}  # halo 10


def classes_of(
    tmp_path: Path, name: str, values: np.ndarray, nodata: float | None, steps: list
) -> np.ndarray:
    """The class map a workflow run writes for ``values`` saved as a GeoTIFF (tiled,
    its nodata tag ``nodata``), in chunks of 100."""
    with rasterio.open(LANDSAT) as src:
        profile = {**src.profile, "tiled": True, "blockxsize": 64, "blockysize": 64}
    path = tmp_path / f"{name}.tif"
    with rasterio.open(path, "w", **{**profile, "nodata": nodata}) as dst:
        dst.write(values)
    flow = pipeline.Workflow(
        source=str(path),
        steps=[*steps, CLASSIFIER, "label"],
        output={
            "labels": str(tmp_path / f"{name}.zarr"),
            "classes": str(tmp_path / f"{name}_classes.zarr"),
        },
        chunks=100,
    )
    with dask.config.set(scheduler="threads"):
        result = run_spec(flow.spec, flow.base)
    return np.squeeze(pipeline.open_image(str(result.outputs["classes"])).data.compute())


@pytest.mark.parametrize(
    ("nodata", "steps"),
    [(0, []), (None, [{"mask_nodata": {"values": [0]}}])],
    ids=["nodata_tag", "mask_nodata"],
)
def test_the_classes_next_to_a_fill_are_those_of_the_untouched_scene(
    tmp_path: Path, nodata: float | None, steps: list
) -> None:
    with rasterio.open(LANDSAT) as src:
        scene = src.read()
    filled = scene.copy()
    filled[(slice(None), *FILL)] = 0
    untouched = classes_of(tmp_path, "untouched", scene, None, steps)
    cut = classes_of(tmp_path, "filled", filled, nodata, steps)
    fill = np.zeros(scene.shape[1:], dtype=bool)
    fill[FILL] = True
    distance = ndimage.distance_transform_edt(~fill)
    near, elsewhere = (distance > 0) & (distance <= 10), distance > 10
    agree_near = np.mean(cut[near] == untouched[near])
    agree_elsewhere = np.mean(cut[elsewhere] == untouched[elsewhere])
    # Measured: 0.972 near the fill, 0.9999 elsewhere. When the fill went into the
    # features: 0.481 (nodata tag) and 0.695 (mask_nodata) near it, most of those
    # pixels given one class.
    assert agree_near >= 0.9, agree_near
    assert agree_elsewhere >= 0.999, agree_elsewhere
    assert np.all(cut[fill] == 0) and np.all(cut[~fill] > 0)


def _landsat() -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read()[:, 100:221, 150:249])  # 121 x 99


def _points(shape: tuple[int, ...], count: int, seed: int) -> dict[int, list[list[int]]]:
    """``count`` pixels spread over the image, in 3 classes by position."""
    rng = np.random.default_rng(seed)
    where = np.unique(rng.integers(0, shape, size=(count, len(shape))), axis=0)
    classes = 1 + where.sum(axis=1) % 3
    return {int(c): where[classes == c].tolist() for c in (1, 2, 3)}


def _without_data(shape: tuple[int, ...], seed: int, scattered: float = 0.01) -> np.ndarray:
    """``valid``: a corner, a stripe and scattered pixels without data."""
    valid = np.random.default_rng(seed).random(shape) >= scattered
    valid[: shape[0] // 3, : shape[1] // 4] = False
    valid[..., shape[-1] // 2 : shape[-1] // 2 + 3] = False
    return valid


def run_chunked(
    values: np.ndarray, valid: np.ndarray, chunks: tuple[int, ...], step: PixelClassifier
) -> tuple[np.ndarray, Any]:
    data = da.from_array(values, chunks=(values.shape[0], *chunks))
    mask = da.from_array(valid, chunks=chunks)
    halo = total_halo([step], data.ndim - 1)
    check_chunks(data, [step], halo)
    (forest,) = fit_steps(data, [step], mask)
    return map_steps(data, [step], [forest], halo, mask).compute(), forest


def whole_image_prediction(
    values: np.ndarray, valid: np.ndarray, step: PixelClassifier, forest: Any
) -> np.ndarray:
    features = pixel_features(values, step, valid)
    predicted = forest.predict(features.reshape(-1, features.shape[-1])).reshape(valid.shape)
    return np.where(valid, predicted, 0).astype(np.uint8)


@pytest.mark.parametrize("chunks", [(1000, 1000), (11, 11), (41, 33), (64, 50)])
def test_2d_chunked_classes_next_to_nodata_equal_the_whole_image(chunks: tuple[int, int]) -> None:
    values = _landsat()
    valid = _without_data(values.shape[1:], seed=1)
    step = PixelClassifier(points=_points(values.shape[1:], 120, seed=2), **SMALL)
    classes, forest = run_chunked(values, valid, chunks, step)
    np.testing.assert_array_equal(classes, whole_image_prediction(values, valid, step, forest))
    assert np.all(classes[~valid] == 0) and np.all(classes[valid] > 0)


@pytest.mark.parametrize("chunks", [(1000, 1000, 1000), (10, 13, 16), (10, 32, 22)])
def test_3d_chunked_classes_next_to_nodata_equal_the_whole_image(chunks: tuple[int, ...]) -> None:
    values = np.asarray(tifffile.imread(sample_path("nuclei.tif"))[20:40, 64:128, 96:160])[None]
    valid = _without_data(values.shape[1:], seed=3)
    step = PixelClassifier(points=_points(values.shape[1:], 80, seed=4), **SMALL)
    classes, forest = run_chunked(values, valid, chunks, step)
    np.testing.assert_array_equal(classes, whole_image_prediction(values, valid, step, forest))


def test_the_training_set_next_to_nodata_is_the_whole_image_s_features() -> None:
    values = _landsat()
    valid = _without_data(values.shape[1:], seed=5)
    step = PixelClassifier(points=_points(values.shape[1:], 200, seed=6), **SMALL)
    coords, classes = step._annotations(values.shape[1:])
    features = pixel_features(values, step, valid)
    for chunks in [(121, 99), (11, 11), (40, 60)]:
        where, found, targets = _training_set(
            step,
            da.from_array(values, chunks=(6, *chunks)),
            da.from_array(valid, chunks=chunks),
            coords,
            classes,
        )
        kept = valid[tuple(coords.T)]
        np.testing.assert_array_equal(
            where, np.ravel_multi_index(tuple(coords[kept].T), valid.shape)
        )
        np.testing.assert_array_equal(found, features[tuple(coords[kept].T)])
        np.testing.assert_array_equal(targets, classes[kept])


def test_nan_bands_and_a_declared_nodata_value_are_left_out_alike() -> None:
    values = _landsat().astype(np.float32)
    valid = _without_data(values.shape[1:], seed=7)
    step = PixelClassifier(points={1: [[0, 0]], 2: [[1, 1]]}, **SMALL)
    hidden = values.copy()
    hidden[0][~valid] = np.nan  # one band's NaN makes the pixel one without data
    np.testing.assert_array_equal(
        pixel_features(hidden, step)[valid], pixel_features(values, step, valid)[valid]
    )


def test_without_nodata_the_features_are_scikit_image_s() -> None:
    values = _landsat()
    step = PixelClassifier(points={1: [[0, 0]], 2: [[1, 1]]}, sigma_min=0.5, sigma_max=3)
    (h, _) = step.halo(2)
    padded = np.pad(values, ((0, 0), (h, h), (h, h)), mode="symmetric")
    theirs = multiscale_basic_features(padded, sigma_min=0.5, sigma_max=3, channel_axis=0)
    theirs = theirs[h:-h, h:-h]
    np.testing.assert_array_equal(pixel_features(values, step), theirs)
    all_valid = np.ones(values.shape[1:], dtype=bool)
    np.testing.assert_array_equal(pixel_features(values, step, all_valid), theirs)


def test_away_from_nodata_the_features_are_scikit_image_s_bit_for_bit() -> None:
    """A pixel with no pixel without data within the halo keeps scikit-image's
    features; within it, they differ (the fill is left out)."""
    values = _landsat()
    valid = _without_data(values.shape[1:], seed=8, scattered=0)
    step = PixelClassifier(points={1: [[0, 0]], 2: [[1, 1]]}, **SMALL)
    (h, _) = step.halo(2)
    ours = masked_features(values, valid, step.sigmas(), intensity=True, edges=True, texture=True)
    theirs = multiscale_basic_features(values, sigma_min=1, sigma_max=2, channel_axis=0)
    reach = ndimage.distance_transform_cdt(valid, metric="chessboard")
    assert np.count_nonzero(reach > h) > 500
    np.testing.assert_array_equal(ours[reach > h], theirs[reach > h])
    assert not np.array_equal(ours[reach == h], theirs[reach == h])


def test_the_smoothing_is_a_normalised_convolution() -> None:
    """Intensity features against scipy: G(x v) / G(v) at the pixels with data."""
    values = _landsat()[:2]
    valid = _without_data(values.shape[1:], seed=9)
    sigmas = np.array([1.0, 2.0, 4.0])
    ours = masked_features(values, valid, sigmas, intensity=True, edges=False, texture=False)
    weight = valid.astype(np.float64)
    for band, plane in enumerate(values):
        x = np.where(valid, plane / 255.0, 0.0)
        for number, sigma in enumerate(sigmas):
            total = ndimage.gaussian_filter(x, sigma, mode="nearest")
            weights = ndimage.gaussian_filter(weight, sigma, mode="nearest")  # > 0 where valid
            expected = total[valid] / weights[valid]
            found = ours[..., band * len(sigmas) + number]
            np.testing.assert_allclose(found[valid], expected, rtol=1e-5, atol=1e-6)
            assert found[valid].max() <= plane[valid].max() / 255 + 1e-6  # no fill leaks in


def test_mask_nodata_then_the_classifier_fit_what_the_map_gives(tmp_path: Path) -> None:
    """After mask_nodata the forest is trained on the float32 image the map gives it."""
    values = _landsat()
    step = PixelClassifier(points=_points(values.shape[1:], 120, seed=10), **SMALL)
    steps = [MaskNodata(values=[0]), step]
    data = da.from_array(values, chunks=(6, 50, 50))
    states = fit_steps(data, steps, None)
    classes = map_steps(data, steps, states, total_halo(steps, 2)).compute()
    expected = whole_image_prediction(
        values.astype(np.float32), np.ones(values.shape[1:], bool), step, states[1]
    )
    np.testing.assert_array_equal(classes, expected)
    direct = step.fit(da.from_array(values.astype(np.float32), chunks=(6, 50, 50)), None)
    features = pixel_features(values.astype(np.float32), step).reshape(-1, 6 * 2 * 4)
    np.testing.assert_array_equal(states[1].predict(features), direct.predict(features))
