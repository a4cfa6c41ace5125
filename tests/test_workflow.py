"""Workflows: YAML in, labels out, equal to whole-image scikit-image/scipy processing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from scipy import ndimage
from skimage.filters import threshold_otsu

import pipeline
from pipeline.data import sample_path
from pipeline.io._zarr import open_label_array
from pipeline.kernels import Threshold
from pipeline.workflow import Workflow, WorkflowError
from tests.conftest import SEGPIPE, NoClient, assert_same_partition

LANDSAT = sample_path("L7_ETMs.tif")
NUCLEI = sample_path("nuclei.tif")


def _whole_image(values: np.ndarray, sigma: float, connectivity: int, below: bool = False):
    if not sigma:
        smooth = values
    else:
        smooth = ndimage.gaussian_filter(values.astype(np.float32), sigma, mode="reflect")
    t = threshold_otsu(smooth)
    mask = smooth <= t if below else smooth > t
    structure = ndimage.generate_binary_structure(values.ndim, connectivity)
    return ndimage.label(mask, structure)


def _write_yaml(folder: Path, text: str) -> Path:
    path = folder / "workflow.yaml"
    path.write_text(text)
    return path


@pytest.mark.cluster
@pytest.mark.parametrize(("chunks", "sigma"), [(64, 1.5), (100, 1.5), (512, 1.5), (100, 0)])
def test_landsat_water_workflow_equals_whole_image(
    cluster_client: object, tmp_path: Path, chunks: int, sigma: float
) -> None:
    smoothing = f"  - gaussian: {{sigma: {sigma}}}\n" if sigma else ""
    path = _write_yaml(
        tmp_path,
        f"""
source: {{path: {LANDSAT}, bands: [5]}}
chunks: {chunks}
steps:
{smoothing}  - threshold: {{method: otsu, foreground: below}}
  - label: {{connectivity: 2}}
