"""Pixel classifier: chunked class maps against the same forest on whole-image features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from pydantic import ValidationError
from skimage.draw import polygon
from skimage.feature import multiscale_basic_features

from pipeline.data import sample_path
from pipeline.errors import InputValueError
from pipeline.kernels._classifier import PixelClassifier, pixel_features
from pipeline.workflow._fuse import check_chunks, fit_steps, map_steps, total_halo

LANDSAT = sample_path("L7_ETMs.tif")
SMALL: dict[str, Any] = {
    "sigma_max": 2,
    "trees": 10,
}  # halo 10, a forest that trains in milliseconds
POLYGONS: dict[int, list[list[list[float]]]] = {
    1: [[[5, 5], [5, 40], [30, 40], [30, 5]]],
    2: [[[60, 50], [60, 90], [100, 95], [95, 55]], [[110, 5], [118, 5], [118, 20]]],
    3: [[[40, 60], [45, 80], [55, 62]]],
}


def _landsat() -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read()[:, 100:221, 150:249])  # 121 x 99


def _nuclei() -> np.ndarray:
    return np.asarray(tifffile.imread(sample_path("nuclei.tif"))[20:40, 64:128, 96:160])[None]


def _points(values: np.ndarray, count: int, seed: int) -> dict[int, list[list[int]]]:
    """``count`` pixels spread over the image, classed dark / middle / bright in band 1."""
    rng = np.random.default_rng(seed)
    where = np.unique(rng.integers(0, values.shape[1:], size=(count, values.ndim - 1)), axis=0)
    band = values[0][tuple(where.T)]
    classes = 1 + np.digitize(band, np.percentile(band, [33, 66]))
    return {int(c): where[classes == c].tolist() for c in np.unique(classes)}


def _raster(points: dict[int, list[list[int]]], shape: tuple[int, ...]) -> np.ndarray:
    raster = np.zeros(shape, dtype=np.uint8)
    for class_id, where in points.items():
        raster[tuple(np.asarray(where).T)] = class_id
    return raster


def run_chunked(
    values: np.ndarray, chunks: tuple[int, ...], step: PixelClassifier, valid: Any = None
) -> tuple[np.ndarray, Any]:
    """Fit and map ``step`` on ``values`` (band axis first) chunked by ``chunks``:
    the class map and the forest."""
    data = da.from_array(values, chunks=(values.shape[0], *chunks))
    mask = None if valid is None else da.from_array(valid, chunks=chunks)
    halo = total_halo([step], data.ndim - 1)
    check_chunks(data, [step], halo)
    (forest,) = fit_steps(data, [step], mask)
    return map_steps(data, [step], [forest], halo, mask).compute(), forest


def whole_image_features(values: np.ndarray, step: PixelClassifier) -> np.ndarray:
    """scikit-image's features of the image padded by reflection by the halo, cropped back."""
    halo = step.halo(values.ndim - 1)
    padded = np.pad(values, [(0, 0), *((h, h) for h in halo)], mode="symmetric")
    features = multiscale_basic_features(
        padded,
        intensity=step.intensity,
        edges=step.edges,
        texture=step.texture,
        sigma_min=step.sigma_min,
        sigma_max=step.sigma_max,
        channel_axis=0,
    )
    return features[tuple(slice(h, -h) for h in halo)]


def whole_image_prediction(values: np.ndarray, step: PixelClassifier, forest: Any) -> np.ndarray:
    features = whole_image_features(values, step)
    return forest.predict(features.reshape(-1, features.shape[-1])).reshape(values.shape[1:])


@pytest.mark.parametrize("chunks", [(1000, 1000), (11, 11), (41, 33), (64, 50)])
def test_2d_chunked_class_map_equals_the_forest_on_whole_image_features(
    chunks: tuple[int, int],
) -> None:
    values = _landsat()
    step = PixelClassifier(points=_points(values, 90, seed=1), **SMALL)
    classes, forest = run_chunked(values, chunks, step)
    assert classes.dtype == np.uint8
    np.testing.assert_array_equal(classes, whole_image_prediction(values, step, forest))
    np.testing.assert_array_equal(np.unique(classes), [1, 2, 3])


@pytest.mark.parametrize("chunks", [(1000, 1000, 1000), (10, 13, 16), (10, 32, 22)])
def test_3d_chunked_class_map_equals_the_forest_on_whole_image_features(
    chunks: tuple[int, ...],
) -> None:
    values = _nuclei()
    step = PixelClassifier(points=_points(values, 60, seed=2), **SMALL)
    classes, forest = run_chunked(values, chunks, step)
    np.testing.assert_array_equal(classes, whole_image_prediction(values, step, forest))


