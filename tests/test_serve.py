"""``segpipe serve`` as a real process: an inbox processed once per file, a kill survived."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

import pipeline
from pipeline.io._zarr import open_label_array
from pipeline.schedule import Ledger, Run
from tests.conftest import SEGPIPE, assert_same_partition, subprocess_env
from tests.test_resume import chunk_digests
from tests.test_schedule import reference_labels, write_scene, write_workflow

pytestmark = pytest.mark.cluster


def environment(home: Path) -> dict[str, str]:
    return {**subprocess_env(), "SEGPIPE_HOME": str(home)}


def segpipe(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEGPIPE, *args], env=environment(home), capture_output=True, text=True, timeout=120
    )


def one_worker(folder: Path) -> Path:
    """A cluster config: the embedded cluster, with one worker process."""
    path = folder / "one-worker.yaml"
    path.write_text("kind: local\nn_workers: 1\n")
    return path


@contextmanager
def serving(home: Path, folder: Path, *args: str) -> Iterator[subprocess.Popen]:
    """``segpipe serve`` in its own process group (with its cluster); stopped at the end."""
    log = open(folder / "serve.log", "a")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*SEGPIPE, "serve", "--cluster", str(one_worker(folder)), *args],
        env=environment(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()


def wait_until(
    condition: Callable[[], bool], process: subprocess.Popen, folder: Path, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, (folder / "serve.log").read_text()
        assert time.monotonic() < deadline, (folder / "serve.log").read_text()
        time.sleep(0.05)


def finished(ledger: Ledger, count: int) -> bool:
    runs = ledger.runs()
    return len(runs) == count and all(run.status in ("done", "failed") for run in runs)


def by_name(ledger: Ledger) -> dict[str, Run]:
    runs = ledger.runs()
    names = [Path(run.input).name for run in runs]
    assert len(names) == len(set(names)), f"an input ran twice: {names}"
    return dict(zip(names, runs, strict=True))


def drop(path: Path, source: Path) -> None:
    """Put ``source`` in the inbox as a careful writer does: a hidden name, then a rename."""
    hidden = path.with_name(f".{path.name}")
    hidden.write_bytes(source.read_bytes())
    hidden.rename(path)


def test_serve_processes_each_new_file_once(tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    inbox.mkdir()
    scenes = [
        write_scene(tmp_path / "scenes" / f"scene_{i}.tif", row, col)
        for i, (row, col) in enumerate([(0, 0), (0, 149), (200, 100)])
    ]
    workflow = write_workflow(tmp_path, str(inbox / "*.tif"), "out/{stem}_labels.zarr")
    for trigger in (["--watch", str(inbox / "*.tif")], ["--cron", "* * * * * */2"]):
        added = segpipe(home, "schedule", "add", str(workflow), *trigger, "--settle", "1.5",
                        "--retries", "1", "--backoff", "0.5")  # fmt: skip
        assert added.returncode == 0, added.stderr
    ledger = Ledger(home / "ledger.sqlite")

    with serving(home, tmp_path, "--interval", "0.2") as server:
        drop(inbox / scenes[0].name, scenes[0])
        (inbox / "corrupt.tif").write_bytes(b"II*\x00" + os.urandom(3000))
        # a file written slowly in place, with pauses shorter than --settle
        payload = scenes[1].read_bytes()
        step = len(payload) // 5 + 1
        pieces = [payload[i : i + step] for i in range(0, len(payload), step)]
        with open(inbox / scenes[1].name, "wb") as handle:
            for piece in pieces:
                handle.write(piece)
                handle.flush()
                os.fsync(handle.fileno())
                assert scenes[1].name not in by_name(ledger), "taken while still written"
                time.sleep(0.6)
        drop(inbox / scenes[2].name, scenes[2])
        wait_until(lambda: finished(ledger, 4), server, tmp_path)
        time.sleep(1.5)  # more looks and cron ticks: nothing runs twice
        assert finished(ledger, 4)

    runs = by_name(ledger)
    assert sorted(runs) == sorted(["corrupt.tif", *(scene.name for scene in scenes)])
    bad = runs.pop("corrupt.tif")
    assert (bad.status, bad.attempts) == ("failed", 2)
    assert "corrupt.tif" in bad.error and "ReadError" in bad.error
    for scene in scenes:
        run = runs[scene.name]
        assert (run.status, run.attempts, run.error) == ("done", 1, None)
        labels = tmp_path / "out" / f"{scene.stem}_labels.zarr"
        assert run.outputs == {"labels": str(labels)}
        reference = reference_labels(scene)
        assert_same_partition(open_label_array(labels)[:], reference)
        assert run.objects == reference.max()
    assert not (tmp_path / "out" / "corrupt_labels.zarr").exists()

    listed = segpipe(home, "runs")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(" done ") == 3 and listed.stdout.count(" failed ") == 1
    shown = segpipe(home, "runs", "show", str(bad.id))
    assert re.search(r"attempts\s+2 of 2", shown.stdout), shown.stdout
    assert "corrupt.tif" in shown.stdout and "ReadError" in shown.stdout


def test_a_killed_serve_resumes_its_run_without_repeating_it(
    tmp_path: Path, cluster_client: object
) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    scene = write_scene(inbox / "scene.tif", 0, 0, size=(352, 349))  # the whole scene
    os.utime(scene, (time.time() - 60, time.time() - 60))
    workflow = write_workflow(tmp_path, str(inbox / "*.tif"), "out/{stem}.zarr", delay=0.06)
    workflow.write_text(workflow.read_text().replace("chunks: 64", "chunks: 32"))
    added = segpipe(home, "schedule", "add", str(workflow), "--watch", str(inbox / "*.tif"),
                    "--settle", "0")  # fmt: skip
    assert added.returncode == 0, added.stderr
    ledger = Ledger(home / "ledger.sqlite")
    first_pass = tmp_path / "out"

    def recorded() -> int:
        return sum(
            len(list(d.iterdir())) for d in first_pass.glob(".*.run-*.first/local.zarr.done")
        )

    with serving(home, tmp_path, "--interval", "0.2") as server:
        wait_until(lambda: recorded() >= 40, server, tmp_path)
        os.killpg(server.pid, signal.SIGKILL)  # the server and its cluster, at once
    at_kill = recorded()
    (left,) = ledger.runs()
    assert left.status == "running" and at_kill < 121
    assert not (tmp_path / "out" / "scene.zarr").exists()
    listed = segpipe(home, "runs")
    assert " interrupted " in listed.stdout  # no server holds the lock any more

    with serving(home, tmp_path, "--interval", "0.2") as server:
        wait_until(lambda: finished(ledger, 1), server, tmp_path)
    (run,) = ledger.runs()
    assert (run.id, run.status, run.attempts) == (left.id, "done", 1)
    assert run.resumed_chunks is not None and run.resumed_chunks >= at_kill
    log = (tmp_path / "serve.log").read_text()
    assert f"run {run.id} ({scene}) was interrupted; it will be resumed" in log
    assert log.count(f"run {run.id} queued") == 1

    # byte for byte what one undisturbed run of the same file writes
    undisturbed = tmp_path / "undisturbed.zarr"
    plain = write_workflow(tmp_path / "plain", str(scene), str(undisturbed))
    plain.write_text(plain.read_text().replace("chunks: 64", "chunks: 32"))
    pipeline.Workflow.from_yaml(plain).run(cluster_client)
    assert chunk_digests(Path(run.outputs["labels"])) == chunk_digests(undisturbed)
    assert_same_partition(open_label_array(undisturbed)[:], reference_labels(scene))
