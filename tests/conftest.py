"""Shared test helpers: the partition check, the real images, a real cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    max_examples=int(os.environ.get("SEGPIPE_HYPOTHESIS_EXAMPLES", "150")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")

DATA = Path(__file__).parent / "data"
WORKFLOW_DATA = Path(__file__).parent.parent / "workflows" / "data"  # the workflows' samples


def assert_same_partition(labels: np.ndarray, reference: np.ndarray) -> None:
    """Assert both label images split the pixels into the same objects.

    Background must match exactly; every reference label must meet exactly one
    of ours and every one of ours exactly one reference label. Our labels must
    also be consecutive from 1.
    """
    assert labels.shape == reference.shape
    ours, theirs = labels.ravel(), reference.ravel()
    np.testing.assert_array_equal(ours == 0, theirs == 0, err_msg="background differs")
    fg = ours != 0
    pairs = np.unique(np.stack([ours[fg].astype(np.int64), theirs[fg].astype(np.int64)]), axis=1)
    assert np.unique(pairs[0]).size == pairs.shape[1], "one of our labels spans several objects"
    assert np.unique(pairs[1]).size == pairs.shape[1], "one object was split into several labels"
    present = np.unique(ours[fg])
    np.testing.assert_array_equal(present, np.arange(1, present.size + 1))


def object_f1(labels: np.ndarray, reference: np.ndarray, iou: float = 0.5) -> float:
    """Object-level F1: a pair of objects matches when their IoU is above ``iou``
    (>= 0.5 makes matches one to one); F1 = 2 * matches / (ours + theirs)."""
    assert labels.shape == reference.shape
    ours, theirs = labels.ravel().astype(np.int64), reference.ravel().astype(np.int64)
    n_ours, n_theirs = np.unique(ours[ours != 0]).size, np.unique(theirs[theirs != 0]).size
    if n_ours + n_theirs == 0:
        return 1.0
    both = (ours != 0) & (theirs != 0)
    pairs, overlap = np.unique(np.stack([ours[both], theirs[both]]), axis=1, return_counts=True)
    size_ours, size_theirs = np.bincount(ours), np.bincount(theirs)
    union = size_ours[pairs[0]] + size_theirs[pairs[1]] - overlap
    matches = int((overlap / union > iou).sum())
    return 2 * matches / (n_ours + n_theirs)


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[object]:
    """A real distributed cluster: a scheduler and 2 worker processes on 127.0.0.1."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        yield cluster


@pytest.fixture
def cluster_client(local_cluster: object) -> Iterator[object]:
    """A client of the shared cluster, the default scheduler for one test only."""
    from distributed import Client

    with Client(local_cluster) as client:
        yield client


class NoClient:
    """Stands where a client goes, for runs that must fail validation before any work:
    a run that computes anything on it fails."""

    def as_current(self) -> NoClient:
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


ROOT = Path(__file__).parent.parent
SEGPIPE = [sys.executable, "-c", "from pipeline.cli import main; main()"]  # the command


def run_segpipe(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the ``segpipe`` command in a subprocess; its output as text."""
    return subprocess.run(
        [*SEGPIPE, *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def subprocess_env() -> dict[str, str]:
    """The environment for segpipe / dask processes started by tests: the project
    root on the path (for tests.custom_steps), no inherited dask settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class DaskProcesses:
    """A real `dask scheduler` and `dask worker` processes on 127.0.0.1."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL every process (and anything it started), and reap them."""
        for process in [*self.workers, self.scheduler]:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@contextmanager
def dask_processes(
    folder: Path,
    n_workers: int = 2,
    *,
    scheduler_args: Sequence[str] = (),
    worker_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> Iterator[DaskProcesses]:
    """Start a scheduler and ``n_workers`` single-threaded workers (no nanny, so a
    killed worker stays dead); kill them all at the end. ``wait``: until the
    workers have joined (through a plain client: not with TLS)."""
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / f"scheduler-{time.monotonic_ns()}.json"
    environment = {**subprocess_env(), **(env or {})}
    log = open(folder / "dask.log", "ab")  # noqa: SIM115 - closed below

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            env=environment,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group, killed as one
        )

    scheduler = start(
        "distributed.cli.dask_scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--dashboard-address",
        ":0",
        "--scheduler-file",
        str(scheduler_file),
        *scheduler_args,
    )
    processes = DaskProcesses(address="", scheduler=scheduler)
    try:
        deadline = time.monotonic() + 60
        while not processes.address:
            if time.monotonic() > deadline or scheduler.poll() is not None:
                raise RuntimeError(f"the scheduler did not start; see {folder / 'dask.log'}")
            with suppress(FileNotFoundError, json.JSONDecodeError, KeyError):
                processes.address = json.loads(scheduler_file.read_text())["address"]
            time.sleep(0.1)
        for _ in range(n_workers):
            processes.workers.append(
                start(
                    "distributed.cli.dask_worker",
                    processes.address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--local-directory",
                    str(folder / "workers"),
                    *worker_args,
                )
            )
        if wait:
            from distributed import Client

            with Client(processes.address, timeout=60) as client:
                client.wait_for_workers(n_workers, timeout=60)
        yield processes
    finally:
        processes.kill()
        log.close()
