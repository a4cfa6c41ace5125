"""Schedules, the run ledger and the server's looks, in process (serve itself: test_serve)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage as ndi

import pipeline
from pipeline.data import sample_path
from pipeline.errors import InputValueError, ReadError
from pipeline.io._zarr import open_label_array
from pipeline.schedule import Ledger, ServeLock, Server, ServerRunningError, add_schedule
from pipeline.schedule._inputs import matching
from tests.conftest import ROOT, SEGPIPE, assert_same_partition, run_segpipe

LANDSAT = sample_path("L7_ETMs.tif")
LEVEL = 60


def write_scene(path: Path, row: int = 0, col: int = 0, size: tuple[int, int] = (150, 200)) -> Path:
    """A crop of the Landsat scene, as a GeoTIFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(LANDSAT) as source:
        window = Window(col, row, size[1], size[0])
        profile = source.profile | {
            "height": size[0],
            "width": size[1],
            "transform": source.transform @ Affine.translation(col, row),
        }
        data = source.read(window=window)
    with rasterio.open(path, "w", **profile) as target:
        target.write(data)
    return path


def reference_labels(path: Path) -> np.ndarray:
    """Whole-image labels of band 5 above LEVEL, 8-connected (scipy)."""
    with rasterio.open(path) as source:
        band = source.read(5)
    return ndi.label(band > LEVEL, structure=np.ones((3, 3)))[0]


