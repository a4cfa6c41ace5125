"""Sizes in physical units: converted with the image's spacing, against hand-computed
pixels and scipy / scikit-image run with them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pytest
import rasterio
import tifffile
from affine import Affine
from pydantic import ValidationError
from scipy import ndimage
from skimage.filters import threshold_local
from skimage.morphology import remove_small_objects

import pipeline
from pipeline.errors import InputValueError
from pipeline.kernels import (
    Canny,
    Closing,
    Felzenszwalb,
    Gaussian,
    Grid,
    Median,
    Opening,
    PixelClassifier,
    RemoveSmall,
    Slic,
    Threshold,
    Watershed,
)
from pipeline.workflow import Workflow, WorkflowError
from pipeline.workflow._record import grid_of
from pipeline.workflow._run import run_spec
from tests.conftest import WORKFLOW_DATA, NoClient, assert_same_partition
from tests.test_kernels_preprocess import run_chunked

ANISOTROPIC = Grid(shape=(24, 40, 40), spacing=(0.5, 1.0, 1.0), units="mm", source="scan.nii.gz")


def _grid(spacing: tuple[float, ...], units: str | None = "mm") -> Grid:
    return Grid(shape=(64,) * len(spacing), spacing=spacing, units=units, source="image")


def _nifti(path: Path, volume: np.ndarray, spacing: tuple[float, ...]) -> Path:
    """``volume`` (z, y, x) as NIfTI with voxels of ``spacing`` (z, y, x) mm."""
    image = nib.Nifti1Image(np.ascontiguousarray(volume.T), np.diag([*spacing[::-1], 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, path)
    return path


def _blobs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A uint8 image of smooth blobs, made with numpy alone."""
    noise = np.random.default_rng(seed).random(shape)
    for axis in range(len(shape)):  # a running mean of 5 along each axis
        noise = sum(np.roll(noise, shift, axis) for shift in range(-2, 3)) / 5
    return (255 * (noise - noise.min()) / np.ptp(noise)).astype(np.uint8)


# --- conversion ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "spacing", "units", "pixels"),
    [
        ("1 mm", (0.5, 1.0, 1.0), "mm", (2.0, 1.0, 1.0)),  # anisotropic voxels: per axis
        ("500 um", (0.5, 1.0, 1.0), "mm", (1.0, 0.5, 0.5)),
        ("3 µm", (0.25, 0.25), "um", 12.0),  # a slide (OME-TIFF / SVS: um)
        ("0.003 mm", (0.25, 0.25), "micrometer", 12.0),  # OME-Zarr's unit names
        ("1.5 km", (30.0, 30.0), "m", 50.0),  # a projected GeoTIFF
        ("2e-3 m", (2.0, 1.0), "mm", (1.0, 2.0)),
    ],
)
def test_lengths_become_pixels_per_axis(
    given: str, spacing: tuple[float, ...], units: str, pixels: object
) -> None:
    assert Gaussian(sigma=given).on_grid(_grid(spacing, units)).sigma == pixels


@pytest.mark.parametrize(
    ("given", "spacing", "units", "pixels"),
    [
        ("20 um2", (0.5, 0.5), "um", 80),  # 20 / 0.25
        ("20 µm2", (0.5, 0.25), "um", 160),  # 20 / 0.125
        ("1 ha", (10.0, 10.0), "m", 100),  # 10000 m2 / 100 m2
        ("2 km2", (30.0, 30.0), "m", 2222),  # 2e6 / 900 = 2222.2
        ("500 um3", (2.0, 0.5, 0.5), "um", 1000),  # 500 / 0.5
        ("0.05 mm3", (0.2, 0.1, 0.1), "mm", 25),  # 0.05 / 0.002
        ("1 cm3", (1.0, 1.0, 1.0), "mm", 1000),
        ("30 um2", (1.0, 1.0), "um", 30),
        ("2.5 um2", (1.0, 1.0), "um", 3),  # halves round up
    ],
)
def test_areas_and_volumes_become_pixel_counts(
    given: str, spacing: tuple[float, ...], units: str, pixels: int
) -> None:
    step = RemoveSmall(min_size=given).on_grid(_grid(spacing, units))
    assert step.min_size == pixels and isinstance(step.min_size, int)


