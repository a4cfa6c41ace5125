"""label_polygons / write_polygons: one valid feature per label, whole across seams,
covering exactly its pixels, written complete or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio.features
import shapely
from affine import Affine
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pyproj import CRS
from scipy import ndimage

import pipeline
from pipeline.data import sample_path
from pipeline.errors import InputValueError, OutputExistsError, UnsupportedInputError
from pipeline.io._polygons import label_polygons, write_polygons

IDENTITY = Affine.identity()
# Pixel sizes and origins that are not binary fractions: a pixel corner computed
# from two chunks' own transforms would differ in the last bits.
TENTH = Affine(0.1, 0.0, 500_000.3, 0.0, -0.1, 4_000_000.7)


@pytest.fixture(autouse=True)
def threads() -> Iterator[None]:
    with dask.config.set(scheduler="threads"):
        yield


@dataclass(frozen=True)
class Scene:
    nir: da.Array  # band 4 of the bundled Landsat scene, as read
    labels: np.ndarray  # scipy.ndimage.label(nir > 60)
    transform: Affine
    crs: str


@pytest.fixture(scope="module")
def landsat() -> Scene:
    image = pipeline.open_image(sample_path("L7_ETMs.tif"))
    nir = image.data[3]
    labels, count = ndimage.label(nir.compute(scheduler="threads") > 60)
    assert count > 100  # a real label map, not a handful of objects
    assert image.crs is not None
    return Scene(nir, labels.astype(np.uint32), image.transform, image.crs)


@pytest.fixture(scope="module")
def landsat_whole(landsat: Scene) -> gpd.GeoDataFrame:
    """The features of the Landsat labels computed as one chunk: no seams at all."""
    with dask.config.set(scheduler="threads"):
        return label_polygons(
            da.from_array(landsat.labels, chunks=landsat.labels.shape),
            transform=landsat.transform,
            crs=landsat.crs,
        )


def assert_features_match(
    features: gpd.GeoDataFrame, labels: np.ndarray, transform: Affine = IDENTITY
) -> None:
    """One valid feature per label, sorted, each covering exactly its label's pixels."""
    values, counts = np.unique(labels[labels != 0], return_counts=True)
    assert len(features) == values.size
    np.testing.assert_array_equal(features["label"].to_numpy(), values)
    geometries = features.geometry.to_numpy()
    assert shapely.is_valid(geometries).all(), shapely.is_valid_reason(geometries)
    assert set(features.geom_type) <= {"Polygon", "MultiPolygon"}
    pixel = abs(transform.determinant)
    # Exact up to the rounding of map coordinates: 1e-9 of a 0.1 m pixel at x = 500 km.
    np.testing.assert_allclose(shapely.area(geometries), counts * pixel, rtol=1e-8)
    union = shapely.union_all(geometries)
    np.testing.assert_allclose(union.area, counts.sum() * pixel, rtol=1e-8)
    if values.size:  # burnt back into a raster, the polygons give the label map again
        burnt = rasterio.features.rasterize(
            zip(geometries, range(1, values.size + 1), strict=True),
            out_shape=labels.shape,
            transform=transform,
            dtype=np.int32,
        )
        np.testing.assert_array_equal(np.concatenate([[0], values])[burnt], labels)


def assert_same_geometries(features: gpd.GeoDataFrame, reference: gpd.GeoDataFrame) -> None:
    np.testing.assert_array_equal(features["label"], reference["label"])
    same = shapely.equals(features.geometry.to_numpy(), reference.geometry.to_numpy())
    assert same.all(), f"labels {features['label'][~same].tolist()[:10]} differ"


def exploding(shape: tuple[int, ...] = (40, 40), dtype: Any = np.uint32) -> da.Array:
    """A label array that fails the test if a single chunk of it is computed."""

    def explode(block: np.ndarray) -> np.ndarray:
        raise AssertionError("a chunk was computed before the arguments were checked")

    return da.zeros(shape, chunks=20, dtype=dtype).map_blocks(explode, dtype=dtype)


