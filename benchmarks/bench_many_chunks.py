"""Many chunks: what a run of 20,000+ chunks costs the scheduler, batched and in one graph.

A deterministic uint8 image of smoothed noise (4096 x 5120 by default) stored
as zarr in 32 x 32 chunks (20,480 chunks) is segmented by a workflow
(``threshold: otsu`` then ``label``) with ``segpipe run --scheduler`` on a real
scheduler and two single-threaded worker processes started for the run. While
it runs, a second client samples the scheduler every 0.25 s: the number of
tasks it holds and its resident memory. Printed side by side:

- segpipe as it is: every pass submitted in batches of ``segpipe.batch-size``
  chunks (4096);
- the same run with the batch size raised above the chunk count, so that each
  pass goes to the scheduler as one graph (what a plain dask ``compute`` of the
  same work does).

Usage::

    python benchmarks/bench_many_chunks.py
    python benchmarks/bench_many_chunks.py --shape 2048 2560 --chunk 32   # 5,120 chunks
    python benchmarks/bench_many_chunks.py --no-one-graph                 # segpipe only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import zarr
from distributed import Client
from scipy import ndimage

WORK = Path(__file__).parent / "_work" / "many_chunks"
SEGPIPE = str(Path(sys.executable).with_name("segpipe"))  # the command, from this environment


def make_image(shape: tuple[int, int], chunk: int) -> Path:
    """Smoothed noise scaled to uint8 (about 40 % above its Otsu threshold), once."""
    path = WORK / f"noise_{shape[0]}x{shape[1]}_c{chunk}.zarr"
    if not path.exists():
        noise = np.random.default_rng(7).random(shape, dtype=np.float32)
        smooth = ndimage.gaussian_filter(noise, 4)
        scaled = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
        zarr.create_array(path, data=scaled.astype(np.uint8), chunks=(chunk, chunk))
    return path


@contextmanager
def cluster(folder: Path, workers: int) -> Any:
    """A scheduler and single-threaded worker processes, stopped at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    log = open(folder / "dask.log", "ab")  # noqa: SIM115 - closed below
    processes = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"),
                *("--port", "0", "--dashboard-address", ":0"),
                *("--scheduler-file", str(scheduler_file)),
            ],
            stdout=log,
            stderr=log,
        )
    ]
    try:
        while not scheduler_file.exists():
            time.sleep(0.1)
        time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        processes += [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "distributed.cli.dask_worker", address),
                    *("--nthreads", "1", "--no-nanny", "--no-dashboard"),
                    *("--local-directory", str(folder / "workers")),
                ],
                stdout=log,
                stderr=log,
            )
            for _ in range(workers)
        ]
        with Client(address) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address, processes[0].pid
    finally:
        for process in processes:
            process.kill()
            process.wait()
        log.close()


def sample(address: str, pid: int, stop: threading.Event, peaks: dict[str, float]) -> None:
    """Record the most tasks the scheduler held and its peak resident memory."""
    process = psutil.Process(pid)
    with Client(address) as client:
        while not stop.is_set():
            held = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            peaks["tasks"] = max(peaks["tasks"], held)
            peaks["rss"] = max(peaks["rss"], process.memory_info().rss / 2**20)
            time.sleep(0.25)


def run(image: Path, batch: int, workers: int) -> dict[str, float]:
    folder = WORK / f"run_batch_{batch}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    workflow = folder / "flow.yaml"
    workflow.write_text(
        f"source: {image}\n"
        "steps:\n  - threshold: {method: otsu}\n  - label\n"
        f"output: {folder / 'labels.zarr'}\n"
    )
    env = {**os.environ, "DASK_SEGPIPE__BATCH_SIZE": str(batch)}
    with cluster(folder / "dask", workers) as (address, pid):
        peaks = {"tasks": 0.0, "rss": psutil.Process(pid).memory_info().rss / 2**20}
        start_rss = peaks["rss"]
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(address, pid, stop, peaks))
        sampler.start()
        started = time.perf_counter()
        result = subprocess.run(
            [SEGPIPE, "run", str(workflow), "--scheduler", address],
            env=env,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
    if result.returncode != 0:
        raise RuntimeError(result.stdout + result.stderr)
    record = json.loads((folder / "labels.run.json").read_text())
    return {
        "seconds": elapsed,
        "tasks": peaks["tasks"],
        "rss": peaks["rss"],
        "start_rss": start_rss,
        "objects": record["objects"],
        "chunks": record["chunks_written"]["total"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=2, default=(4096, 5120))
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--one-graph",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the peer: each pass as one graph",
    )
    args = parser.parse_args()
    image = make_image(tuple(args.shape), args.chunk)
    chunks = int(np.prod([-(-s // args.chunk) for s in args.shape]))
    print(f"image {args.shape[0]} x {args.shape[1]} uint8, chunks {args.chunk}^2: {chunks} chunks")
    print(f"workflow: threshold otsu -> label; {args.workers} worker processes, 1 thread each\n")
    print("every pass over the chunks, then the preview and the object sizes for the report\n")
    rows = [("segpipe, batches of 4096 chunks", 4096)]
    if args.one_graph:
        rows.append(("one graph per pass", 10**9))
    print(
        f"{'run':<34}{'wall s':>8}{'peak tasks held':>17}{'scheduler peak MiB':>20}"
        f"{'(at start)':>12}{'objects':>10}"
    )
    for name, batch in rows:
        got = run(image, batch, args.workers)
        assert got["chunks"] == chunks
        print(
            f"{name:<34}{got['seconds']:>8.1f}{got['tasks']:>17,.0f}{got['rss']:>20.0f}"
            f"{got['start_rss']:>12.0f}{got['objects']:>10,}",
            flush=True,
        )


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        main()