def write_workflow(folder: Path, source: str, labels: str, *, delay: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "water.yaml"
    path.write_text(
        f"source: {{path: '{source}', bands: [5]}}\n"
        "chunks: 64\n"
        "steps:\n"
        f"  - tests.custom_steps:slow_threshold: {{level: {LEVEL}, delay: {delay}}}\n"
        "  - label: {connectivity: 2}\n"
        f"output: {{labels: '{labels}'}}\n"
    )
    return path


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "home" / "ledger.sqlite")


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look last written ``seconds`` ago."""
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def _no_cluster() -> None:
    raise AssertionError("only looking: no run may start")


# templates -------------------------------------------------------------------


def test_templates_name_each_input(tmp_path: Path) -> None:
    flow = pipeline.Workflow(
        "inbox/*.nii.gz",
        ["threshold", "label"],
        {"labels": "out/{parent}/{stem}_{date}_{time}_{run}.zarr", "table": "out/{name}.csv"},
        base=tmp_path,
    )
    assert flow.templated
    one = flow.for_input(
        tmp_path / "inbox" / "ch2.nii.gz", when=datetime(2026, 3, 4, 5, 6, 7), run="12"
    )
    assert not one.templated
    assert one.spec.source.path == str(tmp_path / "inbox" / "ch2.nii.gz")
    assert one.output_paths() == {
        "labels": tmp_path / "out" / "inbox" / "ch2_2026-03-04_050607_12.zarr",
        "table": tmp_path / "out" / "ch2.nii.gz.csv",
    }


def test_a_templated_workflow_refuses_a_single_run(tmp_path: Path) -> None:
    path = write_workflow(tmp_path, "inbox/*.tif", "out/{stem}.zarr")
    with pytest.raises(pipeline.WorkflowError, match="schedule add"):
        pipeline.Workflow.from_yaml(path).run()
    result = run_segpipe("run", str(path), cwd=ROOT)
    assert result.returncode == 1
    assert "templates for many inputs" in result.stderr
    assert "cluster:" not in result.stdout  # refused before any cluster started
    assert not (tmp_path / "out").exists()


# schedule add ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "labels", "options", "error", "message"),
    [
        ("inbox/*.tif", "out/{stem}.zarr", {}, InputValueError, "say when it runs"),
        ("inbox/*.tif", "out/{stem}.zarr", {"cron": "0 25 * * *"}, InputValueError, "five"),
        ("inbox/*.tif", "out/{stem}.zarr", {"cron": "* * * *"}, InputValueError, "five"),
        (
            "inbox/*.tif",
            "out/{stem}.zarr",
            {"cron": "0 2 * * *", "timezone": "Mars/Olympus"},
            InputValueError,
            "IANA",
        ),
        (
            "inbox/*.tif",
            "out/labels.zarr",
            {"watch": "inbox/*.tif"},
            pipeline.WorkflowError,
            r"output.labels 'out/labels.zarr': every input of the pattern would write the same",
        ),
        (
            "scene.tif",
            "out/labels.zarr",
            {"cron": "0 2 * * *"},
            pipeline.WorkflowError,
            r"every tick would write the same output; put \{date\} or \{time\} or \{run\}",
        ),
        (
            "inbox/*.tif",
            "out/{scene}.zarr",
            {"cron": "0 2 * * *"},
            pipeline.WorkflowError,
            r"uses \{scene\}; the placeholders are",
        ),
        (
            "inbox/*.tif",
            "out/{stem.zarr",
            {"watch": "inbox/*.tif"},
            pipeline.WorkflowError,
            "literal brace",
        ),
        ("inbox/*.tif", "out/{stem}.zarr", {"watch": "x", "retries": -1}, InputValueError, "0"),
    ],
)
def test_schedule_add_checks_everything_first(
    tmp_path: Path,
    ledger: Ledger,
    source: str,
    labels: str,
    options: dict,
    error: type[Exception],
    message: str,
) -> None:
    path = write_workflow(tmp_path, source, labels)
    with pytest.raises(error, match=message):
        add_schedule(ledger, path, **options)
    assert ledger.schedules() == []


def test_schedule_add_needs_a_readable_workflow(tmp_path: Path, ledger: Ledger) -> None:
    with pytest.raises(ReadError, match=r"missing\.yaml"):
        add_schedule(ledger, tmp_path / "missing.yaml", watch="inbox/*.tif")
    assert ledger.schedules() == []


def test_schedules_are_listed_and_removed(tmp_path: Path, ledger: Ledger) -> None:
    path = write_workflow(tmp_path, "inbox/*.tif", "out/{stem}.zarr")
    first = add_schedule(ledger, path, watch=str(tmp_path / "inbox/*.tif"))
    second = add_schedule(ledger, path, cron="0 2 * * *", timezone="UTC")
    assert [row.id for row in ledger.schedules()] == [first.id, second.id]
    assert second.watch is None and second.cron == "0 2 * * *"
    assert ledger.remove_schedule(first.id).watch == str(tmp_path / "inbox" / "*.tif")
    assert [row.id for row in ledger.schedules()] == [second.id]
    with pytest.raises(InputValueError, match=f"no schedule {first.id}"):
        ledger.remove_schedule(first.id)


# the ledger --------------------------------------------------------------------

_CLAIMER = """
import sys, time
from pathlib import Path
from pipeline.schedule import Ledger
ledger = Ledger(Path(sys.argv[1]))
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
mine = [ledger.claim(1, "/w.yaml", f"/inbox/{i}.tif") for i in range(30)]
print(" ".join(str(run) for run in mine if run is not None))
"""


def test_the_ledger_claims_each_input_once_across_processes(ledger: Ledger) -> None:
    start = time.time() + 2  # all three start claiming at the same moment
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, str(ledger.path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(3)
    ]
    claimed = [int(run) for c in claimers for run in c.communicate(timeout=60)[0].split()]
    assert all(c.returncode == 0 for c in claimers)
    assert sorted(claimed) == sorted({run.id for run in ledger.runs()})
    assert len(claimed) == 30
    assert sorted(run.input for run in ledger.runs()) == sorted(
        f"/inbox/{i}.tif" for i in range(30)
    )


def test_a_failing_run_backs_off_then_fails(ledger: Ledger) -> None:
    run = ledger.claim(1, "/w.yaml", "/inbox/a.tif", retries=2, backoff=10)
    assert run is not None
    waits = []
    for attempt in range(1, 4):
        assert ledger.start(run, {})
        assert not ledger.start(run, {})  # taken once
        status = ledger.failed(run, error=f"boom {attempt}", traceback="", final=False)
        found = ledger.run(run)
        assert (status, found.status, found.attempts) == (
            ("retrying",) * 2 + (attempt,) if attempt < 3 else ("failed", "failed", 3)
        )
        if found.next_try is not None:
            ended, next_try = (datetime.fromisoformat(t) for t in (found.ended, found.next_try))
            waits.append((next_try - ended).total_seconds())
            assert ledger.next_due(ended) is None  # not before its backoff
            assert ledger.next_due(next_try).id == run
            # the test takes it at once
    assert waits == [10, 20]
    assert ledger.run(run).error == "boom 3"
    assert ledger.next_due(datetime.now(UTC) + timedelta(days=1)) is None
    assert ledger.retry(run).status == "queued"
    assert ledger.run(run).attempts == 0
    with pytest.raises(InputValueError, match="only failed runs"):
        ledger.retry(run)


def test_a_final_error_is_not_tried_again(ledger: Ledger) -> None:
    run = ledger.claim(1, "/w.yaml", "/inbox/a.tif", retries=5, backoff=0)
    assert run is not None and ledger.start(run, {"labels": "/out/a.zarr"})
    assert ledger.failed(run, error="WorkflowError: x", traceback="", final=True) == "failed"


def test_interrupted_runs_go_back_to_the_queue(ledger: Ledger) -> None:
    first = ledger.claim(1, "/w.yaml", "/inbox/a.tif")
    second = ledger.claim(1, "/w.yaml", "/inbox/b.tif")
    assert first is not None and second is not None
    assert ledger.start(first, {"labels": "/out/a.zarr"})
    assert [run.id for run in ledger.interrupted()] == [first]
    again = ledger.run(first)
    assert (again.status, again.owns, again.attempts) == ("queued", True, 0)
    assert not ledger.run(second).owns
    assert ledger.next_due(datetime.now(UTC)).id == first


def test_only_one_server_per_home(tmp_path: Path) -> None:
    assert not ServeLock.held(tmp_path)
    with ServeLock(tmp_path):
        assert ServeLock.held(tmp_path)
        with pytest.raises(ServerRunningError, match=f"pid {os.getpid()}"), ServeLock(tmp_path):
            pass
    assert not ServeLock.held(tmp_path)


# looking for inputs ------------------------------------------------------------


def test_inputs_in_transit_are_not_matched(tmp_path: Path) -> None:
    for name in ("a.tif", ".b.tif", "c.tif.part", "d.tif.tmp", "e.tif~"):
        (tmp_path / name).write_bytes(b"x" * 10)
    store = zarr.create_array(tmp_path / "f.zarr", shape=(8,), chunks=(4,), dtype="u1")
    store[:] = 1
    found = {item.path.name: item for item in matching(str(tmp_path / "*"))}
    assert sorted(found) == ["a.tif", "f.zarr"]
    inner = [p for p in (tmp_path / "f.zarr").rglob("*") if p.is_file()]
    assert found["f.zarr"].size == sum(p.stat().st_size for p in inner)
    assert found["f.zarr"].modified == max(p.stat().st_mtime for p in [*inner, tmp_path / "f.zarr"])


def test_only_fully_written_inputs_are_queued(tmp_path: Path, ledger: Ledger) -> None:
    path = write_workflow(tmp_path, "inbox/*.tif", "out/{stem}.zarr")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    add_schedule(ledger, path, watch=str(inbox / "*.tif"), settle=0.5)
    server = Server(ledger, connect=_no_cluster, log=lambda line: None)
    (inbox / "old.tif").write_bytes(b"x" * 10)
    age(inbox / "old.tif", 100)
    (inbox / "new.tif").write_bytes(b"x" * 10)  # written just now
    (inbox / "growing.tif").write_bytes(b"x" * 10)
    age(inbox / "growing.tif", 100)
    server.look()
    assert ledger.runs() == []  # the server has not seen any of them stay the same yet
    time.sleep(0.6)
    with open(inbox / "growing.tif", "ab") as handle:
        handle.write(b"more")  # still being written
    age(inbox / "growing.tif", 100)  # even with a time that looks old
    server.look()
    assert sorted(Path(run.input).name for run in ledger.runs()) == ["new.tif", "old.tif"]
    time.sleep(0.6)
    server.look()
    server.look()
    names = [Path(run.input).name for run in ledger.runs()]
    assert sorted(names) == ["growing.tif", "new.tif", "old.tif"]  # each once


def test_overlapping_triggers_make_one_run_per_input(tmp_path: Path, ledger: Ledger) -> None:
    inbox = tmp_path / "inbox"
    path = write_workflow(tmp_path, str(inbox / "*.tif"), "out/{stem}.zarr")
    inbox.mkdir()
    for name in ("a.tif", "b.tif"):
        (inbox / name).write_bytes(b"x")
        age(inbox / name, 100)
    add_schedule(ledger, path, watch=str(inbox / "*.tif"), settle=0)
    add_schedule(ledger, path, cron="* * * * * *", settle=0)  # every second, same inputs
    add_schedule(ledger, path, watch=str(inbox / "a*"), cron="* * * * * *", settle=0)
    servers = [Server(ledger, connect=_no_cluster, log=lambda line: None) for _ in range(2)]
    for _ in range(3):
        time.sleep(1.1)
        for server in servers:
            server.look()
    assert sorted(Path(run.input).name for run in ledger.runs()) == ["a.tif", "b.tif"]


def test_a_cron_schedule_of_one_file_runs_once_per_tick(
    tmp_path: Path, ledger: Ledger, cluster_client: object
) -> None:
    scene = write_scene(tmp_path / "scene.tif")
    path = write_workflow(tmp_path, "scene.tif", "out/scene_{date}_{time}.zarr")
    schedule = add_schedule(ledger, path, cron="30 2 * * *", timezone="UTC")
    server = Server(ledger, connect=lambda: cluster_client, log=lambda line: None)
    server.look()
    assert ledger.runs() == []  # no tick since the schedule was added
    ledger.checked(schedule.id, datetime.now(UTC) - timedelta(days=3))  # three ticks missed
    server.look()
    server.look()
    (run,) = ledger.runs()  # missed ticks come together as one run, for the latest
    tick = datetime.fromisoformat(run.tick)
    assert (tick.hour, tick.minute, tick.utcoffset()) == (2, 30, timedelta(0))
    assert timedelta(0) < datetime.now(UTC) - tick <= timedelta(days=1)
    server.serve(once=True)
    done = ledger.run(run.id)
    assert done.status == "done", done.error
    expected = tmp_path / "out" / f"scene_{tick:%Y-%m-%d}_023000.zarr"
    assert done.outputs == {"labels": str(expected)}
    reference = reference_labels(scene)
    assert_same_partition(open_label_array(expected)[:], reference)
    assert done.objects == reference.max()
    assert done.record is not None and Path(done.record).exists()


def test_the_schedule_and_runs_commands(
    tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    monkeypatch.setenv("SEGPIPE_HOME", str(ledger.path.parent))
    path = write_workflow(tmp_path, "inbox/*.tif", "out/{stem}.zarr")
    runner = CliRunner()

    def segpipe(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    added = segpipe("schedule", "add", str(path), "--watch", "inbox/*.tif", "--cron", "0 2 * * *")
    assert added.startswith("schedule 1: cron '0 2 * * *' and watch ")
    assert "inbox/*.tif" in segpipe("schedule", "list")
    assert "no runs" in segpipe("runs")
    run = ledger.claim(1, str(path), "/inbox/a.tif", retries=0)
    assert run is not None and ledger.start(run, {"labels": "/out/a.zarr"})
    ledger.failed(run, error="ReadError: /inbox/a.tif: truncated", traceback="Trace!", final=False)
    listed = segpipe("runs", "--status", "failed")
    assert " failed " in listed and "ReadError: /inbox/a.tif: truncated" in listed
    shown = segpipe("runs", "show", str(run), "--traceback")
    assert "output labels  /out/a.zarr" in shown and "Trace!" in shown
    assert "queued again" in segpipe("runs", "retry", str(run))
    assert ledger.run(run).status == "queued"
    assert "removed schedule 1" in segpipe("schedule", "remove", "1")
    assert "no schedules" in segpipe("schedule", "list")

    refused = subprocess.run(
        [*SEGPIPE, "runs", "show", "99"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "SEGPIPE_HOME": str(ledger.path.parent)},
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("segpipe: error: ") and "there is no run 99" in refused.stderr
