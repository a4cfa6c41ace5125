"""read_geotiff against rasterio's own full reads, on real and written GeoTIFFs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cloudpickle  # type: ignore[import-untyped]
import numpy as np
import pytest
import rasterio
import tifffile
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from pipeline.data import sample_path
from pipeline.errors import InputValueError, ReadError, UnsupportedInputError
from pipeline.io._geotiff import read_geotiff
from pipeline.io._open import open_image
from tests.conftest import DATA, WORKFLOW_DATA

L7 = str(sample_path("L7_ETMs.tif"))  # 6 bands, striped, 4 tiled (128) overviews
RGBN = str(WORKFLOW_DATA / "rgbn.tif")  # 4 bands, 64 x 64 tiles
RMNP = str(DATA / "rmnp-rgb.tif")  # 3 bands, striped, nodata 255, EPSG:4326


def reference(path: str, level: int = 0, bands: list[int] | None = None) -> np.ndarray:
    """rasterio's full read of ``level`` (0 = full resolution)."""
    options = {"overview_level": level - 1} if level else {}
    with rasterio.open(path, **options) as src:
        return src.read(indexes=bands)


def write_geotiff(path: Path, data: np.ndarray, **profile: object) -> str:
    """Write ``data`` (bands, rows, columns) as a GeoTIFF, UTM 33N, 10 m pixels."""
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype,
        "crs": CRS.from_epsg(32633),
        "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0),
        **profile,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path)


@pytest.mark.parametrize(
    ("path", "level", "bands", "chunks"),
    [
        (L7, None, None, None),
        (L7, 0, [1, 4], (100, 37)),  # striped: chunks as asked
        (L7, 1, [6, 2], None),
        (L7, 2, None, 50),  # tiled overview: chunks cut its 128 tiles
        (L7, 4, [3], None),
        (RGBN, None, None, None),
        (RGBN, None, [4], 23),  # chunks cut the 64 tiles
        (RGBN, None, None, (65, 200)),
        (RGBN, None, [2, 3], 100_000),  # one chunk, the whole image
        (RMNP, None, None, None),
        (RMNP, None, [3, 1], (50, 77)),
    ],
)
def test_pixels_equal_rasterio(
    path: str, level: int | None, bands: list[int] | None, chunks: object
) -> None:
    image = open_image(path, level=level, bands=bands, chunks=chunks)  # type: ignore[arg-type]
    expected = reference(path, level or 0, bands)
    assert image.axes == "cyx"
    assert image.shape == expected.shape
    assert image.dtype == expected.dtype
    assert image.data.chunks[0] == (expected.shape[0],)  # every band in one chunk
    np.testing.assert_array_equal(image.data.compute(), expected)


@pytest.mark.parametrize("level", range(5))
def test_georeferencing_equals_rasterio_at_every_level(level: int) -> None:
    image = read_geotiff(L7, level=level, bands=None, chunks=None)
    options = {"overview_level": level - 1} if level else {}
    with rasterio.open(L7, **options) as src:
        assert image.crs == src.crs.to_wkt()
        assert image.transform == src.transform
        assert image.spacing == (abs(src.transform.e), src.transform.a)
        assert image.nodata is None
        assert image.level == level
    assert CRS.from_wkt(image.crs) == CRS.from_epsg(31985)
    assert image.units == "m"
    assert image.source == L7


def test_levels_are_full_resolution_then_each_overview() -> None:
    image = read_geotiff(L7, level=None, bands=[1], chunks=None)
    assert image.levels == ((6, 352, 349), (6, 176, 175), (6, 88, 88), (6, 44, 44), (6, 22, 22))
    assert read_geotiff(RGBN, level=None, bands=None, chunks=None).levels == ((4, 403, 515),)


def test_geographic_crs_nodata_and_spacing_in_degrees() -> None:
    image = read_geotiff(RMNP, level=None, bands=None, chunks=None)
    with rasterio.open(RMNP) as src:
        assert image.crs == src.crs.to_wkt()
        assert image.transform == src.transform
        assert image.spacing == (abs(src.transform.e), src.transform.a)
    assert image.units == "degree"
    assert image.nodata == 255