def test_default_scales_on_the_full_landsat_scene() -> None:
    with rasterio.open(LANDSAT) as src:
        values = np.asarray(src.read())
    step = PixelClassifier(polygons=POLYGONS, trees=5)
    assert step.halo(2) == (66, 66)  # int(4 * 16 + 0.5) + 2
    classes, forest = run_chunked(values, (176, 349), step)
    np.testing.assert_array_equal(classes, whole_image_prediction(values, step, forest))


def test_features_equal_scikit_image_away_from_the_image_border() -> None:
    values = _landsat()
    step = PixelClassifier(points={1: [[0, 0]], 2: [[1, 1]]}, sigma_min=0.5, sigma_max=3)
    (h, _) = step.halo(2)
    ours = pixel_features(values, step)
    theirs = multiscale_basic_features(values, sigma_min=0.5, sigma_max=3, channel_axis=0)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (121, 99, 6 * 3 * 4)
    np.testing.assert_array_equal(ours[h:-h, h:-h], theirs[h:-h, h:-h])
    np.testing.assert_array_equal(ours, whole_image_features(values, step))


@pytest.mark.parametrize(
    ("features", "halo"),
    [({}, 10), ({"texture": False}, 9), ({"texture": False, "edges": False}, 8)],
)
def test_the_halo_is_just_enough_for_each_feature_set(features: dict, halo: int) -> None:
    values = _landsat()[:2, : 4 * halo, : 5 * halo]
    step = PixelClassifier(points=_points(values, 40, seed=3), **SMALL, **features)
    assert step.halo(2) == (halo, halo)
    classes, forest = run_chunked(values, (halo, halo), step)  # the neighbours are the halo
    np.testing.assert_array_equal(classes, whole_image_prediction(values, step, forest))


def test_a_halo_one_pixel_narrower_would_not_be_exact() -> None:
    values = _landsat()[:1]
    step = PixelClassifier(points={1: [[0, 0]], 2: [[1, 1]]}, **SMALL)
    (h, _) = step.halo(2)
    whole = whole_image_features(values, step)
    padded = np.pad(values, ((0, 0), (h, h), (h, h)), mode="symmetric")
    box = (slice(None), slice(50, 70 + 2 * h), slice(40, 60 + 2 * h))  # pixels 50:70, 40:60
    np.testing.assert_array_equal(step.features(padded[box])[h:-h, h:-h], whole[50:70, 40:60])
    narrow = (slice(None), slice(51, 69 + 2 * h), slice(41, 59 + 2 * h))
    inner = step.features(padded[narrow])[h - 1 : -(h - 1), h - 1 : -(h - 1)]
    assert not np.array_equal(inner, whole[50:70, 40:60])


def test_the_forest_does_not_depend_on_the_training_chunks() -> None:
    values = _landsat()
    step = PixelClassifier(points=_points(values, 90, seed=4), **SMALL)
    features = whole_image_features(values, step).reshape(-1, 6 * 2 * 4)
    forests = [
        step.fit(da.from_array(values, chunks=(6, *chunks)), None)
        for chunks in [(121, 99), (11, 11)]
    ]
    first = forests[0].predict(features)
    for forest in forests[1:]:
        np.testing.assert_array_equal(forest.predict(features), first)
        for mine, theirs in zip(forest.estimators_, forests[0].estimators_, strict=True):
            np.testing.assert_array_equal(mine.tree_.threshold, theirs.tree_.threshold)
    with dask.config.set(scheduler="sync"):
        again = step.fit(da.from_array(values, chunks=(6, 50, 50)), None)
    np.testing.assert_array_equal(again.predict(features), first)


def test_a_label_raster_trains_the_same_forest_as_the_same_points(tmp_path: Path) -> None:
    values = _landsat()
    points = _points(values, 90, seed=5)
    raster = _raster(points, values.shape[1:])
    plain = tmp_path / "labels.tif"
    tifffile.imwrite(plain, raster, tile=(32, 32))
    with rasterio.open(LANDSAT) as src:
        profile = src.profile
    profile.update(count=1, height=121, width=99, dtype="uint8", nodata=None)
    geo = tmp_path / "labels_geo.tif"
    with rasterio.open(geo, "w", **profile) as dst:
        dst.write(raster, 1)
    data = da.from_array(values, chunks=(6, 41, 33))
    features = whole_image_features(values, PixelClassifier(points=points, **SMALL))
    features = features.reshape(-1, features.shape[-1])
    expected = PixelClassifier(points=points, **SMALL).fit(data, None).predict(features)
    for path in (plain, geo):
        forest = PixelClassifier(labels=str(path), **SMALL).fit(data, None)
        np.testing.assert_array_equal(forest.predict(features), expected)