@pytest.mark.parametrize(
    ("step", "field", "pixels"),
    [
        (Median(size="3 mm"), "size", (6, 3, 3)),
        (Median(size="1.2 mm"), "size", (2, 1, 1)),  # 2.4, 1.2 -> nearest integers
        (Opening(radius="1.75 mm"), "radius", (4, 2, 2)),  # 3.5 rounds up, 1.75 to 2
        (Threshold(method="local", block_size="15 mm"), "block_size", (31, 15, 15)),
        (Threshold(method="local", block_size="4 mm"), "block_size", (9, 5, 5)),  # 8 -> 9, 4 -> 5
        (Threshold(method="local", block_size="3.9 mm"), "block_size", (7, 3, 3)),
        (Watershed(halo="10 mm"), "halo_px", (20, 10, 10)),
        (Slic(segment_size="100 mm3", sigma="1 mm"), "sigma", (2.0, 1.0, 1.0)),
        (Slic(segment_size="100 mm3"), "segment_size", 200),
    ],
)
def test_whole_pixel_sizes_are_rounded(step: object, field: str, pixels: object) -> None:
    assert getattr(step.on_grid(ANISOTROPIC), field) == pixels


def test_one_value_steps_take_the_value_the_axes_share() -> None:
    square = _grid((0.25, 0.25), "um")
    assert Canny(sigma="0.5 um", low=1, high=2).on_grid(square).sigma == 2.0
    assert Canny(sigma="0.5 um", low=1, high=2).on_grid(square).halo(2) == (40, 40)
    almost = _grid((0.2500, 0.2505), "um")  # within 1 %: their mean
    assert Felzenszwalb(sigma="0.5 um").on_grid(almost).sigma == pytest.approx(1.998, abs=1e-3)
    step = PixelClassifier(points={1: [[1, 1]], 2: [[3, 3]]}, sigma_min="0.5 um", sigma_max="2 um")
    resolved = step.on_grid(square)
    assert (resolved.sigma_min, resolved.sigma_max) == (2.0, 8.0)
    assert resolved.halo(2) == (int(4 * 8.0 + 0.5) + 2,) * 2


def test_steps_in_pixels_are_left_as_they_are() -> None:
    step = Gaussian(sigma=2)
    assert step.on_grid(ANISOTROPIC) is step
    assert step.on_grid(Grid(shape=(5, 5))) is step  # no spacing needed


def test_the_halo_follows_the_converted_sizes() -> None:
    assert Gaussian(sigma="1 mm").on_grid(ANISOTROPIC).halo(3) == (8, 4, 4)
    assert Opening(radius="1 mm").on_grid(ANISOTROPIC).halo(3) == (4, 2, 2)
    assert Median(size="3 mm").on_grid(ANISOTROPIC).halo(3) == (3, 1, 1)
    # gaussian block_size 31: sigma 5, reach int(20 + 0.5); 15: sigma 7/3, reach 9
    local = Threshold(method="local", block_size="15 mm").on_grid(ANISOTROPIC)
    assert local.halo(3) == (20, 9, 9)
    assert Slic(halo="8 mm").on_grid(ANISOTROPIC).halo(3) == (16, 8, 8)


# --- kernels with per-axis sizes against the libraries -----------------------------------------


def test_gaussian_in_mm_equals_scipy_with_per_axis_sigma() -> None:
    volume = _blobs((24, 40, 40)).astype(np.float32)
    step = Gaussian(sigma="1 mm").on_grid(ANISOTROPIC)
    result, _, _ = run_chunked(volume[None], (12, 16, 16), [step])
    reference = ndimage.gaussian_filter(volume, (2.0, 1.0, 1.0), mode="reflect", truncate=4.0)
    np.testing.assert_allclose(result[0], reference, rtol=1e-5, atol=1e-4)


def test_median_in_mm_equals_scipy_with_per_axis_size() -> None:
    volume = _blobs((24, 40, 40), seed=1)
    step = Median(size="1.5 mm").on_grid(ANISOTROPIC)  # 3, 1.5 -> 3, 2 pixels
    result, _, _ = run_chunked(volume[None], (12, 16, 16), [step])
    reference = ndimage.median_filter(volume, size=(3, 2, 2), mode="reflect")
    np.testing.assert_array_equal(result[0], reference)


@pytest.mark.parametrize("method", ["gaussian", "mean", "median"])
def test_local_threshold_in_mm_equals_skimage_with_per_axis_block_size(method: str) -> None:
    volume = _blobs((24, 40, 40), seed=2)
    step = Threshold(method="local", block_size="3 mm", local_method=method)
    resolved = step.on_grid(ANISOTROPIC)
    assert resolved.block_size == (7, 3, 3)
    result, _, _ = run_chunked(volume[None], (12, 20, 20), [resolved])
    local = threshold_local(volume, (7, 3, 3), method, mode="reflect")
    mismatch = np.count_nonzero(result != (volume > local))
    # mean: skimage's running sums differ from exact window sums on ties only
    assert mismatch == 0 if method != "mean" else mismatch < volume.size * 1e-3


