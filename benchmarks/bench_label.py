"""Exact chunked labelling: segpipe beside its peers, in one run, on one machine.

Every figure is megapixels per second on the same deterministic blob mask
(gaussian-smoothed noise, 40% foreground), printed side by side:

- whole array in memory, one core: scipy.ndimage.label and cc3d;
- in memory, threaded scheduler: pipeline.label and dask_image.ndmeasure.label;
- zarr to zarr on an embedded 2-process distributed cluster: pipeline.label,
  dask_image.ndmeasure.label, and the two-pass floor (a bare pool of 2
  processes doing only the unavoidable work of an exact two-pass labelling:
  read + label + faces, then read + label + offset + write; no stitching);
- peak resident memory per worker process for the cluster runs.

Usage::

    python benchmarks/bench_label.py                      # 4096^2 and 16384^2, chunks 1024 and 2048
    python benchmarks/bench_label.py --sizes 4096 --chunks 1024
    python benchmarks/bench_label.py --dask-image-max-size 16384   # the slow peer at every size

Inputs are built once under benchmarks/_work/ and reused. Each figure is the
best of --repeat runs (3 by default).
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import cc3d
import dask
import dask.array as da
import numpy as np
import zarr
from distributed import Client, LocalCluster
from scipy import ndimage

import pipeline
from pipeline.io import write_labels_zarr

WORK = Path(__file__).parent / "_work"
SIGMA = 4.0
FOREGROUND = 0.4


# ---------------------------------------------------------------- the input


def _noise_block(block: np.ndarray, block_id: tuple[int, int] | None = None) -> np.ndarray:
    seed = np.random.SeedSequence([12345, *(block_id or (0, 0))])
    return np.random.default_rng(seed).random(block.shape, dtype=np.float32)


def blob_mask(size: int, chunks: int) -> Path:
    """A size x size bool zarr of smoothed-noise blobs, 40% foreground, deterministic."""
    path = WORK / f"blobs_{size}_c{chunks}.zarr"
    if path.exists():
        return path
    noise = da.zeros((size, size), chunks=2048, dtype=np.float32).map_blocks(
        _noise_block, dtype=np.float32
    )
    depth = math.ceil(4 * SIGMA)
    smooth = noise.map_overlap(
        ndimage.gaussian_filter, depth=depth, boundary="reflect", sigma=SIGMA
    )
    # Uniform noise has variance 1/12; a 2D gaussian of sigma s divides it by 4 pi s^2.
    std = math.sqrt(1 / 12 / (4 * math.pi * SIGMA**2))
    threshold = 0.5 + 0.2533 * std  # the normal distribution's 60th percentile
    mask = (smooth > threshold).rechunk(chunks)
    staging = path.with_suffix(".partial")
    shutil.rmtree(staging, ignore_errors=True)
    target = zarr.create_array(staging, shape=mask.shape, chunks=(chunks, chunks), dtype=bool)
    with dask.config.set(scheduler="threads"):
        da.store(mask, target, lock=False)
    staging.rename(path)
    return path


# ---------------------------------------------------------- the measurements


def _rate(pixels: int, seconds: float) -> float:
    return pixels / seconds / 1e6


REPEAT = 3


def _timed(run: Callable[[], object]) -> float:
    """Best of REPEAT runs: the figure least disturbed by the rest of the machine."""
    best = math.inf
    for _ in range(REPEAT):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def whole_array(mask: np.ndarray) -> dict[str, float]:
    return {
        "scipy.ndimage.label, whole array": _rate(mask.size, _timed(lambda: ndimage.label(mask))),
        "cc3d, whole array": _rate(
            mask.size,
            _timed(lambda: cc3d.connected_components(mask.view(np.uint8), connectivity=4)),
        ),
    }


def in_memory_threads(mask: np.ndarray, chunks: int, with_dask_image: bool) -> dict[str, float]:
    """Both peers store into a preallocated array, so that dask's concatenation of
    a fresh full-size result (the same for both) does not dominate the figure."""
    from dask_image.ndmeasure import label as dask_image_label

    array = da.from_array(mask, chunks=chunks)
    small = da.from_array(mask[:512, :512], chunks=256)

    def segpipe(source: da.Array, out: np.ndarray) -> None:
        labels, _ = pipeline.label(source)
        da.store(labels, out, lock=False)

    def dask_image(source: da.Array, out: np.ndarray) -> None:
        labels, num = dask_image_label(source)
        dask.compute(da.store(labels, out, lock=False, compute=False), num)

    runs: dict[str, tuple[Callable[[da.Array, np.ndarray], None], type]] = {
        "pipeline.label": (segpipe, np.uint32)
    }
    if with_dask_image:
        runs["dask_image.ndmeasure.label"] = (dask_image, np.int32)
    out = {}
    with dask.config.set(scheduler="threads"):
        for name, (run, dtype) in runs.items():
            run(small, np.zeros(small.shape, dtype))  # warm up
            target = np.zeros(mask.shape, dtype)  # allocated and touched off the clock
            out[f"{name}, threads, in memory"] = _rate(
                mask.size, _timed(lambda run=run, target=target: run(array, target))
            )
            del target
    return out


def _peak_rss_mib() -> float:
    """This process's peak resident memory since it started (ru_maxrss would also
    count the parent's peak from before the worker was spawned)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _warm_up() -> None:
    """Import what the tasks use, so that no run pays for it on the clock."""
    import dask_image.ndmeasure  # noqa: F401

    import pipeline.stitch  # noqa: F401