def test_valid_is_false_where_any_band_is_nodata() -> None:
    image = read_geotiff(RMNP, level=None, bands=None, chunks=64)
    expected = ~(reference(RMNP) == 255).any(axis=0)
    assert 0 < expected.sum() < expected.size  # the sample has both
    assert image.valid is not None
    np.testing.assert_array_equal(image.valid.compute(), expected)


def test_valid_is_none_without_nodata_for_integers() -> None:
    assert read_geotiff(RGBN, level=None, bands=None, chunks=None).valid is None


def test_default_chunks_are_the_internal_tiles() -> None:
    assert read_geotiff(RGBN, level=None, bands=None, chunks=None).data.chunksize == (4, 64, 64)
    assert read_geotiff(L7, level=1, bands=None, chunks=None).data.chunksize == (6, 128, 128)


@settings(max_examples=30)
@given(rows=st.integers(8, 600), cols=st.integers(8, 600))
def test_asked_chunks_are_honoured_across_tiles(rows: int, cols: int) -> None:
    image = read_geotiff(RGBN, level=None, bands=[1], chunks=(rows, cols))
    row_chunks, col_chunks = image.data.chunks[1:]
    assert row_chunks[0] == min(rows, 403) and col_chunks[0] == min(cols, 515)
    corner = image.data[:, 50:90, 50:90].compute()  # the pixels, across tiles and chunks
    with rasterio.open(RGBN) as src:
        np.testing.assert_array_equal(corner, src.read([1])[:, 50:90, 50:90])


def test_graph_holds_no_pixels_and_one_task_per_chunk() -> None:
    image = read_geotiff(RGBN, level=None, bands=None, chunks=None)
    graph = dict(image.data.__dask_graph__())
    assert len(graph) == image.data.npartitions == 7 * 9
    assert len(cloudpickle.dumps(graph)) < os.path.getsize(RGBN) / 20


def test_nothing_is_read_until_computed(tmp_path: Path) -> None:
    path = tmp_path / "gone.tif"
    shutil.copyfile(RGBN, path)
    image = open_image(str(path))
    path.unlink()
    with pytest.raises(ReadError, match=r"gone\.tif"):
        image.data.compute()


@pytest.mark.cluster
def test_reads_on_a_cluster_of_processes(cluster_client: object) -> None:
    image = open_image(RGBN, bands=[4, 1], chunks=128)
    np.testing.assert_array_equal(image.data.compute(), reference(RGBN, 0, [4, 1]))
    overview = open_image(L7, level=1)
    np.testing.assert_array_equal(overview.data.compute(), reference(L7, 1))


def test_written_tiled_256_with_overviews_round_trips(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 2**16, (2, 700, 600), dtype=np.uint16)
    path = write_geotiff(
        tmp_path / "tiled.tif", data, tiled=True, blockxsize=256, blockysize=256, compress="lzw"
    )
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4])
    image = open_image(path)
    assert image.data.chunksize == (2, 256, 256)
    assert image.levels == ((2, 700, 600), (2, 350, 300), (2, 175, 150))
    np.testing.assert_array_equal(image.data.compute(), data)
    assert open_image(path, chunks=300).data.chunksize == (2, 300, 300)
    overview = open_image(path, level=2, bands=[2])
    np.testing.assert_array_equal(overview.data.compute(), reference(path, 2, [2]))
    with rasterio.open(path, overview_level=1) as src:
        assert overview.transform == src.transform
        assert overview.transform.a == 40.0