# --- features ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [64, (37, 53), (200, 17), (352, 349)])
def test_landsat_features_cover_their_pixels(
    landsat: Scene, landsat_whole: gpd.GeoDataFrame, chunks: int | tuple[int, int]
) -> None:
    labels = da.from_array(landsat.labels, chunks=chunks)
    features = label_polygons(labels, transform=landsat.transform, crs=landsat.crs)
    assert_features_match(features, landsat.labels, landsat.transform)
    assert CRS(features.crs).equals(CRS(landsat.crs))
    assert features["label"].dtype == np.uint32
    assert_same_geometries(features, landsat_whole)  # dissolved = never cut


def test_labels_of_pipeline_label(landsat: Scene) -> None:
    labels, num = pipeline.label(landsat.nir.rechunk(48) > 60)
    features = label_polygons(labels, transform=landsat.transform, crs=landsat.crs)
    assert len(features) == num == landsat.labels.max()
    assert_features_match(features, labels.compute(), landsat.transform)


@pytest.mark.parametrize("transform", [None, TENTH])
def test_object_across_four_chunks_is_one_polygon_with_its_hole(
    transform: Affine | None,
) -> None:
    rows, cols = np.mgrid[:128, :128]
    radius = np.hypot(rows - 63.5, cols - 63.5)
    labels = np.zeros((128, 128), np.uint32)
    labels[(radius >= 8) & (radius < 20)] = 7  # a ring around the corner of four chunks
    labels[2:5, 2:5] = 3
    ring = np.argwhere(labels == 7)
    assert len({(r // 64, c // 64) for r, c in ring}) == 4

    features = label_polygons(da.from_array(labels, chunks=64), transform=transform)
    assert_features_match(features, labels, transform or IDENTITY)
    pixel = abs((transform or IDENTITY).determinant)
    (geometry,) = features.geometry[features["label"] == 7]
    assert geometry.geom_type == "Polygon"
    assert len(geometry.interiors) == 1
    hole = shapely.Polygon(geometry.interiors[0])
    np.testing.assert_allclose(hole.area, (radius < 8).sum() * pixel, rtol=1e-9)
    np.testing.assert_allclose(geometry.area, len(ring) * pixel, rtol=1e-9)


@pytest.mark.parametrize("chunks", [60, 30, 7])
def test_label_in_separate_pieces_is_one_multipolygon(chunks: int) -> None:
    labels = np.zeros((60, 60), np.int32)
    labels[2:6, 2:6] = labels[40:50, 40:50] = 5  # far apart
    labels[10:12, 10:12] = labels[20:22, 20:22] = 9  # in one chunk of 30
    labels[25, 25] = labels[26, 26] = 4  # corners touch: two 4-connected pieces
    labels[29, 29] = labels[30, 30] = 6  # the same, at the corner of four chunks of 30
    labels[14:18, 28:33] = labels[55:58, 5:8] = 8  # one piece across a seam, one apart
    features = label_polygons(da.from_array(labels, chunks=chunks)).set_index("label")
    assert_features_match(features.reset_index(), labels)
    for label in (4, 5, 6, 8, 9):
        geometry = features.geometry[label]
        assert geometry.geom_type == "MultiPolygon", label
        assert len(geometry.geoms) == 2, label


@pytest.mark.parametrize("chunks", [64, 9, 4])
def test_holes_are_kept(chunks: int) -> None:
    labels = np.zeros((64, 64), np.uint16)
    labels[3:8, 3:8] = 1
    labels[5, 5] = 0  # a hole of background
    labels[10:30, 10:30] = 2
    labels[15:25, 15:25] = 0
    labels[18:22, 18:22] = 3  # an object in the hole of another
    labels[40:50, 40:50] = 4
    labels[42:44, 42:44] = labels[46:48, 46:48] = 0  # two holes
    features = label_polygons(da.from_array(labels, chunks=chunks)).set_index("label")
    assert_features_match(features.reset_index(), labels)
    holes = {label: len(features.geometry[label].interiors) for label in features.index}
    assert holes == {1: 1, 2: 1, 3: 0, 4: 2}


@pytest.mark.parametrize(
    ("dtype", "offset"),
    [
        (np.uint8, 0),
        (np.int16, 0),
        (np.uint16, 60_000),
        (np.int32, 2**31 - 100),
        (np.uint32, 2**32 - 100),  # above what rasterio's int32 buffer holds
        (np.int64, -(2**40)),  # negative labels are objects too
        (np.uint64, 2**63 + 12_345),
    ],
)
def test_label_dtypes_and_values_are_kept(dtype: Any, offset: int) -> None:
    noise = ndimage.gaussian_filter(np.random.default_rng(3).random((90, 70)), 2)
    base, count = ndimage.label(noise > np.quantile(noise, 0.6))
    assert 0 < count < 90
    labels = np.zeros(base.shape, dtype)
    objects = base > 0
    step = 1 if offset >= 0 else -1  # labels offset + 1, offset + 2, ... or offset - 1, ...
    labels[objects] = np.asarray(offset, dtype) + (step * base[objects]).astype(dtype)
    features = label_polygons(da.from_array(labels, chunks=(32, 24)))
    assert features["label"].dtype == dtype
    assert_features_match(features, labels)


@given(
    labels=hnp.arrays(
        np.uint32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=st.integers(0, 4)
    ),
    data=st.data(),
)
def test_any_chunking_gives_the_pixels_back(labels: np.ndarray, data: st.DataObject) -> None:
    chunks = tuple(
        data.draw(st.integers(1, side), label=f"chunk {i}") for i, side in enumerate(labels.shape)
    )
    features = label_polygons(da.from_array(labels, chunks=chunks))
    assert_features_match(features, labels)


def test_chunks_of_one_pixel() -> None:
    labels = np.random.default_rng(1).integers(0, 3, (11, 13)).astype(np.uint32)
    features = label_polygons(da.from_array(labels, chunks=1))
    assert_features_match(features, labels)
    assert_same_geometries(features, label_polygons(labels))


def test_small_batches_give_the_same_features(
    landsat: Scene, landsat_whole: gpd.GeoDataFrame
) -> None:
    labels = da.from_array(landsat.labels, chunks=(64, 80))
    assert labels.npartitions > 2
    with dask.config.set({"segpipe.batch-size": 2}):
        features = label_polygons(labels, transform=landsat.transform, crs=landsat.crs)
    assert_same_geometries(features, landsat_whole)


def test_numpy_labels_and_no_objects() -> None:
    labels = np.zeros((5, 6), np.uint32)
    empty = label_polygons(labels)
    assert len(empty) == 0 and list(empty.columns) == ["label", "geometry"]
    labels[1:3, 2:5] = 4
    features = label_polygons(labels, transform=TENTH)
    assert_features_match(features, labels, TENTH)
    (x0, y0), (x1, y1) = TENTH @ (2, 3), TENTH @ (5, 1)  # map corners of the object
    np.testing.assert_allclose(features.total_bounds, [x0, y0, x1, y1], rtol=0, atol=1e-9)


@pytest.mark.cluster
def test_on_a_cluster_of_processes(
    cluster_client: object, landsat: Scene, landsat_whole: gpd.GeoDataFrame
) -> None:
    assert dask.config.get("scheduler") == "dask.distributed"
    labels = da.from_array(landsat.labels, chunks=(100, 90))
    features = label_polygons(labels, transform=landsat.transform, crs=landsat.crs)
    assert_features_match(features, landsat.labels, landsat.transform)
    assert_same_geometries(features, landsat_whole)


# --- files ------------------------------------------------------------------------------


class FormatContract:
    """What every polygon format must do; subclassed once per format."""

    suffix: ClassVar[str]
    unset_crs: ClassVar[int | None] = None  # the EPSG code readers assume without a CRS
    writer: ClassVar[tuple[Any, str]]  # (module or class, name) of the call that writes

    @staticmethod
    def read(path: Path) -> gpd.GeoDataFrame:
        return pyogrio.read_dataframe(path)

    def test_round_trip_with_crs_and_table(self, landsat: Scene, tmp_path: Path) -> None:
        values, counts = np.unique(landsat.labels[landsat.labels != 0], return_counts=True)
        table = pd.DataFrame(
            {
                "label": np.concatenate([values[::-1], [10**6]]),  # any order; one extra row
                "pixels": np.concatenate([counts[::-1], [0]]),
                "name": [f"object {v}" for v in values[::-1]] + ["absent"],
            }
        ).drop(index=[5])  # one label without a row
        out = write_polygons(
            da.from_array(landsat.labels, chunks=(37, 53)),
            tmp_path / f"objects{self.suffix}",
            transform=landsat.transform,
            crs=landsat.crs,
            table=table,
        )
        assert out == tmp_path / f"objects{self.suffix}"
        assert names(tmp_path) == [out.name]
        back = self.read(out).sort_values("label", ignore_index=True)
        assert len(back) == values.size
        assert back.crs is not None and back.crs.to_epsg() == 31985
        assert CRS(back.crs).equals(CRS(landsat.crs))
        np.testing.assert_array_equal(back["label"], values)
        missing = values[::-1][5]
        joined = back["label"] != missing
        np.testing.assert_array_equal(back["pixels"][joined], counts[values != missing])
        assert back["name"][joined].tolist() == [f"object {v}" for v in values[values != missing]]
        assert back[~joined]["name"].isna().all()
        area = abs(landsat.transform.determinant)
        np.testing.assert_allclose(back.area, counts * area, rtol=1e-9)
        assert back.is_valid.all()

    def test_pixel_coordinates_without_crs(self, tmp_path: Path) -> None:
        labels = np.zeros((6, 9), np.uint64)
        labels[1:4, 2:8] = 2**40
        labels[2, 4] = 0
        out = write_polygons(da.from_array(labels, chunks=4), tmp_path / f"a{self.suffix}")
        back = self.read(out)
        assert (back.crs and back.crs.to_epsg()) == self.unset_crs
        assert back["label"].tolist() == [2**40]
        assert shapely.area(back.geometry.to_numpy()).tolist() == [17.0]
        assert back.total_bounds.tolist() == [2.0, 1.0, 8.0, 4.0]  # y grows down

    def test_no_objects(self, tmp_path: Path) -> None:
        out = write_polygons(np.zeros((4, 4), np.uint32), tmp_path / f"none{self.suffix}")
        assert len(self.read(out)) == 0

    def test_existing_output_refused_before_computing(self, tmp_path: Path) -> None:
        out = tmp_path / f"objects{self.suffix}"
        out.write_bytes(b"precious")
        with pytest.raises(OutputExistsError, match="already exists"):
            write_polygons(exploding(), out)
        assert out.read_bytes() == b"precious"
        labels = np.ones((3, 3), np.uint32)
        write_polygons(labels, out, overwrite=True)
        assert len(self.read(out)) == 1
        assert names(tmp_path) == [out.name]

    def test_failed_write_leaves_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        owner, name = self.writer
        write = getattr(owner, name)

        def write_then_fail(*args: Any, **kwargs: Any) -> None:
            write(*args, **kwargs)  # a whole file under the staging name, then a crash
            raise OSError("No space left on device")

        monkeypatch.setattr(owner, name, write_then_fail)
        labels = np.arange(16, dtype=np.uint32).reshape(4, 4)
        with pytest.raises(OSError, match="No space"):
            write_polygons(labels, tmp_path / f"new{self.suffix}")
        assert names(tmp_path) == []
        old = tmp_path / f"old{self.suffix}"
        old.write_bytes(b"previous run")
        with pytest.raises(OSError, match="No space"):
            write_polygons(labels, old, overwrite=True)
        assert names(tmp_path) == [old.name]
        assert old.read_bytes() == b"previous run"


class TestGeoPackage(FormatContract):
    suffix = ".gpkg"
    writer = (pyogrio, "write_dataframe")

    def test_one_layer_named_after_the_file(self, tmp_path: Path) -> None:
        out = write_polygons(np.eye(3, dtype=np.uint8), tmp_path / "Objects.GPKG")
        assert pyogrio.list_layers(out).tolist() == [["Objects", "MultiPolygon"]]


class TestGeoJSON(FormatContract):
    suffix = ".geojson"
    unset_crs = 4326  # RFC 7946: coordinates are WGS 84 longitude, latitude
    writer = (pyogrio, "write_dataframe")


class TestJSON(TestGeoJSON):
    suffix = ".json"


class TestGeoParquet(FormatContract):
    suffix = ".parquet"
    writer = (gpd.GeoDataFrame, "to_parquet")

    @staticmethod
    def read(path: Path) -> gpd.GeoDataFrame:
        return gpd.read_parquet(path)

    def test_mixed_polygons_kept(self, tmp_path: Path) -> None:
        labels = np.array([[1, 0, 1], [0, 0, 0], [2, 2, 0]], np.uint32)
        back = self.read(write_polygons(labels, tmp_path / "a.parquet"))
        assert back.geom_type.tolist() == ["MultiPolygon", "Polygon"]


def test_labels_beyond_int64_need_parquet(tmp_path: Path) -> None:
    labels = np.zeros((3, 3), np.uint64)
    labels[0, 0], labels[2, 2] = 2**63 + 5, 7
    with pytest.raises(InputValueError, match=r"9223372036854775813 is above .*\.parquet"):
        write_polygons(labels, tmp_path / "a.gpkg")
    assert names(tmp_path) == []
    back = gpd.read_parquet(write_polygons(labels, tmp_path / "a.parquet"))
    assert back["label"].tolist() == [7, 2**63 + 5]


def names(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden staging names included."""
    return sorted(p.name for p in folder.iterdir())


# --- arguments, checked before a chunk is computed ---------------------------------------


@pytest.mark.parametrize("name", ["a.shp", "a.txt", "a", "a.gpkg.zip"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputValueError, match=r"\.gpkg, \.geojson, \.json, \.parquet") as error:
        write_polygons(exploding(), tmp_path / name)
    assert name in str(error.value)
    assert names(tmp_path) == []


@pytest.mark.parametrize("shape", [(2, 40, 40), (40,)])
def test_not_2d(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputValueError, match="polygons need a 2D label map"):
        write_polygons(exploding(shape), tmp_path / "a.gpkg")
    with pytest.raises(InputValueError, match="polygons need a 2D label map"):
        label_polygons(exploding(shape))
    assert names(tmp_path) == []


@pytest.mark.parametrize("dtype", [np.float32, np.bool_])
def test_labels_must_be_integers(dtype: Any) -> None:
    with pytest.raises(UnsupportedInputError, match=f"integers.*{np.dtype(dtype)}"):
        label_polygons(exploding(dtype=dtype))


@pytest.mark.parametrize(
    ("table", "error", "message"),
    [
        (pd.DataFrame({"id": [1], "kind": ["a"]}), InputValueError, r"no 'label' column.*'id'"),
        (
            pd.DataFrame({"kind": ["a"]}, index=pd.Index([1], name="label")),
            InputValueError,
            "reset_index",
        ),
        (pd.DataFrame({"label": [1, 2, 1]}), InputValueError, r"one row per label.*\[1\]"),
        (pd.DataFrame({"label": ["1"]}), InputValueError, "integer labels"),
        (pd.DataFrame({"label": [1], "geometry": ["x"]}), InputValueError, "'geometry' column"),
        (pd.DataFrame({"label": [1], "z": [1j]}), UnsupportedInputError, r"\['z'\]"),
        ({"label": [1]}, UnsupportedInputError, "pandas DataFrame"),
    ],
)
def test_bad_table(tmp_path: Path, table: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        write_polygons(exploding(), tmp_path / "a.gpkg", table=table)
    assert names(tmp_path) == []


@pytest.mark.parametrize(
    ("transform", "crs", "error", "message"),
    [
        (None, "EPSG:31985", InputValueError, "crs is given but transform is None"),
        (TENTH, "EPSG:99999999", InputValueError, "EPSG:99999999"),
        (Affine(1, 0, 0, 2, 0, 0), None, InputValueError, "not invertible"),
        ((1, 0, 0, 0, 1, 0), None, UnsupportedInputError, "affine.Affine"),
    ],
)
def test_bad_georeferencing(
    tmp_path: Path, transform: Any, crs: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        write_polygons(exploding(), tmp_path / "a.gpkg", transform=transform, crs=crs)
    with pytest.raises(error, match=message):
        label_polygons(exploding(), transform=transform, crs=crs)
    assert names(tmp_path) == []
