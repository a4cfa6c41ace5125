"""segpipe submit / status: a run handed to a running scheduler, followed by its id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client
from scipy import ndimage
from skimage.filters import threshold_otsu

import pipeline
from pipeline.data import sample_path
from pipeline.submit import status, submit, wait_for
from tests.conftest import assert_same_partition, dask_processes, run_segpipe

LANDSAT = sample_path("L7_ETMs.tif")

pytestmark = pytest.mark.cluster


def water_reference() -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        band = src.read(5)
    return ndimage.label(band <= threshold_otsu(band))[0]


def test_a_submitted_run_goes_on_after_its_client_left(tmp_path: Path) -> None:
    workflow = tmp_path / "water.yaml"
    workflow.write_text(
        f"source: {{path: {LANDSAT}, bands: [5]}}\n"
        "chunks: 64\n"
        "steps: [{threshold: {method: otsu, foreground: below}}, label]\n"
        f"output: {tmp_path / 'water.zarr'}\n"
    )
    with dask_processes(tmp_path / "dask", n_workers=2) as cluster:
        submitted = run_segpipe("submit", str(workflow), "--scheduler", cluster.address)
        assert submitted.returncode == 0, submitted.stderr
        run_id = submitted.stdout.split("run ")[1].split()[0]
        assert "segpipe status" in submitted.stdout
        followed = run_segpipe("status", run_id, "--scheduler", cluster.address, "--follow")
        assert followed.returncode == 0, followed.stderr
        assert "done" in followed.stdout
        with Client(cluster.address) as client:
            found = status(run_id, client)
    assert found["state"] == "done"
    labels = pipeline.open_image(found["outputs"]["labels"]).data.compute()
    assert_same_partition(labels, water_reference())


def test_a_failed_run_says_why_and_an_unknown_id_is_refused(tmp_path: Path) -> None:
    flow = pipeline.Workflow(
        source=str(tmp_path / "missing.tif"), steps=["threshold", "label"], output="o.zarr"
    )
    with (
        dask_processes(tmp_path / "dask", n_workers=1) as cluster,
        Client(cluster.address) as client,
    ):
        run_id = submit(flow, client)
        found = wait_for(run_id, client, timeout=120)
        with pytest.raises(pipeline.InputValueError, match="knows no run 'nosuchrun'"):
            status("nosuchrun", client)
        unknown = run_segpipe("status", "nosuchrun", "--scheduler", cluster.address)
    assert found["state"] == "failed"
    assert "missing.tif" in found["error"]
    assert unknown.returncode == 1 and "knows no run" in unknown.stderr