def test_written_float_nodata_and_nan_are_invalid(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((3, 300, 200), dtype=np.float32)
    data[0, 10:20, 30:40] = -9999.0
    data[2, 100:110, 5:9] = np.nan
    path = write_geotiff(
        tmp_path / "float.tif", data, nodata=-9999.0, tiled=True, blockxsize=128, blockysize=128
    )
    image = open_image(path)
    assert image.nodata == -9999.0
    np.testing.assert_array_equal(image.data.compute(), data)
    expected = ~((data == -9999.0) | np.isnan(data)).any(axis=0)
    assert image.valid is not None
    np.testing.assert_array_equal(image.valid.compute(), expected)


def test_written_striped_file_uses_1024_chunks(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 255, (1, 1100, 1300), dtype=np.uint8)
    path = write_geotiff(tmp_path / "striped.tif", data, tiled=False)
    image = open_image(path)
    assert image.data.chunks == ((1,), (1024, 76), (1024, 276))
    assert open_image(path, chunks=(30, 1000)).data.chunksize == (1, 30, 1000)
    np.testing.assert_array_equal(image.data.compute(), data)


def test_file_without_crs_keeps_its_transform(tmp_path: Path) -> None:
    data = np.arange(2 * 30 * 40, dtype=np.int16).reshape(2, 30, 40)
    path = write_geotiff(tmp_path / "nocrs.tif", data, crs=None)
    image = read_geotiff(path, level=None, bands=None, chunks=None)
    assert image.crs is None and image.units is None
    assert image.transform == Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)
    np.testing.assert_array_equal(image.data.compute(), data)


def test_file_without_geotransform_reads_without_warning(tmp_path: Path) -> None:
    data = np.arange(20 * 30, dtype=np.uint8).reshape(1, 20, 30)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, data[0], tile=(16, 16))  # no GeoTIFF tags at all
    image = read_geotiff(str(path), level=None, bands=None, chunks=None)  # warnings are errors
    assert image.data.chunksize == (1, 16, 16)
    assert image.crs is None and image.transform is None and image.spacing is None
    np.testing.assert_array_equal(image.data.compute(), data)


def test_complex_bands_are_unsupported(tmp_path: Path) -> None:
    data = np.ones((1, 8, 8), dtype=np.complex64)
    path = write_geotiff(tmp_path / "complex.tif", data)
    with pytest.raises(UnsupportedInputError, match=r"complex\.tif: band type complex64"):
        open_image(path)


def test_missing_file() -> None:
    with pytest.raises(ReadError, match=r"nowhere\.tif: no such file"):
        open_image("/nowhere/nowhere.tif")
    with pytest.raises(ReadError, match=r"nowhere\.tif: no such file"):
        read_geotiff("/nowhere/nowhere.tif", level=None, bands=None, chunks=None)


def test_truncated_file_fails_at_open(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    shutil.copyfile(RGBN, path)
    os.truncate(path, os.path.getsize(path) * 2 // 3)
    with pytest.raises(ReadError, match=r"cut\.tif: the file is truncated.*download it again"):
        open_image(str(path))


def test_truncated_overview_fails_only_when_read(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    shutil.copyfile(L7, path)
    os.truncate(path, 700_000)  # full resolution intact, overviews 1 to 4 cut
    np.testing.assert_array_equal(open_image(str(path)).data.compute(), reference(L7))
    with pytest.raises(ReadError, match=r"cut\.tif: the file is truncated"):
        open_image(str(path), level=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bands": [7]}, r"L7_ETMs\.tif: band 7 is out of range; it has bands 1 to 6"),
        ({"bands": [0]}, r"L7_ETMs\.tif: band 0 is out of range"),
        ({"bands": 2}, r"L7_ETMs\.tif: bands must be a non-empty list"),
        ({"bands": []}, r"L7_ETMs\.tif: bands must be a non-empty list"),
        ({"level": 5}, r"L7_ETMs\.tif: level 5 does not exist; it has levels 0 to 4"),
        ({"level": -1}, r"L7_ETMs\.tif: level -1 does not exist"),
        ({"chunks": 0}, r"L7_ETMs\.tif: chunks must be a positive integer"),
        ({"chunks": (64, 64, 64)}, r"L7_ETMs\.tif: chunks must be .* \(2 for 'cyx'\)"),
        ({"chunks": "64"}, r"L7_ETMs\.tif: chunks must be a positive integer"),
    ],
)
def test_bad_arguments_name_the_file_and_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(InputValueError, match=message):
        open_image(L7, **kwargs)
