"""Label outputs as xarray and rioxarray open them, and DataArrays as open_image opens them.

References: rasterio's own CRS, transform and pixel centres of the source
GeoTIFF, nibabel's voxel sizes, and scipy / scikit-image on the whole image.
Tests run with warnings as errors: neither zarr nor xarray may warn on write or
open.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
import rasterio
import rasterio.transform
import rioxarray
import xarray as xr
import zarr
from rasterio.crs import CRS
from scipy import ndimage
from skimage.filters import threshold_multiotsu, threshold_otsu

import pipeline
from pipeline.data import sample_path
from pipeline.errors import InputValueError, UnsupportedInputError
from pipeline.io import write_labels_zarr
from pipeline.io._zarr import open_label_array
from pipeline.workflow._record import georeference
from tests.conftest import WORKFLOW_DATA, assert_same_partition

LANDSAT = sample_path("L7_ETMs.tif")
BRAIN = WORKFLOW_DATA / "ch2.nii.gz"
WATER = [{"threshold": {"method": "otsu", "foreground": "below"}}, {"label": {"connectivity": 2}}]


def quiet_affine(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)`` without affine's PendingDeprecationWarning for the ``*``
    rioxarray still multiplies transforms with (rioxarray issue 937)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Use `@` matmul", PendingDeprecationWarning)
        return call(*args, **kwargs)


def landsat_water(output: Any, client: object, chunks: int = 100) -> pipeline.RunResult:
    flow = pipeline.Workflow(
        source={"path": str(LANDSAT), "bands": [5]}, steps=WATER, output=output, chunks=chunks
    )
    return flow.run(client=client)


def landsat_water_reference() -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        band = src.read(5)
    return ndimage.label(band <= threshold_otsu(band), np.ones((3, 3)))[0]


def assert_landsat_grid(labels: xr.DataArray) -> None:
    """CRS, transform and pixel centres as rasterio gives them for the source GeoTIFF."""
    with rasterio.open(LANDSAT) as src:
        assert labels.rio.crs == src.crs
        assert quiet_affine(labels.rio.transform) == src.transform
        cols, rows = np.arange(src.width), np.arange(src.height)
        xs, _ = rasterio.transform.xy(src.transform, np.zeros_like(cols), cols, offset="center")
        _, ys = rasterio.transform.xy(src.transform, rows, np.zeros_like(rows), offset="center")
    assert labels.dims == ("y", "x")
    assert labels["x"].dtype == labels["y"].dtype == np.float64
    np.testing.assert_allclose(labels["x"].values, xs, rtol=1e-14)
    np.testing.assert_allclose(labels["y"].values, ys, rtol=1e-14)


# --- label outputs opened with xarray -----------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.parametrize("chunks", [100, 512])  # 512: one chunk the size of the image
def test_landsat_labels_open_with_xarray_and_rioxarray(
    tmp_path: Path, cluster_client: object, chunks: int
) -> None:
    result = landsat_water(str(tmp_path / "water.zarr"), cluster_client, chunks)
    labels = xr.open_zarr(tmp_path / "water.zarr")["labels"]

    assert_same_partition(labels.values, landsat_water_reference())
    assert_landsat_grid(labels)
    assert labels.encoding["chunks"] == (min(chunks, 352), min(chunks, 349))
    x = labels["x"].attrs
    assert (x["standard_name"], x["units"], x["axis"]) == ("projection_x_coordinate", "metre", "X")
    grid_mapping = labels["spatial_ref"].attrs
    assert grid_mapping["grid_mapping_name"] == "transverse_mercator"
    with rasterio.open(LANDSAT) as src:
        gdal = " ".join(str(v) for v in src.transform.to_gdal())
        assert grid_mapping["GeoTransform"] == gdal
        assert CRS.from_wkt(grid_mapping["crs_wkt"]) == src.crs
        # segpipe's own attributes stay on the data variable
        assert labels.attrs["crs"] == src.crs.to_wkt()
        assert labels.attrs["transform"] == list(src.transform)[:6]
    assert labels.attrs["segpipe"]["objects"] == result.num

    mine = result.labels_xarray()
    xr.testing.assert_identical(mine, labels)
    np.testing.assert_array_equal(mine.values, result.labels.compute())


@pytest.mark.cluster
def test_nifti_labels_have_dims_z_y_x_and_millimetre_coordinates(
    tmp_path: Path, cluster_client: object
) -> None:
    flow = pipeline.Workflow(
        source=str(BRAIN),
        steps=[{"threshold": {"method": "otsu"}}, "label"],
        output=str(tmp_path / "brain.zarr"),
        chunks=[64, 96, 96],
    )
    flow.run(client=cluster_client)
    labels = xr.open_zarr(tmp_path / "brain.zarr")["labels"]

    volume = np.asarray(nib.load(BRAIN).dataobj).T  # nibabel's (i, j, k) as (z, y, x)
    assert_same_partition(labels.values, ndimage.label(volume > threshold_otsu(volume))[0])
    assert labels.dims == ("z", "y", "x")
    zooms = nib.load(BRAIN).header.get_zooms()[:3][::-1]
    for axis, size, zoom in zip("zyx", volume.shape, zooms, strict=True):
        np.testing.assert_array_equal(labels[axis].values, np.arange(size) * float(zoom))
        assert labels[axis].attrs["units"] == "mm"
    assert "spatial_ref" not in labels.coords


def test_voxel_spacing_gives_physical_coordinates(tmp_path: Path) -> None:
    values = np.arange(60, dtype=np.uint32).reshape(3, 4, 5)
    path = write_labels_zarr(
        da.from_array(values, chunks=2),
        tmp_path / "cells.zarr",
        attributes={"axes": "zyx", "spacing": [2.0, 1.5, 0.5], "units": "um"},
    )
    labels = xr.open_zarr(path)["labels"]
    np.testing.assert_array_equal(labels.values, values)
    np.testing.assert_array_equal(labels["z"].values, [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(labels["x"].values, [0.0, 0.5, 1.0, 1.5, 2.0])
    assert labels["y"].attrs["units"] == "um"

    # Both ways back give the spacing: the zarr attributes, and the coordinates.
    for image in (pipeline.open_image(path), pipeline.open_image(labels)):
        assert (image.axes, image.spacing, image.units) == ("zyx", (2.0, 1.5, 0.5), "um")


def test_write_keeps_the_writer_settings_and_consolidates(tmp_path: Path) -> None:
    values = np.zeros((6, 8), dtype=np.uint32)
    values[4:, 4:] = 3  # chunk (1, 1) holds an object, the others none
    path = write_labels_zarr(da.from_array(values, chunks=(4, 4)), tmp_path / "labels.zarr")
    array = open_label_array(path)
    assert array.chunks == (4, 4)
    assert array.metadata.dimension_names == ("y", "x")
    # write_empty_chunks: every chunk is written, those without objects too
    assert sorted(p.relative_to(path).as_posix() for p in (path / "labels" / "c").rglob("*/*")) == [
        "labels/c/0/0",
        "labels/c/0/1",
        "labels/c/1/0",
        "labels/c/1/1",
    ]
    plain = zarr.create_array(tmp_path / "plain.zarr", shape=(6, 8), dtype=np.uint32)
    assert [type(c) for c in array.compressors] == [type(c) for c in plain.compressors]
    group = zarr.open_group(path, mode="r", use_consolidated=True)  # consolidated is there
    assert sorted(group) == ["labels"]
    xr.testing.assert_equal(
        xr.open_zarr(path, consolidated=True)["labels"].compute(), labels_of(path)
    )


def labels_of(path: Path) -> xr.DataArray:
    return xr.DataArray(open_label_array(path)[...], dims=("y", "x"), name="labels")


@pytest.mark.cluster
def test_class_map_opens_with_xarray(tmp_path: Path, cluster_client: object) -> None:
    flow = pipeline.Workflow(
        source={"path": str(LANDSAT), "bands": [5]},
        steps=[{"multi_otsu": {"classes": 3}}, {"label": {"connectivity": 1}}],
        output={"labels": str(tmp_path / "regions.zarr"), "classes": str(tmp_path / "cover.zarr")},
        chunks=100,
    )
    result = flow.run(client=cluster_client)
    classes = xr.open_zarr(tmp_path / "cover.zarr")["classes"]

    with rasterio.open(LANDSAT) as src:
        band = src.read(5)
    reference = np.digitize(band, threshold_multiotsu(band, classes=3)) + 1
    np.testing.assert_array_equal(classes.values, reference)
    assert classes.dtype == np.uint8
    assert_landsat_grid(classes)
    regions = xr.open_zarr(tmp_path / "regions.zarr")["labels"]
    assert len(regions.attrs["object_classes"]) == result.num


@pytest.mark.cluster
def test_labels_of_a_run_without_a_label_zarr(tmp_path: Path, cluster_client: object) -> None:
    reference = landsat_water_reference()
    tiff = landsat_water({"geotiff": str(tmp_path / "water.tif")}, cluster_client)
    assert_same_partition(tiff.labels.compute(), reference)
    labels = tiff.labels_xarray()
    assert_same_partition(labels.values, reference)
    assert_landsat_grid(labels)

    ome = landsat_water({"ome_zarr": str(tmp_path / "ome.zarr")}, cluster_client)
    assert_same_partition(ome.labels.compute(), reference)  # the label image, not the scene
    assert ome.labels_xarray().dims == ("y", "x")
    assert (
        landsat_water({"table": str(tmp_path / "table.csv")}, cluster_client).labels_xarray()
        is None
    )


# --- readers of the label output ----------------------------------------------------------------


def test_the_group_and_its_data_variable_read_alike(tmp_path: Path) -> None:
    image = pipeline.open_image(LANDSAT, bands=[5], chunks=64)
    labels = (image.data[0] > 60).astype(np.uint32)
    attributes = georeference(image)
    path = write_labels_zarr(labels, tmp_path / "labels.zarr", attributes=attributes)
    group, variable = pipeline.open_image(path), pipeline.open_image(f"{path}/labels")
    for opened in (group, variable):
        assert (opened.axes, opened.crs, opened.transform) == ("yx", image.crs, image.transform)
        assert opened.data.chunksize == (64, 64)
        np.testing.assert_array_equal(opened.data.compute(), labels.compute())


def test_an_xarray_dataset_written_to_zarr_reads_with_its_georeference(tmp_path: Path) -> None:
    scene = quiet_affine(rioxarray.open_rasterio, LANDSAT, chunks={"y": 128, "x": 128})
    scene.to_dataset(name="scene").to_zarr(
        tmp_path / "scene.zarr", zarr_format=3, consolidated=False
    )
    image = pipeline.open_image(tmp_path / "scene.zarr")  # no crs attributes: the grid mapping
    with rasterio.open(LANDSAT) as src:
        assert CRS.from_wkt(image.crs) == src.crs
        assert image.transform == src.transform
        np.testing.assert_array_equal(image.data.compute(), src.read())
    assert image.axes == "cyx"


@pytest.mark.parametrize("open_labels", [pipeline.open_image, open_label_array])
def test_a_group_of_several_data_variables_is_refused(tmp_path: Path, open_labels: Any) -> None:
    group = zarr.create_group(tmp_path / "two.zarr")
    for name in ("labels", "classes"):
        group.create_array(name, shape=(4, 4), dtype=np.uint32, dimension_names=("y", "x"))
    with pytest.raises(UnsupportedInputError, match=r"several data variables \(classes, labels\)"):
        open_labels(tmp_path / "two.zarr")


# --- DataArrays opened with open_image ---------------------------------------------------------


@pytest.fixture
def landsat_with_nodata(tmp_path: Path) -> Path:
    """The Landsat scene with nodata 0 declared and a corner of it set to 0."""
    with rasterio.open(LANDSAT) as src:
        pixels, profile = src.read(), src.profile
    pixels[:, :40, :60] = 0
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", **{**profile, "nodata": 0}) as dst:
        dst.write(pixels)
    return path


@pytest.mark.cluster
def test_a_rioxarray_dataarray_opens_like_its_file(
    landsat_with_nodata: Path, cluster_client: object, tmp_path: Path
) -> None:
    array = quiet_affine(rioxarray.open_rasterio, landsat_with_nodata, chunks={"y": 50, "x": 50})
    image = pipeline.open_image(array, bands=[5], chunks=100)
    file = pipeline.open_image(landsat_with_nodata, bands=[5], chunks=100)
    assert isinstance(image.data, da.Array) and image.data.chunks == file.data.chunks
    assert CRS.from_wkt(image.crs) == CRS.from_wkt(file.crs)
    assert (image.axes, image.transform, image.nodata) == ("cyx", file.transform, 0.0)
    assert (image.spacing, image.units) == (file.spacing, file.units)
    np.testing.assert_array_equal(image.data.compute(), file.data.compute())

    # The workflow's steps on the DataArray's image label as the workflow on the file.
    result = pipeline.Workflow(
        source={"path": str(landsat_with_nodata), "bands": [5]},
        steps=WATER,
        output=str(tmp_path / "water.zarr"),
        chunks=100,
    ).run(client=cluster_client)
    (threshold,) = result.record["fitted"].values()
    band = image.data[0]
    labels, num = pipeline.label((band <= threshold) & image.valid, connectivity=2)
    assert num == result.num
    assert_same_partition(labels.compute(), result.labels.compute())


def test_a_labels_dataarray_opens_with_its_georeference_with_or_without_rioxarray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = pipeline.open_image(LANDSAT, bands=[5], chunks=64)
    attributes = georeference(source)
    labels = (source.data[0] > 60).astype(np.uint32)
    path = write_labels_zarr(labels, tmp_path / "labels.zarr", attributes=attributes)
    opened = xr.open_zarr(path)["labels"]
    centres = xr.DataArray(
        opened.values, dims=("y", "x"), coords={"y": opened["y"].values, "x": opened["x"].values}
    )

    with_rio = [pipeline.open_image(a) for a in (opened, centres)]
    monkeypatch.setattr("pipeline.io._xarray._with_rioxarray", lambda: False)
    without = [pipeline.open_image(a) for a in (opened, centres)]
    for image in [*with_rio, *without]:
        assert image.axes == "yx"
        assert image.transform.almost_equals(source.transform, precision=1e-6)
        np.testing.assert_array_equal(image.data.compute(), labels.compute())
    for image in [*with_rio[:1], *without[:1]]:  # the CRS is in the grid mapping
        assert CRS.from_wkt(image.crs) == CRS.from_wkt(source.crs)
        assert image.transform == source.transform


def test_dataarray_dims_name_the_axes() -> None:
    values = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    bands_last = xr.DataArray(values, dims=("y", "x", "band"))
    image = pipeline.open_image(bands_last, bands=[3, 1])
    assert image.axes == "cyx"
    np.testing.assert_array_equal(image.data.compute(), values.transpose(2, 0, 1)[[2, 0]])

    geographic = xr.DataArray(
        values[..., 0],
        dims=("latitude", "longitude"),
        coords={"latitude": [45.5, 44.5], "longitude": [10.25, 10.75, 11.25, 11.75]},
    )
    image = pipeline.open_image(geographic)
    assert image.axes == "yx"
    assert image.transform[:6] == (0.5, 0.0, 10.0, 0.0, -1.0, 46.0)

    unnamed = xr.DataArray(values[..., 0], dims=("row", "col"))
    assert pipeline.open_image(unnamed, axes="yx").shape == (2, 4)
    assert pipeline.open_image(unnamed.chunk({"row": 1}), axes="yx").data.numblocks == (2, 1)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({}, UnsupportedInputError, r"dims \('time', 'y', 'x'\).*isel\(time=0\)"),
        ({"axes": "yx"}, InputValueError, r"axes 'yx' must name each of the DataArray's dims"),
        ({"level": 1}, InputValueError, "a DataArray has only level 0"),
        ({"bands": [1]}, InputValueError, "no band dimension"),
    ],
)
def test_dataarrays_segpipe_cannot_read_are_refused(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    series = xr.DataArray(np.zeros((2, 3, 4)), dims=("time", "y", "x"))
    with pytest.raises(error, match=match):
        pipeline.open_image(series if not options.get("bands") else series[0], **options)


def test_import_pipeline_does_not_import_xarray() -> None:
    code = "import sys, pipeline; print(sorted({'xarray', 'rioxarray'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
