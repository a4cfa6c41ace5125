"""write_cog: label zarr arrays to valid Cloud-Optimised GeoTIFFs, complete or not at all."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rio_cogeo.cogeo import cog_validate
from scipy import ndimage

import pipeline
from pipeline.data import sample_path
from pipeline.errors import InputValueError, ReadError, UnsupportedInputError
from pipeline.io import write_labels_zarr
from pipeline.io._cog import BLOCK, _windows, write_cog


@pytest.fixture(scope="module")
def landsat() -> tuple[np.ndarray, rasterio.crs.CRS, Affine]:
    """Objects of the near-infrared band of the bundled Landsat scene, its CRS and transform."""
    with rasterio.open(sample_path("L7_ETMs.tif")) as source:
        nir = source.read(4)
        crs, transform = source.crs, source.transform
    labels, count = ndimage.label(nir > 60)
    assert count > 100  # a real label map, not a handful of objects
    return labels.astype(np.uint32), crs, transform


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """A 3000 x 2500 label map of smooth random blobs (thousands of objects)."""
    noise = ndimage.gaussian_filter(np.random.default_rng(7).random((3000, 2500)), 5)
    labels, count = ndimage.label(noise > np.quantile(noise, 0.6))
    assert count > 1000
    return labels.astype(np.uint32)


def labels_zarr(labels: np.ndarray, path: Path, chunks: int | tuple[int, int] = 128) -> Path:
    return write_labels_zarr(da.from_array(labels, chunks=chunks), path)


def read_cog(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as dataset:
        return dataset.read(1), {
            "crs": dataset.crs,
            "transform": dataset.transform,
            "nodata": dataset.nodata,
            "dtype": dataset.dtypes[0],
            "overviews": dataset.overviews(1),
            "blocks": dataset.block_shapes,
            "compression": dataset.compression.name if dataset.compression else None,
        }


def assert_valid_cog(path: Path) -> None:
    assert cog_validate(str(path), strict=True, quiet=True) == (True, [], [])


def assert_overviews_hold_labels(path: Path, labels: np.ndarray) -> None:
    """Every overview value is a label of the full image: sampled, never interpolated."""
    values = np.unique(labels)
    with rasterio.open(path) as dataset:
        count = len(dataset.overviews(1))
    assert count > 0
    for level in range(count):
        with rasterio.open(path, OVERVIEW_LEVEL=level) as overview:
            sampled = overview.read(1)
        assert np.isin(sampled, values).all(), f"overview {level} holds values that are no label"
        assert 0 in sampled and sampled.max() > 0


def names(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden staging names included."""
    return sorted(p.name for p in folder.iterdir())


def test_landsat_labels_round_trip_with_georeferencing(tmp_path: Path, landsat: tuple) -> None:
    labels, crs, transform = landsat
    source = labels_zarr(labels, tmp_path / "labels.zarr")

    out = write_cog(source, tmp_path / "labels.tif", crs=crs.to_wkt(), transform=transform)

    assert out == tmp_path / "labels.tif"
    pixels, meta = read_cog(out)
    np.testing.assert_array_equal(pixels, labels)
    assert meta["dtype"] == "uint32"
    assert meta["crs"] == crs
    assert meta["crs"].to_wkt() == crs.to_wkt()
    assert meta["transform"] == transform  # exactly, not approximately
    assert meta["nodata"] is None  # 0 is background, a valid label value
    assert meta["blocks"] == [(BLOCK, BLOCK)]
    assert meta["compression"] == "deflate"
    assert meta["overviews"] == [2]  # 352 x 349 halves once to fit in 256
    assert_valid_cog(out)
    assert_overviews_hold_labels(out, labels)
    assert names(tmp_path) == ["labels.tif", "labels.zarr"]  # no staging or scratch left


@pytest.mark.parametrize(
    "chunks",
    [128, (700, 900), (3000, 2500)],
    ids=["small-chunks", "chunks-not-multiples-of-512", "one-chunk"],
)
def test_large_label_map_written_window_by_window(
    tmp_path: Path, blobs: np.ndarray, chunks: int | tuple[int, int]
) -> None:
    source = labels_zarr(blobs, tmp_path / "labels.zarr", chunks)
    transform = Affine(0.5, 0, 600_000, 0, -0.5, 5_000_000)

    out = write_cog(source, tmp_path / "labels.tif", crs="EPSG:32633", transform=transform)

    pixels, meta = read_cog(out)
    np.testing.assert_array_equal(pixels, blobs)
    assert meta["crs"].to_epsg() == 32633
    assert meta["transform"] == transform
    assert meta["overviews"] == [2, 4, 8, 16]  # 3000 -> 1500 -> 750 -> 375 -> 188
    assert_valid_cog(out)
    assert_overviews_hold_labels(out, blobs)


@pytest.mark.parametrize("chunks", [(128, 128), (700, 900), (512, 2048), (3000, 2500), (1, 5000)])
def test_windows_tile_the_array_once_in_whole_tiles(
    tmp_path: Path, chunks: tuple[int, int]
) -> None:
    array = zarr.create_array(
        tmp_path / "a.zarr", shape=(3000, 2500), chunks=chunks, dtype=np.uint32, fill_value=0
    )
    cover = np.zeros(array.shape, dtype=np.uint8)
    for window in _windows(array):
        rows, cols = window.toslices()
        cover[rows, cols] += 1
        assert window.row_off % BLOCK == 0 and window.col_off % BLOCK == 0
        assert window.height * window.width <= 4096 * 4096  # never the whole array
    assert (cover == 1).all()


