"""The segpipe command, driven as a user would: in a subprocess."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pytest
import rasterio
import tifffile
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate
from scipy import ndimage
from skimage.filters import threshold_otsu

import pipeline
from pipeline.cli import cli
from pipeline.cluster import connect
from pipeline.data import sample_path
from pipeline.io._zarr import open_label_array
from tests.conftest import assert_same_partition, run_segpipe


@pytest.mark.cluster
def test_demo_runs_on_the_embedded_cluster_and_refuses_to_overwrite(tmp_path: Path) -> None:
    first = run_segpipe("demo", "--output", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "2 worker processes" in first.stdout
    assert first.stdout.count("identical to whole-image scipy/scikit-image: yes") == 2
    out = tmp_path / "out"
    for name in ("landsat_water_labels.zarr", "landsat_water_labels.tif", "nuclei_3d.ome.zarr"):
        assert f"out/{name}" in first.stdout and (out / name).exists()

    # The written labels are right, checked here independently of the demo's own check.
    nuclei = tifffile.imread(sample_path("nuclei.tif")).astype(np.float32)
    smooth = ndimage.gaussian_filter(nuclei, 1.0, mode="reflect")
    reference, _ = ndimage.label(smooth > threshold_otsu(smooth), np.ones((3, 3, 3)))
    written = open_label_array(out / "nuclei_3d_labels.zarr")
    assert_same_partition(np.asarray(written[...]), reference)
    with (
        rasterio.open(out / "landsat_water_labels.tif") as cog,
        rasterio.open(sample_path("L7_ETMs.tif")) as scene,
    ):
        assert cog.crs == scene.crs and cog.transform == scene.transform
    assert cog_validate(str(out / "landsat_water_labels.tif"), strict=True)[0]

    again = run_segpipe("demo", "--output", "out", cwd=tmp_path)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr


def test_the_command_starts_and_lists_its_commands(tmp_path: Path) -> None:
    result = run_segpipe("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("demo", "run", "inspect", "schedule", "serve", "runs"):
        assert command in result.stdout


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


@pytest.mark.parametrize("command", _commands(cli), ids=" ".join)
def test_help_on_every_command(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="segpipe")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: segpipe {' '.join(command)} ")


def test_connect_refuses_a_malformed_address_and_misplaced_worker_count() -> None:
    with pytest.raises(pipeline.InputValueError, match=r"expected e\.g\. tcp://host:8786"):
        connect("not an address")
    with pytest.raises(pipeline.InputValueError, match="embedded cluster only"):
        connect("tcp://127.0.0.1:8786", n_workers=2)
    with pytest.raises(pipeline.InputValueError, match="at least 1"):
        connect(n_workers=0)
