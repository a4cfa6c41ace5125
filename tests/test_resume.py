"""Runs that lose a worker, or die whole, on real scheduler and worker processes."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import pipeline
from pipeline.data import sample_path
from pipeline.io._chunks import done_chunks
from tests.conftest import SEGPIPE, dask_processes, subprocess_env

LANDSAT = sample_path("L7_ETMs.tif")
CHUNKS = 32  # about a hundred label chunks

pytestmark = pytest.mark.cluster


def write_workflow(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(
        f"source: {{path: {LANDSAT}, bands: [5]}}\n"
        f"chunks: {CHUNKS}\n"
        "steps:\n"
        "  - tests.custom_steps:slow_threshold: {level: 60, delay: 0.03}\n"
        "  - label: {connectivity: 2}\n"
        f"output: {folder / 'labels.zarr'}\n"
    )
    return path


def segpipe(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*SEGPIPE, *args],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


PASSES = {
    "first": ".labels.zarr.run-*.first/local.zarr.done",  # kernels run, local labels recorded
    "write": ".labels.zarr.run-*.done",  # final labels written
}


def recorded(folder: Path, stage: str) -> int:
    """Chunks the run writing into ``folder`` recorded as done in pass ``stage``."""
    return sum(len(done_chunks(done)) for done in folder.glob(PASSES[stage]))


def wait_for_chunks(run: subprocess.Popen, folder: Path, stage: str, count: int) -> None:
    deadline = time.monotonic() + 120
    while recorded(folder, stage) < count:
        assert run.poll() is None, run.communicate()[0]
        assert time.monotonic() < deadline, "the run did not get that far"
        time.sleep(0.005)


def chunk_digests(labels: Path) -> dict[str, str]:
    """The digest of every chunk file of a label output's data variable."""
    files = sorted(p for p in (labels / "labels" / "c").rglob("*") if p.is_file())
    assert files, f"no label chunks under {labels}"
    return {str(p.relative_to(labels)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("undisturbed")
    workflow = write_workflow(folder, "water")
    with dask_processes(folder / "dask", n_workers=2) as cluster:
        run = segpipe("run", str(workflow), "--scheduler", cluster.address)
        output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output
    return chunk_digests(folder / "labels.zarr")


def test_a_run_that_loses_a_worker_completes_with_the_same_chunks(
    tmp_path: Path, undisturbed: dict[str, str]
) -> None:
    workflow = write_workflow(tmp_path, "water")
    with dask_processes(tmp_path / "dask", n_workers=3) as cluster:
        run = segpipe("run", str(workflow), "--scheduler", cluster.address)
        wait_for_chunks(run, tmp_path, "first", len(undisturbed) // 2)
        cluster.workers[0].kill()  # SIGKILL, mid-write
        output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output
    assert chunk_digests(tmp_path / "labels.zarr") == undisturbed
    assert not list(tmp_path.glob(".labels.zarr.run-*"))  # no staging left behind


@pytest.mark.parametrize(("stage", "fraction"), [("first", 2), ("write", 10)])
def test_a_killed_run_resumes_where_it_stopped(
    tmp_path: Path, undisturbed: dict[str, str], stage: str, fraction: int
) -> None:
    workflow = write_workflow(tmp_path, "water")
    with dask_processes(tmp_path / "dask", n_workers=2) as cluster:
        run = segpipe("run", str(workflow), "--scheduler", cluster.address)
        wait_for_chunks(run, tmp_path, stage, len(undisturbed) // fraction)
        run.kill()  # client, scheduler and workers all die at once
        cluster.kill()
        run.communicate(timeout=30)  # reaps it and closes its pipe
    done_at_kill = {name: recorded(tmp_path, name) for name in PASSES}
    assert len(undisturbed) // fraction <= done_at_kill[stage] < len(undisturbed)
    assert not (tmp_path / "labels.zarr").exists()  # nothing visible before the end

    with dask_processes(tmp_path / "dask-again", n_workers=2) as cluster:
        again = segpipe("run", str(workflow), "--scheduler", cluster.address, "--resume")
        output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    found = re.search(
        r"resumed: (\d+) of (\d+) chunks had their first pass recorded, (\d+)", output
    )
    assert found is not None, output
    first, total, written = (int(n) for n in found.groups())
    assert first >= done_at_kill["first"]
    assert written >= done_at_kill["write"]
    assert total == len(undisturbed) > 60
    assert chunk_digests(tmp_path / "labels.zarr") == undisturbed
    assert not list(tmp_path.glob(".labels.zarr.run-*"))


def test_a_chunk_that_always_fails_is_named(tmp_path: Path) -> None:
    image = np.ones((96, 96), dtype=np.uint16)
    image[70, 40] = 999  # in chunk (2, 1) of 32 x 32 chunks
    tifffile.imwrite(tmp_path / "image.tif", image)
    flow = pipeline.Workflow(
        source=str(tmp_path / "image.tif"),
        steps=[{"tests.custom_steps:fails_on": {"value": 999}}, "label"],
        output=str(tmp_path / "labels.zarr"),
        chunks=32,
    )
    from distributed import Client

    failed = r"chunk \(2, 1\) \(from pixel \(64, 32\)\).*holds 999"
    with (
        dask_processes(tmp_path / "dask", n_workers=2) as cluster,
        Client(cluster.address) as client,
        pytest.raises(pipeline.PipelineError, match=failed),
    ):
        flow.run(client=client, retries=1)
    assert not (tmp_path / "labels.zarr").exists()
    assert recorded(tmp_path, "first") == 8  # every chunk but the failing one
