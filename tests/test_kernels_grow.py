"""region_grow: flood fills from seeds, stitched across chunks, against skimage/scipy."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import tifffile
from pydantic import ValidationError
from scipy import ndimage
from skimage.segmentation import flood

import pipeline
from pipeline.data import sample_path
from pipeline.kernels import RegionGrow
from pipeline.workflow import WorkflowError
from pipeline.workflow._run import RunResult, run_spec
from tests.conftest import assert_same_partition

LANDSAT = sample_path("L7_ETMs.tif")
NUCLEI = sample_path("nuclei.tif")


def run(tmp_path: Path, source: object, steps: list, chunks: object) -> RunResult:
    flow = pipeline.Workflow(
        source=source, steps=steps, output=str(tmp_path / "grown.zarr"), chunks=chunks
    )
    with dask.config.set(scheduler="threads"):
        return run_spec(flow.spec, flow.base)


def band(number: int) -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read(number))


@pytest.mark.parametrize("chunks", [1000, 64, [37, 50]])
def test_one_seed_grows_like_skimage_flood(tmp_path: Path, chunks: object) -> None:
    image = band(5)
    seed = (340, 300)  # in the sea, which crosses many chunks
    steps = [{"region_grow": {"seeds": [list(seed)], "tolerance": 12}}, "label"]
    result = run(tmp_path, {"path": str(LANDSAT), "bands": [5]}, steps, chunks)
    reference = flood(image, seed, tolerance=12, connectivity=1)
    assert result.num == 1
    np.testing.assert_array_equal(result.labels.compute() > 0, reference)
    assert reference.sum() > 10_000


def test_several_seeds_keep_the_regions_holding_them(tmp_path: Path) -> None:
    image = band(4)
    seeds = [[108, 112], [301, 192], [262, 142], [20, 20]]
    steps = [{"region_grow": {"seeds": seeds, "low": 60, "high": 80}}, {"label": {}}]
    result = run(tmp_path, {"path": str(LANDSAT), "bands": [4]}, steps, 45)
    inside, _ = ndimage.label((image >= 60) & (image <= 80))
    held = np.unique(inside[tuple(np.array(seeds).T)])
    reference, count = ndimage.label(np.isin(inside, held[held > 0]))
    assert result.num == count >= 2
    assert_same_partition(result.labels.compute(), reference)


def test_a_seed_mask_raster_grows_3d_nuclei(tmp_path: Path) -> None:
    volume = tifffile.imread(NUCLEI)[:, :128, :128]
    path = tmp_path / "crop.tif"
    tifffile.imwrite(path, volume)
    seeds = np.zeros(volume.shape, dtype=np.uint8)
    seeds[30, 60:64, 60:64] = 1
    tifffile.imwrite(tmp_path / "seeds.tif", seeds)
    steps = [
        {"gaussian": {"sigma": 1}},
        {"region_grow": {"seed_mask": "seeds.tif", "tolerance": 300}},
        {"label": {"connectivity": 1}},
    ]
    flow = pipeline.Workflow(
        source=str(path),
        steps=steps,
        output=str(tmp_path / "grown.zarr"),
        chunks=[20, 50, 50],
        base=tmp_path,
    )
    with dask.config.set(scheduler="threads"):
        result = run_spec(flow.spec, flow.base)
    smooth = ndimage.gaussian_filter(volume.astype(np.float32), 1)
    values = smooth[seeds > 0]
    band_mask = (smooth >= values.min() - 300) & (smooth <= values.max() + 300)
    inside, _ = ndimage.label(band_mask)
    reference = np.isin(inside, np.unique(inside[seeds > 0]))
    assert result.num == 1
    np.testing.assert_array_equal(result.labels.compute() > 0, reference)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tolerance": 3}, "give seeds"),
        ({"seeds": [[1, 1]], "seed_mask": "m.tif", "tolerance": 3}, "give seeds"),
        ({"seeds": [[1, 1]]}, "give tolerance, or both low and high"),
        ({"seeds": [[1, 1]], "tolerance": 3, "low": 1, "high": 2}, "give tolerance"),
        ({"seeds": [[1, 1]], "low": 5, "high": 2}, "low .5.0. is above high"),
        ({"seeds": [[1, 1]], "tolerance": -1}, "greater than or equal to 0"),
        ({"seeds": [[1, 1], [1, 2, 3]], "tolerance": 1}, "same number of coordinates"),
    ],
)
def test_bad_parameters_fail_at_construction(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RegionGrow(**params)


@pytest.mark.parametrize(
    ("seeds", "message"),
    [([[400, 10]], r"seed \[400, 10\] lies outside the image"), ([[1, 2, 3]], "3 coordinates")],
)
def test_bad_seeds_fail_before_anything_is_written(
    tmp_path: Path, seeds: list, message: str
) -> None:
    steps = [{"region_grow": {"seeds": seeds, "tolerance": 3}}, "label"]
    with pytest.raises(pipeline.InputValueError, match=message):
        run(tmp_path, {"path": str(LANDSAT), "bands": [5]}, steps, 64)
    assert not (tmp_path / "grown.zarr").exists()


def test_region_grow_needs_one_band(tmp_path: Path) -> None:
    steps = [{"region_grow": {"seeds": [[1, 1]], "tolerance": 3}}, "label"]
    with pytest.raises(pipeline.InputValueError, match="the image has 6"):
        run(tmp_path, str(LANDSAT), steps, 64)


def test_region_grow_in_a_workflow_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "grow.yaml"
    path.write_text(
        "source: a.tif\nsteps: [{region_grow: {seeds: [[1, 1]]}}, label]\noutput: o.zarr"
    )
    with pytest.raises(WorkflowError, match=r"region_grow: .*give tolerance"):
        pipeline.Workflow.from_yaml(path)
