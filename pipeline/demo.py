"""The demo: real samples labelled chunk by chunk on the embedded cluster.

Each sample is turned into a mask, stored as a chunked zarr array, labelled zarr
to zarr on the cluster, and checked against ``scipy.ndimage.label`` on the whole
array: the promise segpipe makes, shown on real data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import tifffile
import zarr
from scipy import ndimage
from skimage.filters import threshold_otsu

from .data import sample_path
from .errors import OutputExistsError
from .io import write_labels_zarr
from .stitch import label

__all__ = ["DemoResult", "check_outputs", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    objects: int
    seconds: float
    matches_whole_image: bool
    output: Path


def _water_mosaic() -> np.ndarray:
    """Water (SWIR band below Otsu) of the Landsat sample, mirrored into a 4 x 4 mosaic."""
    swir = tifffile.imread(sample_path("L7_ETMs.tif"))[..., 4]
    water = swir < threshold_otsu(swir)
    row = np.concatenate([water, water[:, ::-1]] * 2, axis=1)
    return np.concatenate([row, row[::-1]] * 2, axis=0)


def _nuclei() -> np.ndarray:
    stack = tifffile.imread(sample_path("nuclei.tif"))
    return stack > threshold_otsu(stack)


_CASES: tuple[tuple[str, Callable[[], np.ndarray], tuple[int, ...], int], ...] = (
    ("landsat_water", _water_mosaic, (256, 256), 2),
    ("nuclei_3d", _nuclei, (20, 96, 96), 3),
)


def check_outputs(output: Path, *, overwrite: bool) -> None:
    """Refuse to start when a labels output of an earlier run would be replaced."""
    existing = [output / f"{name}_labels.zarr" for name, *_ in _CASES]
    existing = [path for path in existing if path.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"demo output {existing[0]} already exists; pass --overwrite to replace it "
            "or -o to write elsewhere"
        )


def run_demo(output: Path, *, overwrite: bool = False) -> list[DemoResult]:
    """Run every demo case on the current dask scheduler; write labels under ``output``."""
    check_outputs(output, overwrite=overwrite)
    output.mkdir(parents=True, exist_ok=True)
    results = []
    for name, make_mask, chunks, connectivity in _CASES:
        mask = make_mask()
        store = output / f"{name}_mask.zarr"
        zarr.create_array(store, data=mask, chunks=chunks, overwrite=True)
        start = time.perf_counter()
        labels, num = label(da.from_zarr(str(store)), connectivity=connectivity)
        path = write_labels_zarr(
            labels,
            output / f"{name}_labels.zarr",
            attributes={"source": name, "connectivity": connectivity},
            overwrite=overwrite,
        )
        seconds = time.perf_counter() - start
        reference, count = ndimage.label(
            mask, ndimage.generate_binary_structure(mask.ndim, connectivity)
        )
        results.append(
            DemoResult(
                name=name,
                shape=mask.shape,
                chunks=chunks,
                objects=num,
                seconds=seconds,
                matches_whole_image=_same_partition(
                    np.asarray(zarr.open_array(path)[...]), reference
                )
                and num == count,
                output=path,
            )
        )
    return results


def _same_partition(labels: np.ndarray, reference: np.ndarray) -> bool:
    ours, theirs = labels.ravel(), reference.ravel()
    if not np.array_equal(ours == 0, theirs == 0):
        return False
    pairs = np.unique(np.stack([ours[ours != 0], theirs[ours != 0]]).astype(np.int64), axis=1)
    return np.unique(pairs[0]).size == np.unique(pairs[1]).size == pairs.shape[1]