def test_a_3d_label_raster_trains_the_same_forest_as_the_same_points(tmp_path: Path) -> None:
    values = _nuclei()
    points = _points(values, 60, seed=6)
    path = tmp_path / "labels.tif"
    tifffile.imwrite(path, _raster(points, values.shape[1:]))
    data = da.from_array(values, chunks=(1, 20, 32, 64))
    features = whole_image_features(values, PixelClassifier(points=points, **SMALL))
    features = features.reshape(-1, features.shape[-1])
    from_points = PixelClassifier(points=points, **SMALL).fit(data, None)
    from_raster = PixelClassifier(labels=str(path), **SMALL).fit(data, None)
    np.testing.assert_array_equal(from_raster.predict(features), from_points.predict(features))


def test_polygons_train_the_same_forest_as_their_rasterised_pixels(tmp_path: Path) -> None:
    values = _landsat()
    raster = np.zeros(values.shape[1:], dtype=np.uint8)
    for class_id, rings in POLYGONS.items():
        for ring in rings:
            vertices = np.asarray(ring)
            raster[polygon(vertices[:, 0], vertices[:, 1], shape=raster.shape)] = class_id
    path = tmp_path / "polygons.tif"
    tifffile.imwrite(path, raster)
    step = PixelClassifier(polygons=POLYGONS, **SMALL)
    classes, forest = run_chunked(values, (41, 33), step)
    from_raster = PixelClassifier(labels=str(path), **SMALL)
    _, expected = run_chunked(values, (64, 50), from_raster)
    features = whole_image_features(values, step)
    features = features.reshape(-1, features.shape[-1])
    np.testing.assert_array_equal(forest.predict(features), expected.predict(features))
    np.testing.assert_array_equal(classes, whole_image_prediction(values, step, forest))
    assert step.describe().startswith("pixel_classifier(polygons={1: 1, 2: 2, 3: 1}, trees=10")