def _ellipsoid(radii: tuple[int, ...]) -> np.ndarray:
    """The offsets within the ellipsoid of semi-axes ``radii``, from the grid formula."""
    axes = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    return sum((a / r) ** 2 for a, r in zip(axes, radii, strict=True)) <= 1


@pytest.mark.parametrize(
    ("operation", "scipy_operation"),
    [(Opening, ndimage.binary_opening), (Closing, ndimage.binary_closing)],
)
@pytest.mark.parametrize("shape", ["ball", "cube"])
def test_opening_and_closing_in_mm_equal_scipy_with_a_hand_made_footprint(
    operation: type, scipy_operation: object, shape: str
) -> None:
    volume = _blobs((24, 40, 40), seed=3)
    mask = volume > 128
    grid = Grid(shape=mask.shape, spacing=(1.0, 0.5, 0.5), units="mm")
    step = operation(radius="1 mm", footprint=shape).on_grid(grid)  # radii 1, 2, 2
    assert step.radius == (1, 2, 2)
    structure = _ellipsoid((1, 2, 2)) if shape == "ball" else np.ones((3, 5, 5), bool)
    result, _, _ = run_chunked(
        volume[None], (12, 20, 20), [Threshold(method="manual", value=128), step]
    )
    pad = 8
    padded = scipy_operation(np.pad(mask, pad, mode="symmetric"), structure=structure)
    np.testing.assert_array_equal(result, padded[pad:-pad, pad:-pad, pad:-pad])


@pytest.mark.parametrize(
    ("given", "spacing", "units", "count"),
    [("20 um2", (0.5, 0.5), "um", 80), ("0.05 mm3", (0.2, 0.1, 0.1), "mm", 25)],
)
def test_remove_small_in_units_equals_skimage_with_the_hand_computed_count(
    given: str, spacing: tuple[float, ...], units: str, count: int
) -> None:
    shape = (80, 90) if len(spacing) == 2 else (20, 40, 40)
    labels, num = ndimage.label(_blobs(shape, seed=4) > 150)
    step = RemoveSmall(min_size=given).on_grid(Grid(shape=shape, spacing=spacing, units=units))
    kept, _ = step.finish(da.from_array(labels, chunks=16), num)
    reference = remove_small_objects(labels, max_size=count - 1)  # drops sizes < count
    sizes = np.bincount(labels.ravel())[1:]
    assert (sizes < count).any() and (sizes >= count).any()  # the threshold bites
    assert_same_partition(kept.compute(), reference)


# --- errors --------------------------------------------------------------------------------------


def _smooth(step: dict) -> list:
    return [step, "threshold", "label"]


def _mask(step: dict) -> list:
    return ["threshold", step, "label"]


@pytest.mark.parametrize(
    ("steps", "words"),
    [
        (_smooth({"gaussian": {"sigma": "1 kg"}}), ["gaussian: sigma", "'1 kg'", "a length in nm"]),
        (
            _smooth({"gaussian": {"sigma": "1 foo"}}),
            ["sigma", "'foo' is not a unit", "cm, m or km"],
        ),
        (_smooth({"gaussian": {"sigma": "mm 1"}}), ["sigma", "'mm 1' is not '<number> <unit>'"]),
        (_smooth({"gaussian": {"sigma": "1 mm2"}}), ["sigma", "'1 mm2' is an area"]),
        (_smooth({"median": {"size": "3 px"}}), ["median: size", "'px' is not a unit"]),
        (_mask({"opening": {"radius": "-1 mm"}}), ["opening: radius", "'-1 mm'", "greater than 0"]),
        (
            [{"canny": {"sigma": [1, 2], "low": 1, "high": 2}}, "label"],
            ["canny: sigma", "give one value for every axis; got [1, 2]"],
        ),
        (
            ["threshold", {"watershed": {"h": "1 um", "sampling": [2, 1]}}],
            ["watershed", "h '1 um' is a length, but with sampling the distance is measured"],
        ),
        (
            ["threshold", "label", {"remove_small": {"min_size": "5 um"}}],
            ["remove_small: min_size", "'5 um' is a length", "an area in 2D (um2", "in 3D (um3"],
        ),
    ],
)
def test_bad_quantities_are_refused_when_the_workflow_is_read(
    tmp_path: Path, steps: list, words: list[str]
) -> None:
    with pytest.raises(WorkflowError) as error:
        Workflow(source="a.tif", steps=steps, output=str(tmp_path / "o.zarr"))
    for word in words:
        assert word in str(error.value)