output: out/water_labels.zarr
""",
    )
    result = Workflow.from_yaml(path).run(cluster_client)

    with rasterio.open(LANDSAT) as src:
        band = src.read(5)
        transform, crs = src.transform, src.crs
    reference, count = _whole_image(band, sigma, 2, below=True)
    assert result.num == count
    assert_same_partition(result.labels.compute(), reference)

    written = open_label_array(tmp_path / "out" / "water_labels.zarr")
    assert written.attrs["crs"] == crs.to_wkt()
    assert written.attrs["transform"] == list(transform)[:6]
    record = json.loads((tmp_path / "out" / "water_labels.run.json").read_text())
    assert record["objects"] == count
    assert record["versions"]["segpipe"] == pipeline.__version__
    assert set(record["timings_s"]) >= {"open", "fit"}
    # A threshold of the image is computed again in the second pass; a smoothed
    # one's first-pass labels are recorded and read back.
    again = "computed again in the second pass"
    assert record["first_pass"]["labels"] == ("recorded" if sigma else again)


@pytest.mark.cluster
def test_nuclei_3d_workflow_in_python(cluster_client: object, tmp_path: Path) -> None:
    flow = Workflow(
        source=str(NUCLEI),
        steps=[{"gaussian": {"sigma": 1.0}}, {"threshold": {}}, {"label": {"connectivity": 3}}],
        output=str(tmp_path / "nuclei.zarr"),
        chunks=[20, 70, 90],
    )
    result = flow.run(cluster_client)
    reference, count = _whole_image(tifffile.imread(NUCLEI), 1.0, 3)
    assert result.num == count
    assert_same_partition(result.labels.compute(), reference)


def test_otsu_is_global_and_equals_skimage_without_nodata() -> None:
    rng = np.random.default_rng(4)
    values = (rng.normal(90, 30, (300, 200)).clip(0, 255)).astype(np.uint8)
    values[:60] = rng.integers(180, 256, (60, 200))
    valid = np.ones(values.shape, dtype=bool)
    valid[::7, ::5] = False  # nodata pixels must not count
    data = da.from_array(values, chunks=(70, 45))[None]
    fitted = Threshold().fit(data, da.from_array(valid, chunks=(70, 45)))
    assert fitted == threshold_otsu(values[valid])

    floats = ndimage.gaussian_filter(values.astype(np.float32), 2)
    fitted = Threshold().fit(da.from_array(floats, chunks=(64, 64))[None], None)
    assert np.float32(fitted) == threshold_otsu(floats)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "source: a.tif\nsteps: [{gausian: {sigma: 1}}, threshold, label]\noutput: o.zarr",
            "unknown step 'gausian'; the steps are: canny, clear_border, ",
        ),
        (
            "source: a.tif\nsteps: [{gaussian: {sigma: -1}}, threshold, label]\noutput: o.zarr",
            "gaussian: sigma: Input should be greater than 0 (got -1)",
        ),
        (
            "source: a.tif\nsteps: [{threshold: {method: otsuu}}, label]\noutput: o.zarr",
            "method: Input should be 'otsu'",
        ),
        (
            "source: a.tif\nsteps: [threshold, label]\noutput: o.zarr\nchunk: 5",
            "chunk: Extra inputs are not permitted",
        ),
        ("steps: [threshold, label]\noutput: o.zarr", "source: Field required"),
        (
            "source: a.tif\nsteps: [label, threshold]\noutput: o.zarr",
            "the steps end with one label step",
        ),
        ("source: a.tif\nsteps: [threshold, label]\noutput: {}", "name at least one of"),
        ("source: [a\n", "not valid YAML"),
    ],
)
def test_bad_workflow_files_name_the_file_and_the_field(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    path = _write_yaml(tmp_path, yaml_text)
    with pytest.raises(WorkflowError) as error:
        Workflow.from_yaml(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)


def test_chunks_smaller_than_the_halo_are_refused_before_work(tmp_path: Path) -> None:
    flow = Workflow(
        source=str(NUCLEI),
        steps=[{"gaussian": {"sigma": 5}}, "threshold", "label"],
        output=str(tmp_path / "x.zarr"),
        chunks=[10, 16, 16],
    )
    with pytest.raises(pipeline.InputValueError, match=r"halo 20 needed by gaussian\(sigma=5\.0\)"):
        flow.run(client=NoClient())
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("step", [{"gaussian": {"sigma": 20}}, {"watershed": {"min_distance": 25}}])
def test_an_image_thinner_than_the_halo_is_refused_before_work(tmp_path: Path, step: dict) -> None:
    """60 planes in one chunk along z: no chunk is too small, but the image is."""
    steps = [step, "threshold", "label"] if "gaussian" in step else ["threshold", step]
    flow = Workflow(
        source=str(NUCLEI), steps=steps, output=str(tmp_path / "x.zarr"), chunks=[60, 128, 128]
    )
    with pytest.raises(
        pipeline.InputValueError, match=r"60 pixels along z, fewer than the halo (80|100) needed by"
    ):
        flow.run(client=NoClient())
    assert not (tmp_path / "x.zarr").exists()


def test_existing_output_is_refused_before_work(tmp_path: Path) -> None:
    (tmp_path / "x.zarr").mkdir()
    flow = Workflow(
        source=str(NUCLEI), steps=["threshold", "label"], output=str(tmp_path / "x.zarr")
    )
    with pytest.raises(pipeline.OutputExistsError, match="--overwrite"):
        flow.run(client=NoClient())


@pytest.mark.cluster
def test_segpipe_run_from_the_command_line(tmp_path: Path) -> None:
    path = _write_yaml(
        tmp_path,
        f"source: {NUCLEI}\nchunks: [30, 128, 128]\nsteps: [threshold, label]\noutput: n.zarr\n",
    )
    command = SEGPIPE
    done = subprocess.run([*command, "run", str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "objects" in done.stdout and (tmp_path / "n.zarr").exists()

    again = subprocess.run(
        [*command, "run", str(path)], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr

    bad = _write_yaml(tmp_path, "source: x.tif\nsteps: [threshold]\noutput: y.zarr\n")
    failed = subprocess.run([*command, "run", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and str(bad) in failed.stderr
    debug = subprocess.run([*command, "--debug", "run", str(bad)], capture_output=True, text=True)
    assert "Traceback" in debug.stderr


@pytest.mark.cluster
def test_segpipe_run_on_a_running_scheduler(local_cluster: object, tmp_path: Path) -> None:
    address = local_cluster.scheduler_address  # type: ignore[attr-defined]
    path = _write_yaml(
        tmp_path,
        f"source: {NUCLEI}\nchunks: [30, 128, 128]\nsteps: [threshold, label]\noutput: n.zarr\n",
    )
    command = SEGPIPE
    done = subprocess.run(
        [*command, "run", str(path), "--scheduler", address],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "cluster: 2 workers" in done.stdout
    stack = tifffile.imread(NUCLEI)
    reference, count = ndimage.label(stack > threshold_otsu(stack))
    assert f"done: {count} objects" in done.stdout
    assert_same_partition(open_label_array(tmp_path / "n.zarr")[...], reference)
