"""Scale: one threshold + label workflow from megapixels to beyond memory, beside its peers.

Input: band 5 (SWIR) of the bundled Landsat 7 scene, mirrored and tiled to an
N x N uint8 zarr (zstd, chunks 2048^2), so the texture and the water bodies are
real and objects run across chunk borders. Built once per size under
benchmarks/_work/ and reused.

The workflow: ``threshold: {method: otsu, foreground: below}`` then ``label:
{connectivity: 2}``, written as a uint32 label zarr, run with ``Workflow.run``
on a fresh embedded LocalCluster of 2 single-threaded worker processes per
size. Printed per size, in the same run:

- segpipe: wall seconds (everything a user's run does: fit, both recorded
  passes, seams, write, preview and report), MP/s, nanoseconds per pixel, the
  stages, each worker's peak memory (VmHWM) against its limit, the peak
  memory of this process, which holds the client and the scheduler, and
  with ``--profile`` the functions the workers spent the run in (Dask's own
  statistical profiler);
- naive: the same global threshold (a histogram per chunk, summed) and a
  ``map_overlap`` of per-chunk labelling with the labeller segpipe uses
  (cc3d, 8-connected), written the same way: no stitching, so its labels are
  NOT globally consistent. segpipe's time over
  this one is what exactness costs, end to end and for the labelling alone
  (fit, both passes and the write, without the preview and report);
- the two-pass floor: naive plus the second pass that any exact chunked
  labelling needs (pass 1: each chunk labelled, its count and faces returned;
  pass 2: labelled again, ids offset, written), without pairing the seams or
  applying the merges, so it is a lower bound for exact labelling done this
  way; its time over naive is what exactness costs at the least;
- dask_image.ndmeasure.label on the same mask, zarr to zarr, same cluster (up
  to ``--dask-image-max``: it is slow);
- scipy.ndimage.label and cc3d on the whole mask in memory, one core (up to
  ``--whole-max``), with a check that segpipe found the same number of objects.

Usage::

    python benchmarks/bench_scale.py                          # 16384 .. 163840: 100x in pixels
    python benchmarks/bench_scale.py --sizes 16384 32768 --repeat 3   # best of 3 runs each
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cc3d
import dask
import dask.array as da
import numpy as np
import psutil
import rasterio
import zarr
from bench_label import _peak_rss_mib, _warm_up  # a worker's peak RSS (VmHWM); imports
from distributed import Client, LocalCluster
from scipy import ndimage
from skimage.filters import threshold_otsu

import pipeline
from pipeline.data import sample_path

WORK = Path(__file__).parent / "_work" / "scale"
CHUNK = 2048
FLOOR = "two-pass floor (no merges), same cluster"
STRUCTURE = np.ones((3, 3), dtype=bool)


# ---------------------------------------------------------------- the input


def _texture() -> np.ndarray:
    with rasterio.open(sample_path("L7_ETMs.tif")) as scene:
        return scene.read(5)


def _mirrored(block: np.ndarray, texture: np.ndarray, block_info: Any = None) -> np.ndarray:
    """The block of the endless mirrored tiling of ``texture`` (seamless, deterministic)."""
    (rows, cols) = block_info[None]["array-location"]
    index = []
    for (start, stop), period in zip((rows, cols), texture.shape, strict=True):
        at = np.arange(start, stop) % (2 * period)
        index.append(np.where(at < period, at, 2 * period - 1 - at))
    return texture[np.ix_(*index)]


def landsat_mosaic(size: int) -> Path:
    """A size x size uint8 zarr of mirrored Landsat band-5 texture (built once)."""
    path = WORK / f"landsat_{size}.zarr"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    blank = da.empty((size, size), chunks=CHUNK, dtype=np.uint8)
    mosaic = blank.map_blocks(_mirrored, _texture(), dtype=np.uint8)
    staging = path.with_suffix(".partial")
    shutil.rmtree(staging, ignore_errors=True)
    target = zarr.create_array(staging, shape=(size, size), chunks=(CHUNK, CHUNK), dtype="u1")
    da.store(mosaic, target, lock=False)
    staging.rename(path)
    return path


# ---------------------------------------------------------- the measurements


class _Sampler:
    """The peak resident memory of this process (client + scheduler) while it runs."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.process.memory_info().rss / 2**20)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _seconds(run: dict[str, Any]) -> float:
    return float(run["seconds"])