def test_uint64_labels(tmp_path: Path, landsat: tuple) -> None:
    labels, crs, transform = landsat
    big = np.where(labels > 0, labels.astype(np.uint64) + np.uint64(2**40), np.uint64(0))
    source = labels_zarr(big, tmp_path / "labels.zarr")

    out = write_cog(source, tmp_path / "labels.tif", crs=crs.to_wkt(), transform=transform)

    pixels, meta = read_cog(out)
    assert meta["dtype"] == "uint64"
    np.testing.assert_array_equal(pixels, big)
    assert_valid_cog(out)
    assert_overviews_hold_labels(out, big)


def test_without_georeferencing(tmp_path: Path, landsat: tuple) -> None:
    labels = landsat[0]
    source = labels_zarr(labels, tmp_path / "labels.zarr")

    out = write_cog(source, tmp_path / "labels.tif", crs=None, transform=None)

    with pytest.warns(NotGeoreferencedWarning), rasterio.open(out) as dataset:
        assert dataset.crs is None
        np.testing.assert_array_equal(dataset.read(1), labels)
    with pytest.warns(NotGeoreferencedWarning):
        assert_valid_cog(out)


def test_existing_output_is_kept_without_overwrite(tmp_path: Path, landsat: tuple) -> None:
    labels, crs, transform = landsat
    first = labels_zarr(labels, tmp_path / "first.zarr")
    second = labels_zarr(labels[::-1].copy(), tmp_path / "second.zarr")
    out = write_cog(first, tmp_path / "labels.tif", crs=crs.to_wkt(), transform=transform)

    with pytest.raises(pipeline.OutputExistsError, match="overwrite=True"):
        write_cog(second, out, crs=crs.to_wkt(), transform=transform)
    np.testing.assert_array_equal(read_cog(out)[0], labels)

    write_cog(second, out, crs=crs.to_wkt(), transform=transform, overwrite=True)
    np.testing.assert_array_equal(read_cog(out)[0], labels[::-1])
    assert_valid_cog(out)
    assert names(tmp_path) == ["first.zarr", "labels.tif", "second.zarr"]


def test_a_failure_midway_leaves_nothing_and_keeps_the_old_output(
    tmp_path: Path, landsat: tuple
) -> None:
    labels, crs, transform = landsat
    source = labels_zarr(labels, tmp_path / "labels.zarr")
    # A damaged chunk in the middle of the array: reading fails after the
    # scratch GeoTIFF has been created and partly written.
    damaged = sorted((tmp_path / "labels.zarr" / "labels" / "c").glob("*/*"))[5]
    damaged.write_bytes(b"not a zstd frame")

    with pytest.raises(RuntimeError, match="decompression"):
        write_cog(source, tmp_path / "new.tif", crs=crs.to_wkt(), transform=transform)
    assert names(tmp_path) == ["labels.zarr"]

    old = tmp_path / "old.tif"
    old.write_bytes(b"the previous output")
    with pytest.raises(RuntimeError, match="decompression"):
        write_cog(source, old, crs=crs.to_wkt(), transform=transform, overwrite=True)
    assert old.read_bytes() == b"the previous output"
    assert names(tmp_path) == ["labels.zarr", "old.tif"]


def test_missing_source_fails_before_any_file_appears(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="not a zarr array"):
        write_cog(tmp_path / "nowhere.zarr", tmp_path / "labels.tif", crs=None, transform=None)
    group = zarr.create_group(tmp_path / "group.zarr")
    with pytest.raises(ReadError, match="not a zarr array"):
        write_cog(group.store.root, tmp_path / "labels.tif", crs=None, transform=None)
    assert names(tmp_path) == ["group.zarr"]


@pytest.mark.parametrize(
    ("shape", "dtype", "error", "message"),
    [
        ((4, 8, 8), np.uint32, InputValueError, "2D labels; this array has 3 dimensions"),
        ((8, 8), np.int32, UnsupportedInputError, "unsigned integers"),
        ((8, 8), np.float32, UnsupportedInputError, "unsigned integers"),
        ((0, 8), np.uint32, InputValueError, "empty"),
    ],
)
def test_unsuitable_arrays_fail_before_any_file_appears(
    tmp_path: Path, shape: tuple, dtype: type, error: type, message: str
) -> None:
    zarr.create_array(tmp_path / "bad.zarr", shape=shape, chunks=(4,) * len(shape), dtype=dtype)
    with pytest.raises(error, match=message):
        write_cog(tmp_path / "bad.zarr", tmp_path / "labels.tif", crs=None, transform=None)
    assert names(tmp_path) == ["bad.zarr"]


@pytest.mark.parametrize(
    ("crs", "transform", "error", "message"),
    [
        ("EPSG:32633", None, InputValueError, "crs is given but transform is None"),
        ("not a crs", Affine.identity(), InputValueError, "not a coordinate reference system"),
        (None, (0.5, 0, 0, 0, -0.5, 0), UnsupportedInputError, "affine.Affine"),
        (None, Affine(0, 0, 0, 0, 0, 0), InputValueError, "not invertible"),
    ],
)
def test_bad_georeferencing_fails_before_any_file_appears(
    tmp_path: Path, crs: str | None, transform: object, error: type, message: str
) -> None:
    source = labels_zarr(np.ones((8, 8), dtype=np.uint32), tmp_path / "labels.zarr")
    with pytest.raises(error, match=message):
        write_cog(source, tmp_path / "labels.tif", crs=crs, transform=transform)  # type: ignore[arg-type]
    assert names(tmp_path) == ["labels.zarr"]


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    labels = np.arange(600 * 300, dtype=np.uint32).reshape(600, 300)
    source = labels_zarr(labels, tmp_path / "labels.zarr")

    out = write_cog(
        source, tmp_path / "run" / "1" / "labels.tif", crs=None, transform=Affine.scale(2)
    )

    np.testing.assert_array_equal(read_cog(out)[0], labels)
    assert names(out.parent) == ["labels.tif"]
