"""Custom steps: @pipeline.step functions and module:function names in YAML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from scipy import ndimage

import pipeline
from pipeline.data import sample_path
from pipeline.workflow import WorkflowError
from tests import custom_steps
from tests.conftest import assert_same_partition

LANDSAT = sample_path("L7_ETMs.tif")


def _landsat() -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read())


def test_a_custom_mask_step_from_yaml_runs_on_a_cluster(
    tmp_path: Path, cluster_client: object
) -> None:
    workflow = tmp_path / "custom.yaml"
    workflow.write_text(
        f"source: {LANDSAT}\n"
        "chunks: 50\n"
        "steps:\n"
        "  - tests.custom_steps:brighter_than_surround: {margin: 3}\n"
        "  - label: {}\n"
        f"output: {tmp_path / 'bright.zarr'}\n"
    )
    result = pipeline.Workflow.from_yaml(workflow).run(client=cluster_client)
    image = _landsat().mean(axis=0)
    mask = image > ndimage.median_filter(image, 5, mode="reflect") + 3
    reference, count = ndimage.label(mask)
    assert result.num == count > 10
    assert_same_partition(result.labels.compute(), reference)


def test_a_custom_instance_step_is_stitched(tmp_path: Path, cluster_client: object) -> None:
    image = np.zeros((1, 90, 120), dtype=np.float32)
    rng = np.random.default_rng(3)
    for y, x in rng.integers(3, [87, 117], size=(40, 2)):
        image[0, y - 2 : y + 3, x - 2 : x + 3] = 10  # spots of at most 5 px, under the halo
    path = tmp_path / "spots.tif"
    tifffile.imwrite(path, image[0])
    flow = pipeline.Workflow(
        source=str(path),
        steps=[custom_steps.spots(level=5)],
        output=str(tmp_path / "spots.zarr"),
        chunks=[32, 40],
    )
    result = flow.run(client=cluster_client)
    reference, count = ndimage.label(image[0] > 5)
    assert result.num == count
    assert_same_partition(result.labels.compute(), reference)
    assert result.record["seams"]["fragments"] == 0
    assert result.record["seams"]["matched"] > 0


def test_an_image_step_may_drop_the_band_axis() -> None:
    block = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = custom_steps.band_sum().apply(block, None)
    np.testing.assert_array_equal(out, block.sum(axis=0)[None])


def test_a_step_returning_the_wrong_shape_names_itself() -> None:
    with pytest.raises(pipeline.InputValueError, match=r"tests.custom_steps:wrong_shape returned"):
        custom_steps.wrong_shape().apply(np.ones((1, 4, 4)), None)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"tests.custom_steps:undecorated": {}}, "plain function; decorate it with @pipeline.step"),
        ({"no_such_module:f": {}}, "cannot import 'no_such_module'"),
        ({"tests.custom_steps:missing": {}}, "has no step 'missing'"),
        ({"tests.custom_steps:spots": {"level": "high"}}, "level: Input should be a valid number"),
        ({"tests.custom_steps:spots": {}}, "level: Field required"),
    ],
)
def test_bad_custom_steps_fail_when_the_workflow_is_read(step: dict, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        pipeline.Workflow(source="a.tif", steps=[step, "label"], output="o.zarr")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"output": "polygons"}, "output must be one of"),
        ({"accepts": "labels"}, "accepts must be one of"),
        ({"halo": -1}, "halo must be"),
    ],
)
def test_bad_decorator_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(pipeline.InputValueError, match=message):
        pipeline.step(**options)