def _timed(run: Callable[[], object]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = run()
    return time.perf_counter() - start, value


def hot_functions(tree: dict[str, Any], top: int = 12) -> list[tuple[str, float]]:
    """The functions the workers spent most time in, by their own samples (not their
    callees'), from Dask's statistical profile (a sample every 10 ms per thread)."""
    own: dict[str, int] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        children = list(node.get("children", {}).values())
        stack += children
        rest = node.get("count", 0) - sum(child.get("count", 0) for child in children)
        if rest > 0 and "description" in node:
            where = node["description"]
            name = f"{where['name']} ({Path(where['filename']).name}:{where['line_number']})"
            own[name] = own.get(name, 0) + rest
    total = sum(own.values()) or 1
    ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
    return [(name, count / total) for name, count in ranked]


def _spilled_bytes(dask_worker: Any) -> int:
    """Bytes this worker has spilled to disk since it started (Dask's own metric)."""
    return int(
        sum(
            value
            for key, value in dask_worker.digests_total.items()
            if isinstance(key, tuple) and "disk-write" in key and key[-1] == "bytes"
        )
    )


def segpipe(source: Path, size: int, client: Client) -> dict[str, Any]:
    folder = WORK / f"run_{size}"
    shutil.rmtree(folder, ignore_errors=True)
    flow = pipeline.Workflow(
        source=str(source),
        steps=[
            {"threshold": {"method": "otsu", "foreground": "below"}},
            {"label": {"connectivity": 2}},
        ],
        output={"labels": str(folder / "labels.zarr")},
    )
    started = time.time()
    with _Sampler() as sampler:
        seconds, result = _timed(lambda: flow.run(client))
    profile = client.profile(start=started)
    workers = client.run(_peak_rss_mib)
    spilled = client.run(_spilled_bytes)
    limits = [w["memory_limit"] / 2**20 for w in client.scheduler_info()["workers"].values()]
    record = json.loads((folder / "labels.run.json").read_text())
    return {
        "seconds": seconds,
        "objects": result.num,
        "stages": record["timings_s"],
        "threshold": next(iter(record["fitted"].values())),
        "worker_peak": max(workers.values()),
        "worker_limit": min(limits),
        "spilled": sum(spilled.values()),
        "process_peak": sampler.peak,
        "process_start": sampler.start,
        "chunks": record["first_pass"]["total"],
        "folder": folder,
        "hot": hot_functions(profile),
    }


def _label_block(block: np.ndarray) -> np.ndarray:
    """The chunk labelled alone, with the labeller segpipe uses (cc3d, 8-connected)."""
    image = np.ascontiguousarray(block).view(np.uint8)
    return cc3d.connected_components(image, connectivity=8, out_dtype=np.uint32)


def _block_histogram(block: np.ndarray) -> np.ndarray:
    return np.bincount(block.ravel(), minlength=256)[None, None, :]


def _store(labels: da.Array, path: Path) -> None:
    target = zarr.create_array(
        path,
        shape=labels.shape,
        chunks=(CHUNK, CHUNK),
        dtype=labels.dtype,
        overwrite=True,
        config={"write_empty_chunks": True},
    )
    da.store(labels, target, lock=False)


def _mask(source: Path) -> tuple[da.Array, float]:
    """The mask of the same global Otsu threshold: one histogram per chunk, summed."""
    image = da.from_zarr(str(source))
    per_chunk = image.map_blocks(_block_histogram, new_axis=2, chunks=(1, 1, 256), dtype=np.int64)
    histogram = per_chunk.sum(axis=(0, 1)).compute()
    level = threshold_otsu(hist=(histogram, np.arange(256)))
    return image <= level, level


def naive(source: Path) -> float:
    def run() -> None:
        mask, _ = _mask(source)
        labels = mask.map_overlap(_label_block, depth=1, boundary="none", dtype=np.uint32)
        _store(labels, WORK / "naive.zarr")

    seconds, _ = _timed(run)
    shutil.rmtree(WORK / "naive.zarr", ignore_errors=True)
    return seconds


def _first_pass(block: np.ndarray) -> tuple[int, list[np.ndarray]]:
    labels, count = cc3d.connected_components(
        np.ascontiguousarray(block).view(np.uint8),
        connectivity=8,
        return_N=True,
        out_dtype=np.uint32,
    )
    faces = [labels[0].copy(), labels[-1].copy(), labels[:, 0].copy(), labels[:, -1].copy()]
    return int(count), faces


def _second_pass(block: np.ndarray, offsets: np.ndarray, block_id: Any = None) -> np.ndarray:
    labels = _label_block(block)
    labels[labels != 0] += np.uint32(offsets[block_id])
    return labels


def two_pass_floor(source: Path) -> float:
    def run() -> None:
        mask, _ = _mask(source)
        blocks = mask.to_delayed()
        first = dask.compute(*(dask.delayed(_first_pass)(b) for b in blocks.ravel()))
        counts = np.array([count for count, _ in first], dtype=np.int64)
        offsets = (np.cumsum(counts) - counts).reshape(blocks.shape)
        labels = mask.map_blocks(_second_pass, offsets, dtype=np.uint32)
        _store(labels, WORK / "floor.zarr")

    seconds, _ = _timed(run)
    shutil.rmtree(WORK / "floor.zarr", ignore_errors=True)
    return seconds


def dask_image(source: Path) -> float:
    from dask_image.ndmeasure import label

    def run() -> None:
        mask, _ = _mask(source)
        labels, _ = label(mask, structure=STRUCTURE)
        _store(labels.astype(np.uint32), WORK / "dask_image.zarr")

    seconds, _ = _timed(run)
    shutil.rmtree(WORK / "dask_image.zarr", ignore_errors=True)
    return seconds


def whole(source: Path, level: float) -> dict[str, tuple[float, int]]:
    mask = zarr.open_array(source, mode="r")[...] <= level
    scipy_s, (_, scipy_n) = _timed(lambda: ndimage.label(mask, structure=STRUCTURE))
    cc3d_s, (_, cc3d_n) = _timed(
        lambda: cc3d.connected_components(mask.view(np.uint8), connectivity=8, return_N=True)
    )
    return {"scipy.ndimage.label": (scipy_s, scipy_n), "cc3d": (cc3d_s, cc3d_n)}


# ---------------------------------------------------------------- the report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 32768, 81920, 163840])
    parser.add_argument("--no-peers", action="store_true", help="segpipe only")
    parser.add_argument("--dask-image-max", type=int, default=8192)
    parser.add_argument("--whole-max", type=int, default=32768)
    parser.add_argument("--keep", action="store_true", help="keep the label outputs")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of segpipe, naive and the floor in turn per size; the best of each",
    )
    parser.add_argument("--repeat-max", type=int, default=32768, help="larger sizes run once")
    parser.add_argument(
        "--profile", action="store_true", help="print where the workers spent segpipe's run"
    )
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)

    rows = []
    for size in args.sizes:
        pixels = size * size
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            source = landsat_mosaic(size)
            client.run(_warm_up)  # every run starts with the workers' imports done
            runs = args.repeat if size <= args.repeat_max else 1
            # Rounds of segpipe, naive and the floor in turn, so that the
            # machine's drift (10-20% here) weighs on all three alike.
            ours_runs, naive_runs, floor_runs = [], [], []
            for _ in range(runs):
                ours_runs.append(segpipe(source, size, client))
                if not args.no_peers:
                    naive_runs.append(naive(source))
                    floor_runs.append(two_pass_floor(source))
            ours = min(ours_runs, key=_seconds)
            peers: dict[str, float] = {}
            counts: dict[str, int] = {}
            if not args.no_peers:
                peers["naive map_overlap, no stitching"] = min(naive_runs)
                peers[FLOOR] = min(floor_runs)
                if size <= args.dask_image_max:
                    peers["dask_image.ndmeasure.label"] = dask_image(source)
        if not args.no_peers and size <= args.whole_max:
            for name, (seconds, count) in whole(source, ours["threshold"]).items():
                peers[f"{name}, whole, in memory"] = seconds
                counts[name] = count
        if not args.keep:
            shutil.rmtree(ours["folder"], ignore_errors=True)
        rows.append((size, pixels, ours, peers, counts))
        _print_size(size, pixels, ours, peers, counts)
        if args.profile:
            print("workers' time by function (own samples):")
            for name, share in ours["hot"]:
                print(f"  {100 * share:5.1f}%  {name}")
    _print_growth(rows)


