"""Annotations from vector files: the pixels they annotate against rasterio's
``rasterize`` / ``rowcol`` on the whole grid, the steps trained or seeded from them
against the same pixels given inline, and every bad file refused before any work."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import geopandas
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pydantic import ValidationError
from rasterio.features import rasterize
from rasterio.transform import rowcol
from scipy import ndimage
from skimage.segmentation import flood

import pipeline
from pipeline.data import sample_path
from pipeline.errors import InputValueError, ReadError
from pipeline.io._vectors import read_annotations
from pipeline.kernels import Grid, PixelClassifier, RegionGrow
from pipeline.kernels._classifier import pixel_features
from pipeline.workflow._run import run_spec

LANDSAT = sample_path("L7_ETMs.tif")
FORMATS = ["gpkg", "geojson", "shp", "parquet"]
# Training areas in pixel coordinates (x = column, y = row; vertices off the pixel
# centres): a triangle, boxes, a multipolygon, a polygon with a hole, and one that
# reaches past the image's right edge (349 columns), which is cut at the edge.
AREAS: list[tuple[int, Any]] = [
    (1, shapely.Polygon([(10.3, 12.2), (40.7, 15.1), (30.2, 44.9)])),
    (1, shapely.box(260.4, 290.6, 270.2, 310.3)),
    (2, shapely.box(200.4, 100.6, 240.2, 130.3)),
    (
        2,
        shapely.MultiPolygon(
            [shapely.box(50.4, 250.6, 60.3, 262.2), shapely.box(70.2, 250.1, 80.9, 258.7)]
        ),
    ),
    (
        3,
        shapely.box(150.3, 150.3, 190.8, 190.6).difference(shapely.box(160.2, 160.2, 170.7, 170.7)),
    ),
    (3, shapely.Polygon([(330.4, 300.2), (360.0, 305.0), (340.3, 340.8)])),
]
SPOTS: list[tuple[int, Any]] = [
    (1, shapely.Point(0.2, 0.7)),
    (1, shapely.MultiPoint([(300.5, 340.5), (301.9, 341.1)])),
    (2, shapely.Point(348.99, 351.99)),
    (3, shapely.Point(120.5, 80.25)),
]


@pytest.fixture(scope="module")
def scene() -> Grid:
    with rasterio.open(LANDSAT) as src:
        return Grid(
            shape=src.shape, crs=src.crs.to_wkt(), transform=src.transform, source=str(LANDSAT)
        )


def frame(features: list[tuple[int, Any]], grid: Grid, crs: str | None = None) -> Any:
    """``features`` (class, geometry in pixel coordinates) as map features on ``grid``,
    in ``crs`` (default the grid's), with their class in the field ``class``."""
    moved = [shapely.affinity.affine_transform(g, grid.transform.to_shapely()) for _, g in features]
    shapes = geopandas.GeoDataFrame(
        {"class": [c for c, _ in features]}, geometry=moved, crs=grid.crs
    )
    return shapes if crs is None else shapes.to_crs(crs)


def write(shapes: Any, path: Path) -> Path:
    if path.suffix == ".parquet":
        shapes.to_parquet(path)
    else:  # a Shapefile holds one geometry type: points and multipoints as multipoints
        shapes.to_file(path, promote_to_multi=path.suffix == ".shp")
    return path


def read_back(path: Path) -> Any:
    """The file as geopandas reads it: the test's own reading, independent of segpipe's."""
    return geopandas.read_parquet(path) if path.suffix == ".parquet" else geopandas.read_file(path)


def on_grid(path: Path, grid: Grid, geometries: Any) -> np.ndarray:
    """The annotated pixels of ``path`` as a class raster on ``grid``."""
    coords, classes = read_annotations(
        path,
        grid.shape,
        crs=grid.crs,
        transform=grid.transform,
        geometries=geometries,
        class_field="class",
    )
    assert np.all(np.diff(np.ravel_multi_index(tuple(coords.T), grid.shape)) > 0)  # sorted, once
    raster = np.zeros(grid.shape, dtype=np.uint8)
    raster[tuple(coords.T)] = classes
    return raster


def rasterised(path: Path, grid: Grid) -> np.ndarray:
    """rasterize() of the file's polygons, reprojected by geopandas, on the whole grid."""
    shapes = read_back(path).to_crs(grid.crs)
    return rasterize(
        zip(shapes.geometry, shapes["class"], strict=True),
        out_shape=grid.shape,
        transform=grid.transform,
        all_touched=False,
        fill=0,
        dtype="uint8",
    )


@pytest.mark.parametrize("crs", [None, "EPSG:4326"], ids=["image_crs", "wgs84"])
@pytest.mark.parametrize("suffix", FORMATS)
def test_polygons_annotate_the_pixels_rasterize_burns(
    tmp_path: Path, scene: Grid, suffix: str, crs: str | None
) -> None:
    path = write(frame(AREAS, scene, crs), tmp_path / f"areas.{suffix}")
    expected = rasterised(path, scene)
    assert np.unique(expected).tolist() == [0, 1, 2, 3]
    assert expected[:, -1].any()  # the polygon cut at the image's right edge
    np.testing.assert_array_equal(on_grid(path, scene, "polygons"), expected)


@pytest.mark.parametrize("crs", [None, "EPSG:4326"], ids=["image_crs", "wgs84"])
@pytest.mark.parametrize("suffix", FORMATS)
def test_points_annotate_the_pixel_holding_them(
    tmp_path: Path, scene: Grid, suffix: str, crs: str | None
) -> None:
    path = write(frame(SPOTS, scene, crs), tmp_path / f"points.{suffix}")
    shapes = read_back(path).to_crs(scene.crs)
    expected = np.zeros(scene.shape, dtype=np.uint8)
    for cls, geometry in zip(shapes["class"], shapes.geometry, strict=True):
        xy = shapely.get_coordinates(geometry)
        expected[rowcol(scene.transform, xy[:, 0], xy[:, 1])] = cls
    assert np.count_nonzero(expected) == 5
    assert expected[0, 0] == 1 and expected[351, 348] == 2  # the two corners
    np.testing.assert_array_equal(on_grid(path, scene, "points"), expected)


def test_without_crs_nor_transform_features_are_in_pixel_coordinates(tmp_path: Path) -> None:
    grid = Grid(shape=(40, 60))  # a microscopy image: no CRS, no transform
    shapes = geopandas.GeoDataFrame(
        {"class": [1, 2]}, geometry=[shapely.box(2, 3, 6, 5), shapely.Point(10.5, 30.9)]
    )
    with pytest.warns(UserWarning, match="'crs' was not provided"):
        path = write(shapes, tmp_path / "cells.gpkg")
    expected = np.zeros(grid.shape, dtype=np.uint8)
    expected[3:5, 2:6] = 1  # x = column 2 to 6, y = row 3 to 5: centres 2.5 .. 5.5, 3.5, 4.5
    expected[30, 10] = 2
    np.testing.assert_array_equal(on_grid(path, grid, "any"), expected)


def small_landsat(tmp_path: Path) -> tuple[Path, np.ndarray, Grid]:
    """A 6-band crop of the scene as a GeoTIFF, its pixels and its grid."""
    with rasterio.open(LANDSAT) as src:
        values = src.read(window=rasterio.windows.Window(120, 100, 160, 150))
        profile = {**src.profile, "width": 160, "height": 150}
        profile["transform"] = src.transform @ Affine.translation(120, 100)
    path = tmp_path / "crop.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
    return (
        path,
        values,
        Grid(shape=(150, 160), crs=profile["crs"].to_wkt(), transform=profile["transform"]),
    )


def test_a_workflow_trains_on_a_geopackage_as_on_its_pixels_given_inline(tmp_path: Path) -> None:
    source, values, grid = small_landsat(tmp_path)
    areas = [
        (1, shapely.box(10.3, 12.2, 40.7, 30.1)),
        (2, shapely.Polygon([(80.2, 20.4), (120.7, 25.1), (100.2, 60.9)])),
        (3, shapely.box(60.5, 100.5, 90.2, 130.8)),
    ]
    write(frame(areas, grid, "EPSG:4326"), tmp_path / "train.gpkg")
    reference = rasterised(tmp_path / "train.gpkg", grid)
    points = {int(c): np.argwhere(reference == c).tolist() for c in (1, 2, 3)}
    params = {"sigma_max": 2, "trees": 5}
    flow = pipeline.Workflow(
        source=str(source),
        steps=[
            {"pixel_classifier": {"polygons": "train.gpkg", "class_field": "class", **params}},
            "label",
        ],
        output={"labels": "regions.zarr", "classes": "classes.zarr"},
        chunks=64,
        base=tmp_path,  # train.gpkg is taken from the workflow's folder
    )
    with dask.config.set(scheduler="threads"):
        result = run_spec(flow.spec, flow.base)
    inline = PixelClassifier(points=points, **params)
    forest = inline.fit(da.from_array(values, chunks=(6, 64, 64)), None)
    features = pixel_features(values, inline)
    expected = forest.predict(features.reshape(-1, features.shape[-1])).reshape(grid.shape)
    classes = pipeline.open_image(str(result.outputs["classes"])).data.compute()
    np.testing.assert_array_equal(np.squeeze(classes), expected)
    assert (
        "polygons=" in result.record["steps"][0]
        and "class_field='class'" in result.record["steps"][0]
    )


def test_a_step_read_on_the_grid_is_pickled_without_its_annotations(
    tmp_path: Path, scene: Grid
) -> None:
    path = write(frame(AREAS, scene), tmp_path / "areas.gpkg")
    given = PixelClassifier(polygons=str(path), class_field="class")
    read = given.on_grid(scene)
    assert isinstance(read, PixelClassifier) and read is not given
    coords, _ = read._annotations(scene.shape)
    assert coords.shape[0] == np.count_nonzero(rasterised(path, scene)) > 1000
    sent = pickle.dumps(read)
    assert len(sent) < len(pickle.dumps(given)) + 200  # the pixels stay on the client
    with pytest.raises(InputValueError, match=r"areas.gpkg is read on the image's grid: call"):
        pickle.loads(sent).fit(da.zeros((6, *scene.shape), chunks=100), None)


def test_region_grow_from_a_point_file_grows_like_flood(tmp_path: Path, scene: Grid) -> None:
    seed = (340, 300)  # in the sea, as in tests/test_kernels_grow.py
    spot = [(1, shapely.Point(seed[1] + 0.5, seed[0] + 0.5))]
    write(frame(spot, scene, "EPSG:4326"), tmp_path / "seeds.geojson")
    steps = [{"region_grow": {"seeds": "seeds.geojson", "tolerance": 12}}, "label"]
    result = grow(tmp_path, steps)
    with rasterio.open(LANDSAT) as src:
        band = src.read(5)
    np.testing.assert_array_equal(result, flood(band, seed, tolerance=12, connectivity=1))


def test_region_grow_from_polygons_seeds_every_pixel_they_cover(
    tmp_path: Path, scene: Grid
) -> None:
    seeds = [(1, shapely.box(295.2, 335.3, 298.9, 337.8)), (1, shapely.Point(20.5, 20.5))]
    path = write(frame(seeds, scene), tmp_path / "seeds.parquet")
    box, point = read_back(path).geometry
    pixels = np.argwhere(rasterize([box], out_shape=scene.shape, transform=scene.transform))
    pixels = np.vstack([pixels, [rowcol(scene.transform, point.x, point.y)]])
    assert len(pixels) == 13  # 4 x 3 pixel centres in the box, and the point's pixel
    result = grow(tmp_path, [{"region_grow": {"seeds": str(path), "tolerance": 5}}, "label"])
    with rasterio.open(LANDSAT) as src:
        band = src.read(5)
    values = band[tuple(pixels.T)].astype(float)
    inside = ((band >= values.min() - 5) & (band <= values.max() + 5)).astype(np.uint8)
    expected = np.zeros(scene.shape, dtype=bool)
    for pixel in pixels:
        expected |= flood(inside, tuple(pixel), connectivity=1)
    assert ndimage.label(expected)[1] >= 2 and expected.sum() > 1000
    np.testing.assert_array_equal(result, expected)


def grow(tmp_path: Path, steps: list) -> np.ndarray:
    flow = pipeline.Workflow(
        source={"path": str(LANDSAT), "bands": [5]},
        steps=steps,
        output=str(tmp_path / "grown.zarr"),
        chunks=64,
        base=tmp_path,
    )
    with dask.config.set(scheduler="threads"):
        result = run_spec(flow.spec, flow.base)
    assert result.labels is not None
    return np.asarray(result.labels.compute() > 0)


# Bad files ---------------------------------------------------------------------------


def features(*items: tuple[Any, Any], field: str = "class", crs: bool = True) -> Any:
    """Features (class, geometry in pixel coordinates of the scene) to write, their
    class in ``field``, in the scene's CRS or with none."""

    def make(grid: Grid) -> Any:
        shapes = frame([(0, g) for _, g in items], grid)
        return geopandas.GeoDataFrame(
            {field: [c for c, _ in items]},
            geometry=list(shapes.geometry),
            crs=grid.crs if crs else None,
        )

    return make


BOX = shapely.box(10.3, 10.3, 20.7, 20.7)
ELSEWHERE = shapely.box(100.3, 100.3, 120.7, 120.7)
BAD: list[tuple[str, Callable[[Grid], Any], str]] = [
    (
        "fields",
        features((1, BOX), (2, ELSEWHERE), field="kind"),
        r"has no field 'class'; its fields are: kind; set class_field",
    ),
    (
        "zero",
        features((1, BOX), (0, ELSEWHERE)),
        r"feature fid 2 has class 0 in field 'class'; give each feature an integer class 1 to 255",
    ),
    ("too_big", features((256, BOX), (2, ELSEWHERE)), r"feature fid 1 has class 256"),
    ("null", features((1, BOX), (None, ELSEWHERE)), r"feature fid 2 has class null"),
    ("fraction", features((1.5, BOX), (2, ELSEWHERE)), r"feature fid 1 has class 1.5"),
    (
        "text",
        features(("water", BOX), ("land", ELSEWHERE)),
        r"field 'class' holds .* values \(e.g. 'water'\), not class ids",
    ),
    (
        "outside",
        features((1, BOX), (2, shapely.box(500.5, 10.5, 520.5, 20.5))),
        r"feature fid 2 lies outside the image: its bounds are pixels .* check the file's CRS",
    ),
    (
        "line",
        features((1, BOX), (2, shapely.LineString([(5, 5), (50, 50)]))),
        r"feature fid 2 is a LineString; these annotations take Polygon, MultiPolygon features",
    ),
    (
        "tiny",
        features((1, BOX), (2, shapely.box(30.1, 30.1, 30.4, 30.4))),
        r"feature fid 2 covers no pixel centre of the image; draw it over the centre",
    ),
    (
        "overlap",
        features((1, BOX), (2, shapely.box(20.1, 20.1, 25.6, 25.6))),
        r"features fid 1 \(class 1\) and fid 2 \(class 2\) both cover pixel \[20, 20\]",
    ),
    (
        "one_class",
        features((2, BOX), (2, ELSEWHERE)),
        r"a classifier needs annotations of at least 2 classes; field 'class' holds \[2\]",
    ),
    (
        "no_crs",
        features((1, BOX), (2, ELSEWHERE), crs=False),
        r"the file has no CRS but the image is in SIRGAS 2000 / UTM zone 25S; set the layer's CRS",
    ),
    ("empty", lambda grid: frame([], grid), "holds no feature"),
]


@pytest.mark.parametrize(("name", "make", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_geopackage_is_refused_on_the_grid_naming_the_file_and_feature(
    tmp_path: Path, scene: Grid, name: str, make: Callable[[Grid], Any], message: str
) -> None:
    path = tmp_path / f"{name}.gpkg"
    shapes = make(scene)
    if shapes.crs is None:
        with pytest.warns(UserWarning, match="'crs' was not provided"):
            write(shapes, path)
    else:
        write(shapes, path)
    step = PixelClassifier(polygons=str(path), class_field="class")
    with pytest.raises(InputValueError, match=rf"{name}\.gpkg: {message}"):
        step.on_grid(scene)  # the grid only: no pixel of the image is read


def test_missing_and_unreadable_files_are_read_errors(tmp_path: Path, scene: Grid) -> None:
    step = PixelClassifier(polygons=str(tmp_path / "missing.gpkg"), class_field="class")
    with pytest.raises(ReadError, match=r"missing\.gpkg: no such file; give the path of a"):
        step.on_grid(scene)
    (tmp_path / "notes.gpkg").write_text("not a GeoPackage")
    step = PixelClassifier(points=str(tmp_path / "notes.gpkg"), class_field="class")
    with pytest.raises(
        OSError, match=r"notes\.gpkg: cannot be read as a GeoPackage, GeoJSON, Shapefile"
    ):
        step.on_grid(scene)


def test_points_outside_and_polygons_given_as_points_are_refused(
    tmp_path: Path, scene: Grid
) -> None:
    path = write(
        frame([(1, shapely.Point(5, 5)), (2, shapely.Point(349.2, 3))], scene),
        tmp_path / "p.geojson",
    )
    with pytest.raises(
        InputValueError,
        match=r"p\.geojson: feature fid 1 lies outside the image: point .* is pixel \[3, 349\]",
    ):
        PixelClassifier(points=str(path), class_field="class").on_grid(scene)
    path = write(frame([(1, BOX), (2, ELSEWHERE)], scene), tmp_path / "areas.geojson")
    with pytest.raises(
        InputValueError,
        match=r"feature fid 0 is a Polygon; .* Point, MultiPoint features: save points",
    ):
        PixelClassifier(points=str(path), class_field="class").on_grid(scene)
    with pytest.raises(InputValueError, match=r"seeds.shp: feature fid 0 is a LineString"):
        line = frame([(1, shapely.LineString([(5, 5), (9, 9)]))], scene)
        RegionGrow(seeds=str(write(line, tmp_path / "seeds.shp")), tolerance=3).on_grid(scene)


def test_a_crs_without_a_georeferenced_image_and_a_volume_are_refused(
    tmp_path: Path, scene: Grid
) -> None:
    path = write(frame([(1, BOX), (2, ELSEWHERE)], scene), tmp_path / "areas.gpkg")
    with pytest.raises(
        InputValueError,
        match=r"the file is in SIRGAS 2000 / UTM zone 25S but the image has no CRS to "
        r"reproject to; save the annotations without a CRS, in the image's pixel coordinates",
    ):
        PixelClassifier(polygons=str(path), class_field="class").on_grid(Grid(shape=(352, 349)))
    with pytest.raises(
        InputValueError, match=r"areas\.gpkg: vector annotations are 2D; the image is 3D"
    ):
        PixelClassifier(polygons=str(path), class_field="class").on_grid(Grid(shape=(5, 352, 349)))


def test_a_geopackage_of_several_layers_is_refused(tmp_path: Path, scene: Grid) -> None:
    path = tmp_path / "project.gpkg"
    frame([(1, BOX), (2, ELSEWHERE)], scene).to_file(path, layer="training")
    frame([(1, BOX)], scene).to_file(path, layer="roads")
    with pytest.raises(
        InputValueError,
        match=r"holds 2 layers \(training, roads\); save the annotations as the only layer",
    ):
        PixelClassifier(polygons=str(path), class_field="class").on_grid(scene)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"polygons": "a.gpkg"}, r"give both \(e.g. polygons: training.gpkg, class_field: class\)"),
        (
            {"points": {1: [[0, 0]], 2: [[1, 1]]}, "class_field": "class"},
            "class_field 'class' is for points or polygons given as a vector file; remove it",
        ),
    ],
)
def test_class_field_goes_with_a_vector_file(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PixelClassifier(**params)


def test_a_bad_file_fails_a_run_before_any_chunk_is_computed(tmp_path: Path, scene: Grid) -> None:
    path = write(frame([(1, BOX), (2, ELSEWHERE)], scene), tmp_path / "a.gpkg")
    flow = pipeline.Workflow(
        source=str(LANDSAT),
        steps=[{"pixel_classifier": {"polygons": str(path), "class_field": "kind"}}, "label"],
        output=str(tmp_path / "out.zarr"),
        base=tmp_path,
    )
    with (
        dask.config.set(scheduler=_no_task),
        pytest.raises(InputValueError, match=r"a\.gpkg: has no field 'kind'"),
    ):
        run_spec(flow.spec, flow.base)
    assert not (tmp_path / "out.zarr").exists()


def _no_task(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a dask graph was computed before the annotations were checked")