def _on_fresh_cluster(run: Callable[[], object]) -> tuple[float, float]:
    """Best seconds for ``run`` on a new 2-process cluster, and its workers' peak RSS (MiB)."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,  # a closing cluster's heartbeats are no news
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_up)
        seconds = _timed(run)
        peaks = client.run(_peak_rss_mib)
    return seconds, max(peaks.values())


def zarr_to_zarr_cluster(
    source: Path, pixels: int, with_dask_image: bool
) -> dict[str, tuple[float, float]]:
    target = WORK / "labels_out.zarr"

    def segpipe(keep: bool) -> None:
        labels, _ = pipeline.label(da.from_zarr(str(source)), keep_labels=keep)
        write_labels_zarr(labels, target, overwrite=True)

    def dask_image() -> None:
        from dask_image.ndmeasure import label

        labels, num = label(da.from_zarr(str(source)))
        out = zarr.create_array(
            target,
            shape=labels.shape,
            chunks=zarr.open_array(source).chunks,
            dtype=labels.dtype,
            overwrite=True,
            config={"write_empty_chunks": True},
        )
        da.store(labels, out, lock=False)
        int(num.compute())

    runs = {
        "pipeline.label (labels kept)": lambda: segpipe(True),
        "pipeline.label (recomputed: bounded memory)": lambda: segpipe(False),
    }
    if with_dask_image:
        runs["dask_image.ndmeasure.label"] = dask_image
    out = {}
    for name, run in runs.items():
        seconds, peak = _on_fresh_cluster(run)
        out[f"{name}, 2 processes, zarr"] = (_rate(pixels, seconds), peak)
    shutil.rmtree(target, ignore_errors=True)
    return out


# ------------------------------------------------- the floor: a bare process pool


def _floor_pass1(job: tuple[str, tuple[int, int]]) -> tuple[int, list[np.ndarray]]:
    path, (i, j) = job
    source = zarr.open_array(path, mode="r")
    c = source.chunks
    block = source[i * c[0] : (i + 1) * c[0], j * c[1] : (j + 1) * c[1]]
    labels, n = cc3d.connected_components(
        block.view(np.uint8), connectivity=4, return_N=True, out_dtype=np.uint32
    )
    faces = [labels[0].copy(), labels[-1].copy(), labels[:, 0].copy(), labels[:, -1].copy()]
    return int(n), faces


def _floor_pass2(job: tuple[str, str, tuple[int, int], int]) -> None:
    path, out_path, (i, j), offset = job
    source = zarr.open_array(path, mode="r")
    target = zarr.open_array(out_path, mode="r+").with_config({"write_empty_chunks": True})
    c = source.chunks
    window = (slice(i * c[0], (i + 1) * c[0]), slice(j * c[1], (j + 1) * c[1]))
    labels = cc3d.connected_components(
        source[window].view(np.uint8), connectivity=4, out_dtype=np.uint32
    )
    labels[labels != 0] += np.uint32(offset)
    target[window] = labels


def two_pass_floor(source: Path) -> float:
    array = zarr.open_array(source, mode="r")
    grid = [math.ceil(s / c) for s, c in zip(array.shape, array.chunks, strict=True)]
    blocks = [(i, j) for i in range(grid[0]) for j in range(grid[1])]
    target = WORK / "floor_out.zarr"
    zarr.create_array(
        target, shape=array.shape, chunks=array.chunks, dtype=np.uint32, overwrite=True
    )
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(abs, range(2))  # start the processes before the clock

        def both_passes() -> None:
            first = pool.map(_floor_pass1, [(str(source), b) for b in blocks])
            offsets = np.cumsum([0] + [n for n, _ in first[:-1]])
            jobs = [
                (str(source), str(target), b, int(o)) for b, o in zip(blocks, offsets, strict=True)
            ]
            pool.map(_floor_pass2, jobs)

        seconds = _timed(both_passes)
    shutil.rmtree(target, ignore_errors=True)
    return _rate(array.size, seconds)


# --------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument(
        "--dask-image-max-size",
        type=int,
        default=4096,
        help="run dask_image.ndmeasure.label only up to this size (default 4096: with dask "
        ">= 2025.4 it takes about 9 minutes in memory and far longer on the cluster at 16384); "
        "0 leaves it out",
    )
    args = parser.parse_args()
    global REPEAT
    REPEAT = args.repeat
    WORK.mkdir(exist_ok=True)

    print(f"dask {dask.__version__}, zarr {zarr.__version__}, segpipe {pipeline.__version__}")
    for size in args.sizes:
        print(f"\n=== {size} x {size} blob mask ({size * size / 1e6:.0f} MP) ===")
        mask = zarr.open_array(blob_mask(size, args.chunks[0]))[...]
        print(f"foreground {mask.mean():.1%}, objects {ndimage.label(mask)[1]}")
        for name, rate in whole_array(mask).items():
            print(f"  {name:<60} {rate:8.1f} MP/s")
        with_dask_image = size <= args.dask_image_max_size
        if not with_dask_image:
            print(f"  (dask_image.ndmeasure.label left out above {args.dask_image_max_size})")
        for chunks in args.chunks:
            print(f"-- chunks {chunks} x {chunks}")
            source = blob_mask(size, chunks)
            for name, rate in in_memory_threads(mask, chunks, with_dask_image).items():
                print(f"  {name:<60} {rate:8.1f} MP/s")
            floor = two_pass_floor(source)
            print(f"  {'two-pass floor, bare 2-process pool, zarr to zarr':<60} {floor:8.1f} MP/s")
            cluster = zarr_to_zarr_cluster(source, mask.size, with_dask_image)
            for name, (rate, peak) in cluster.items():
                print(
                    f"  {name:<60} {rate:8.1f} MP/s  ({rate / floor:.2f} x floor, "
                    f"peak {peak:.0f} MiB per worker)"
                )


if __name__ == "__main__":
    main()