def _print_size(
    size: int, pixels: int, ours: dict[str, Any], peers: dict[str, float], counts: dict[str, int]
) -> None:
    mp = pixels / 1e6
    print(f"\n== {size} x {size} uint8 ({mp:,.0f} MP, {ours['chunks']} chunks of {CHUNK}^2) ==")
    print(f"{'run':<44} {'seconds':>9} {'MP/s':>8} {'ns/pixel':>9}  vs segpipe")
    print(f"{'segpipe workflow (threshold + label)':<44} {ours['seconds']:>9.1f} "
          f"{mp / ours['seconds']:>8.1f} {ours['seconds'] / pixels * 1e9:>9.2f}")  # fmt: skip
    for name, seconds in peers.items():
        print(f"{name:<44} {seconds:>9.1f} {mp / seconds:>8.1f} "
              f"{seconds / pixels * 1e9:>9.2f}  {ours['seconds'] / seconds:>6.2f}x")  # fmt: skip
    naive_s = peers.get("naive map_overlap, no stitching")
    if naive_s:
        labelling = sum(
            seconds
            for stage, seconds in ours["stages"].items()
            if stage in ("open", "fit") or stage.startswith("label:")
        )
        print(f"exactness costs {100 * (ours['seconds'] / naive_s - 1):.0f}% over the naive run "
              f"end to end; labelling alone (fit, both passes, write: {labelling:.1f} s) "
              f"{100 * (labelling / naive_s - 1):.0f}%")  # fmt: skip
        if FLOOR in peers:
            print(f"the two-pass floor costs {100 * (peers[FLOOR] / naive_s - 1):.0f}% over "
                  "the naive run: the least an exact two-pass labelling costs")  # fmt: skip
    stages = ", ".join(f"{name} {s:.1f}" for name, s in ours["stages"].items())
    print(f"stages (s): {stages}")
    print(f"objects: {ours['objects']:,}" + "".join(
        f"; {name} {n:,} ({'same' if n == ours['objects'] else 'DIFFERENT'})"
        for name, n in counts.items()))  # fmt: skip
    print(f"peak memory: worker {ours['worker_peak']:,.0f} MiB of {ours['worker_limit']:,.0f} "
          f"limit, {ours['spilled'] / 2**20:,.0f} MiB spilled to disk; client + scheduler "
          f"{ours['process_peak']:,.0f} MiB ({ours['process_start']:,.0f} at start)")  # fmt: skip


def _print_growth(rows: list[tuple[int, int, dict[str, Any], dict, dict]]) -> None:
    if len(rows) < 2:
        return
    first = rows[0][2]["seconds"] / rows[0][1]
    print("\n== growth ==")
    print(f"{'size':>7} {'MP':>8} {'chunks':>7} {'ns/pixel':>9} {'vs first':>9} "
          f"{'client+scheduler MiB':>21} {'KiB/chunk':>10} {'worker peak MiB':>16}")  # fmt: skip
    for size, pixels, ours, _, _ in rows:
        per = ours["seconds"] / pixels
        growth = ours["process_peak"] - ours["process_start"]
        print(f"{size:>7} {pixels / 1e6:>8,.0f} {ours['chunks']:>7} {per * 1e9:>9.2f} "
              f"{per / first:>8.2f}x {growth:>+21,.0f} {growth * 1024 / ours['chunks']:>10,.1f} "
              f"{ours['worker_peak']:>16,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