def test_annotations_without_data_are_left_out_and_nan_pixels_get_no_class() -> None:
    """Pixels outside ``valid`` and NaN pixels are the same thing: left out of the
    training set and of the features of the others, given class 0."""
    values = _landsat()[:3].astype(np.float32)
    points = _points(values, 90, seed=7)
    valid = np.ones(values.shape[1:], dtype=bool)
    valid[:30] = False
    values[:, 100:105, 40:45] = np.nan
    kept = {
        c: [p for p in where if p[0] >= 30 and not (100 <= p[0] < 105 and 40 <= p[1] < 45)]
        for c, where in points.items()
    }
    features = np.nan_to_num(whole_image_features(values, PixelClassifier(points=points, **SMALL)))
    features = features.reshape(-1, features.shape[-1])
    classes, forest = run_chunked(values, (41, 33), PixelClassifier(points=points, **SMALL), valid)
    hidden = values.copy()
    hidden[:, :30] = np.nan  # no valid mask: the same pixels without data, as NaN
    _, expected = run_chunked(hidden, (64, 50), PixelClassifier(points=kept, **SMALL))
    np.testing.assert_array_equal(forest.predict(features), expected.predict(features))
    assert np.all(classes[100:105, 40:45] == 0) and np.all(classes[:30] == 0)
    assert np.all(classes[30:100] > 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of labels .* got none"),
        ({"labels": "a.tif", "points": {1: [[0, 0]], 2: [[1, 1]]}}, "got labels, points"),
        ({"points": {1: [[0, 0]], 2: []}}, r"at least 2 classes; got \[1\]"),
        ({"points": {0: [[0, 0]], 2: [[1, 1]]}}, "class id 0 is out of range; class ids are 1"),
        ({"polygons": {1: [[[0, 0], [0, 4], [4, 4]]], 256: []}}, "class id 256 is out of range"),
        ({"points": {1: [[0, 0]], 2: [[1, 1, 1]]}}, r"all of one kind; got points of \[2, 3\]"),
        ({"points": {1: [[0]], 2: [[1]]}}, r"\[y, x\] in 2D or \[z, y, x\] in 3D"),
        ({"polygons": {1: [[[0, 0], [0, 4]]], 2: [[[5, 5], [5, 9], [9, 9]]]}}, "at least 3"),
        ({"points": {1: [[0, 0]], 2: [[1.5, 1]]}}, "valid integer"),
        ({"points": {1: [[0, 0]], 2: [[1, 1]]}, "sigma_max": 0.5}, "sigma_max 0.5 is smaller"),
        ({"points": {1: [[0, 0]], 2: [[1, 1]]}, "sigma_min": 0}, "greater than 0"),
        (
            {"points": {1: [[0, 0]], 2: [[1, 1]]}, "intensity": False, "edges": False,
             "texture": False},
            "at least one of intensity, edges, texture",
        ),
        ({"points": {1: [[0, 0]], 2: [[1, 1]]}, "trees": 0}, "greater than or equal to 1"),
        ({"points": {1: [[0, 0]], 2: [[1, 1]]}, "depth": 3}, "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_annotations_and_parameters_fail_at_construction(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PixelClassifier(**params)


def _never_computed(shape: tuple[int, ...]) -> da.Array:
    """A lazy image that fails if any of it is computed."""

    def fail() -> np.ndarray:
        raise AssertionError("the image was computed before the annotations were checked")

    return da.from_delayed(dask.delayed(fail)(), shape=shape, dtype=np.uint8)


@pytest.mark.parametrize(
    ("annotations", "shape", "message"),
    [
        (
            {"points": {1: [[0, 0]], 2: [[121, 5]]}},
            (1, 121, 99),
            r"point \[121, 5\] of class 2 is outside the image of shape \(121, 99\); "
            r"points are \['y', 'x'\] pixel coordinates from 0",
        ),
        ({"points": {1: [[0, 0]], 2: [[-1, 5]]}}, (1, 121, 99), r"point \[-1, 5\] of class 2"),
        (
            {"points": {1: [[0, 0, 0]], 2: [[1, 5, 5]]}},
            (1, 121, 99),
            r"point \[0, 0, 0\] of class 1 has 3 coordinates but the image is 2D",
        ),
        (
            {"polygons": {1: [[[0, 0], [0, 4], [4, 4]]], 2: [[[5, 5], [5, 9], [9, 9]]]}},
            (1, 20, 40, 40),
            "polygons are 2D, the image is 3D",
        ),
        (
            {"polygons": {1: [[[0, 0], [0, 4], [4, 4]]], 2: [[[5, 5], [5, 130], [9, 9]]]}},
            (1, 121, 99),
            "reaches outside the image of shape",
        ),
        (
            {
                "polygons": {
                    1: [[[0, 0], [0, 4], [4, 4]]],
                    2: [[[5.2, 5.2], [5.2, 5.4], [5.4, 5.3]]],
                }
            },
            (1, 121, 99),
            "covers no pixel centre",
        ),
        (
            {"points": {1: [[3, 3], [4, 4]], 2: [[4, 4]]}},
            (1, 121, 99),
            r"1 pixels are annotated with two classes, e.g. pixel \[4, 4\]",
        ),
        (
            {"points": {1: [[0, 0]], 2: [[1, 1]]}, "sigma_max": 16},
            (1, 60, 99),
            "needs a halo of 66 pixels, more than the image's 60 pixels along y",
        ),
    ],
)
def test_bad_annotations_fail_before_the_image_is_read(
    annotations: dict, shape: tuple[int, ...], message: str
) -> None:
    step = PixelClassifier(**annotations)
    with pytest.raises(InputValueError, match=message):
        step.fit(_never_computed(shape), None)


def test_a_bad_label_raster_is_refused_with_its_name(tmp_path: Path) -> None:
    data = _never_computed((1, 121, 99))
    wrong = tmp_path / "wrong_size.tif"
    tifffile.imwrite(wrong, np.ones((120, 99), dtype=np.uint8))
    with pytest.raises(
        InputValueError,
        match=r"wrong_size.tif: the annotation raster is \(120, 99\) pixels but the image is "
        r"\(121, 99\); draw the annotations on the image's own grid",
    ):
        PixelClassifier(labels=str(wrong)).fit(data, None)
    one_class = tmp_path / "one_class.tif"
    tifffile.imwrite(one_class, np.pad(np.ones((1, 1), np.uint8), ((60, 60), (49, 49))))
    with pytest.raises(InputValueError, match=r"one_class.tif: .* at least 2 classes; .* \[1\]"):
        PixelClassifier(labels=str(one_class)).fit(data, None)
    too_big = tmp_path / "too_big.tif"
    tifffile.imwrite(too_big, np.arange(121 * 99, dtype=np.uint16).reshape(121, 99) % 300)
    with pytest.raises(InputValueError, match=r"too_big.tif: class ids are 1 to 255 .* \[256,"):
        PixelClassifier(labels=str(too_big)).fit(data, None)
    floats = tmp_path / "floats.tif"
    tifffile.imwrite(floats, np.ones((121, 99), dtype=np.float32))
    with pytest.raises(InputValueError, match="integer class ids; it is float32"):
        PixelClassifier(labels=str(floats)).fit(data, None)
    missing = tmp_path / "missing.tif"
    with pytest.raises(OSError, match=r"missing\.tif: no such file"):
        PixelClassifier(labels=str(missing)).fit(data, None)


def test_annotated_pixels_of_a_single_class_with_data_are_refused() -> None:
    values = _landsat()[:1]
    valid = np.ones(values.shape[1:], dtype=bool)
    valid[:10] = False
    step = PixelClassifier(points={1: [[50, 50]], 2: [[5, 5]]}, **SMALL)
    with pytest.raises(InputValueError, match=r"hold class \[1\] only"):
        step.fit(da.from_array(values, chunks=50), da.from_array(valid, chunks=50))