def _raster(path: Path, crs: str, resolution: float) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=40,
        height=30,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=Affine(resolution, 0.0, 10.0, 0.0, -resolution, 50.0),
    ) as out:
        out.write(_blobs((30, 40))[None])
    return path


def _refused_before_work(flow: Workflow, tmp_path: Path, match: str) -> None:
    """The run fails when the image is opened, before any graph: no client is needed."""
    with pytest.raises(InputValueError, match=match):
        flow.run(client=NoClient())
    assert not any(tmp_path.glob("*.zarr"))


def test_a_unit_on_an_image_without_spacing_is_refused_before_work(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", _blobs((30, 40)))
    flow = Workflow(
        source=str(tmp_path / "plain.tif"),
        steps=[{"gaussian": {"sigma": "2 um"}}, "threshold", "label"],
        output=str(tmp_path / "o.zarr"),
    )
    _refused_before_work(
        flow,
        tmp_path,
        r"plain\.tif: gaussian: sigma '2 um' is a physical size, but the image gives no pixel",
    )


def test_a_metric_size_on_a_geographic_crs_is_refused_before_work(tmp_path: Path) -> None:
    flow = Workflow(
        source=str(_raster(tmp_path / "wgs84.tif", "EPSG:4326", 0.001)),
        steps=["threshold", "label", {"remove_small": {"min_size": "1 ha"}}],
        output=str(tmp_path / "o.zarr"),
    )
    _refused_before_work(
        flow,
        tmp_path,
        r"wgs84\.tif: remove_small: min_size '1 ha' is a metric size, .* degree .* reproject",
    )


def test_a_projected_geotiff_takes_metres(tmp_path: Path) -> None:
    image = pipeline.open_image(str(_raster(tmp_path / "utm.tif", "EPSG:32633", 30.0)))
    step = RemoveSmall(min_size="1 ha").on_grid(grid_of(image))
    assert step.min_size == 11  # 10000 / 900 = 11.1


@pytest.mark.parametrize(
    ("step", "spacing", "match"),
    [
        (
            RemoveSmall(min_size="20 um2"),
            (1.0, 1.0, 1.0),
            r"min_size '20 um2' is an area, but the image is 3D: give a volume",
        ),
        (
            RemoveSmall(min_size="500 um3"),
            (1.0, 1.0),
            r"min_size '500 um3' is a volume, but the image is 2D: give an area",
        ),
        (
            Opening(radius="0.2 um"),
            (0.5, 1.0, 1.0),
            r"radius '0.2 um' is 0.4, 0.2, 0.2 pixels .* rounds to 0; it must be at least 1 pixel",
        ),
        (
            RemoveSmall(min_size="0.1 um2"),
            (0.5, 0.5),
            r"min_size '0.1 um2' is 0.4 pixels .* rounds to 0; it must be at least 1",
        ),
        (
            Canny(sigma="1 um", low=1, high=2),
            (0.5, 1.0),
            r"canny: sigma '1 um' is 2, 1 pixels along y, x .* takes one value for every axis",
        ),
        (
            Watershed(min_distance="3 um"),
            (0.5, 1.0, 1.0),
            r"watershed: min_distance '3 um' is 6, 3, 3 pixels along z, y, x",
        ),
        (
            Canny(sigma="1 um", low=1, high=2, halo=3),
            (1.0, 1.0),
            r"canny with its sizes in pixels \(sigma=1.0\): halo: halo 3 is less than the 6 pixels",
        ),
    ],
)
def test_sizes_that_do_not_fit_the_image_are_refused_by_on_grid(
    step: object, spacing: tuple[float, ...], match: str
) -> None:
    with pytest.raises(InputValueError, match=match):
        step.on_grid(_grid(spacing, "um"))


def test_a_step_not_put_on_the_grid_says_so() -> None:
    with pytest.raises(
        InputValueError, match=r"sigma '1 mm' is a physical size; put the step on the image's grid"
    ):
        Gaussian(sigma="1 mm").halo(3)


def test_per_axis_pixels_must_match_the_image() -> None:
    with pytest.raises(InputValueError, match=r"sigma gives 2 values for a 3D image"):
        Gaussian(sigma=[1, 2]).halo(3)


# --- custom steps --------------------------------------------------------------------------------


def test_a_custom_step_takes_lengths_in_units() -> None:
    @pipeline.step(halo=2, output="mask")
    def spots(
        block: np.ndarray, *, radius: pipeline.Length = 1.0, least: pipeline.Size = 4
    ) -> np.ndarray:
        return np.zeros(block.shape[1:], bool)

    made = spots(radius="1 mm", least="2 mm2")
    resolved = made.on_grid(Grid(shape=(10, 10), spacing=(0.5, 1.0), units="mm"))
    assert resolved.model_dump() == {"radius": (2.0, 1.0), "least": 4.0}
    with pytest.raises(ValidationError, match="is an area"):
        spots(radius="1 mm2")


# --- whole workflows -----------------------------------------------------------------------------


@pytest.mark.cluster
def test_a_workflow_in_mm_on_an_anisotropic_volume_equals_scipy(
    cluster_client: object, tmp_path: Path
) -> None:
    volume = _blobs((24, 40, 40), seed=5)
    source = _nifti(tmp_path / "scan.nii.gz", volume, (0.5, 1.0, 1.0))
    np.testing.assert_array_equal(pipeline.open_image(str(source)).data.compute(), volume)
    flow = Workflow(
        source=str(source),
        steps=[
            {"gaussian": {"sigma": "1 mm"}},
            {"threshold": {"method": "manual", "value": 150}},
            "label",
        ],
        output=str(tmp_path / "labels.zarr"),
        chunks=[12, 20, 20],
    )
    result = flow.run(cluster_client)

    smooth = ndimage.gaussian_filter(volume.astype(np.float32), (2.0, 1.0, 1.0), mode="reflect")
    reference, count = ndimage.label(smooth > 150)
    assert count > 10
    assert result.num == count
    assert_same_partition(result.labels.compute(), reference)
    record = result.record
    assert record["workflow"]["steps"][0] == {"sigma": "1 mm"}  # as written
    assert record["steps"][0] == "gaussian(sigma=(2.0, 1.0, 1.0))"
    assert record["units"] == {
        "steps[0].gaussian.sigma": {"given": "1 mm", "pixels": [2.0, 1.0, 1.0]}
    }
    assert record["halo"] == [8, 4, 4]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


def test_a_workflow_in_mm_agrees_on_a_volume_and_its_2x_resampled_copy(tmp_path: Path) -> None:
    """The MRI at 1 mm and every other voxel of it (2 mm voxels, so stated in its
    header): in millimetres the head masks agree; the same numbers in pixels,
    which are twice as large on the copy, do not. Run with dask's threads, as
    tests/test_workflows.py runs the sample workflows (the 7 M voxels would spend
    most of a cluster run moving blocks between processes)."""
    original = WORKFLOW_DATA / "ch2.nii.gz"
    scan = nib.load(original)
    half = nib.Nifti1Image(
        np.asarray(scan.dataobj)[::2, ::2, ::2], scan.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    )
    half.header.set_xyzt_units("mm")
    nib.save(half, tmp_path / "ch2_2mm.nii.gz")
    assert pipeline.open_image(str(tmp_path / "ch2_2mm.nii.gz")).spacing == (2.0, 2.0, 2.0)

    def mask(source: Path, sigma: object, radius: object, name: str) -> np.ndarray:
        steps = [
            {"gaussian": {"sigma": sigma}},
            {"mask_nodata": {"valid_range": [0.5, 255]}},
            {"threshold": {"method": "otsu"}},
            {"opening": {"radius": radius}},
            {"label": {"connectivity": 1}},
            "keep_largest",
        ]
        flow = Workflow(source=str(source), steps=steps, output=str(tmp_path / name), chunks=128)
        with dask.config.set(scheduler="threads"):
            labels = run_spec(flow.spec, flow.base).labels
            assert labels is not None
            return np.asarray(labels.compute() > 0)

    fine = mask(original, "2 mm", "2 mm", "fine.zarr")[::2, ::2, ::2]  # on the copy's grid
    in_mm = _dice(fine, mask(tmp_path / "ch2_2mm.nii.gz", "2 mm", "2 mm", "mm.zarr"))
    in_pixels = _dice(fine, mask(tmp_path / "ch2_2mm.nii.gz", 2, 2, "pixels.zarr"))
    assert in_mm > 0.97
    assert in_pixels < 0.95 and in_mm - in_pixels > 0.05


def test_import_pipeline_does_not_import_pint() -> None:
    code = "import sys, pipeline; print('pint' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
