"""A nodata value declared on the source: exact integer fits without it, never foreground,
never labelled, class 0; for every format; and smoothing that leaves it out."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
import rasterio
import tifffile
import zarr
from scipy import ndimage
from skimage.filters import threshold_otsu

from pipeline import InputValueError, Workflow, open_image
from pipeline.data import sample_path
from pipeline.io._zarr import open_label_array
from pipeline.kernels import Gaussian
from tests.conftest import assert_same_partition

SCENE = sample_path("L7_ETMs.tif")
EIGHT = np.ones((3, 3), dtype=bool)


@pytest.fixture(scope="module")
def uint16_scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray]:
    """A 16-bit band as Landsat 8 gives them (SWIR scaled to 0..60000 with the fine
    steps of band 4 added), with a zero fill along two edges that no tag declares."""
    with rasterio.open(SCENE) as src:
        swir, red = src.read(5).astype(np.uint32), src.read(3).astype(np.uint32)
        profile = {**src.profile, "count": 1, "dtype": "uint16", "nodata": None}
    band = (swir * 230 + red * 7 + 1).astype(np.uint16)
    rows, cols = np.mgrid[: band.shape[0], : band.shape[1]]
    band[(cols > 300 - rows // 4) | (rows < 12)] = 0
    path = tmp_path_factory.mktemp("nodata") / "b6.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(band, 1)
    return str(path), band


@pytest.mark.parametrize("how", ["source", "mask_nodata"])
def test_otsu_without_the_fill_is_skimage_on_the_valid_pixels(
    uint16_scene: tuple[str, np.ndarray], how: str, tmp_path: Path, cluster_client: object
) -> None:
    path, band = uint16_scene
    steps: list = [
        {"threshold": {"method": "otsu", "foreground": "below"}},
        {"label": {"connectivity": 2}},
    ]
    source: dict = {"path": path}
    if how == "source":
        source["nodata"] = 0
    else:
        steps.insert(0, {"mask_nodata": {"values": [0]}})
    result = Workflow(source, steps, str(tmp_path / "w.zarr"), chunks=100).run(cluster_client)
    fitted = next(v for k, v in result.record["fitted"].items() if k.startswith("threshold"))
    valid = band != 0
    expected = threshold_otsu(band[valid])
    assert fitted == expected
    assert threshold_otsu(band) != expected  # the fill would have moved it
    reference, count = ndimage.label((band <= expected) & valid, EIGHT)
    labels = open_label_array(result.outputs["labels"])[...]
    assert_same_partition(labels, reference)
    assert result.num == count and not labels[~valid].any()


def test_classes_are_0_on_nodata(
    uint16_scene: tuple[str, np.ndarray], tmp_path: Path, cluster_client: object
) -> None:
    path, band = uint16_scene
    flow = Workflow(
        {"path": path, "nodata": 0},
        [{"kmeans": {"k": 3, "sample": 5000}}, "label"],
        {"labels": str(tmp_path / "r.zarr"), "classes": str(tmp_path / "c.zarr")},
        chunks=100,
    )
    result = flow.run(cluster_client)
    classes = open_label_array(result.outputs["classes"])[...]
    labels = open_label_array(result.outputs["labels"])[...]
    valid = band != 0
    assert not classes[~valid].any() and classes[valid].min() >= 1
    assert not labels[~valid].any() and labels[valid].all()


@pytest.mark.parametrize("kind", ["geotiff", "zarr", "tiff", "nifti", "array"])
def test_every_format_takes_a_declared_nodata(kind: str, tmp_path: Path) -> None:
    values = np.arange(60, dtype=np.int16).reshape(6, 10) % 7
    if kind == "geotiff":
        source: object = str(tmp_path / "a.tif")
        profile = {"driver": "GTiff", "width": 10, "height": 6, "count": 1, "dtype": "int16"}
        with rasterio.open(
            source,
            "w",
            **profile,
            nodata=3,
            crs="EPSG:32633",
            transform=rasterio.transform.from_origin(0, 60, 10, 10),
        ) as dst:
            dst.write(values, 1)
    elif kind == "zarr":
        source = str(tmp_path / "a.zarr")
        zarr.create_array(source, shape=values.shape, dtype=values.dtype)[...] = values
    elif kind == "tiff":
        source = str(tmp_path / "a.tif")
        tifffile.imwrite(source, values)
    elif kind == "nifti":
        source = str(tmp_path / "a.nii.gz")
        nib.save(nib.Nifti1Image(values.T[..., None], np.eye(4)), source)
    else:
        source = values
    image = open_image(source, nodata=5)  # overrides the GeoTIFF's tag 3
    assert image.nodata == 5
    data = image.data.compute()
    valid = image.valid.compute()
    np.testing.assert_array_equal(valid.ravel(), (data != 5).ravel())
    assert valid.sum() == (values != 5).sum()


def test_a_nodata_that_cannot_occur_is_refused() -> None:
    with pytest.raises(
        InputValueError, match=r"L7_ETMs\.tif: nodata 300 cannot occur in its uint8"
    ):
        open_image(str(SCENE), nodata=300)
    with pytest.raises(InputValueError, match=r"nodata 0\.5 cannot occur"):
        open_image(str(SCENE), nodata=0.5)


@pytest.mark.parametrize("chunks", [(1, 1000, 1000), (1, 37, 41)])
def test_smoothing_leaves_the_fill_out(uint16_scene: tuple[str, np.ndarray], chunks: tuple) -> None:
    _, band = uint16_scene
    valid = band != 0
    step = Gaussian(sigma=2.0)
    halo = step.halo(2)
    data = da.from_array(band[None].astype(np.float32), chunks=chunks)
    mask = da.from_array(valid[None], chunks=chunks)
    depth = {0: 0, 1: halo[0], 2: halo[1]}
    smoothed = da.map_overlap(
        lambda block, ok: step.apply(block, None, valid=ok[0]),
        data,
        mask,
        depth=depth,
        boundary="reflect",
        dtype=np.float32,
    ).compute()[0]
    # The whole image, by scipy: the Gaussian mean of the pixels with data.
    x = np.where(valid, band, 0).astype(np.float32)
    weight = ndimage.gaussian_filter(valid.astype(np.float32), 2.0, mode="reflect")
    mean = ndimage.gaussian_filter(x, 2.0, mode="reflect") / np.where(weight > 0, weight, 1)
    plain = ndimage.gaussian_filter(band.astype(np.float32), 2.0, mode="reflect")
    near = ndimage.maximum_filter(~valid, size=2 * 8 + 1, mode="reflect")
    np.testing.assert_allclose(smoothed[valid & near], mean[valid & near], rtol=2e-6)
    np.testing.assert_array_equal(smoothed[valid & ~near], plain[valid & ~near])
    assert np.isnan(smoothed[~valid]).all()
    # The fill no longer darkens the scene's edge: each edge pixel stays within the range
    # of the pixels with data around it, where plain smoothing falls below it.
    edge = valid & ndimage.binary_dilation(~valid)
    around = 2 * 8 + 1
    low = ndimage.minimum_filter(np.where(valid, band, np.inf), size=around)[edge]
    high = ndimage.maximum_filter(np.where(valid, band, -np.inf), size=around)[edge]
    assert np.all((low <= smoothed[edge] + 1e-3) & (smoothed[edge] <= high + 1e-3))
    assert (plain[edge] < low).mean() > 0.4  # 0.49 of the edge pixels here
