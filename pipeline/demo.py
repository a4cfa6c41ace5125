"""The demo: bundled real samples segmented end to end on the current cluster.

Each sample runs as a workflow (read lazily, smooth, one global Otsu threshold,
label, stitch, write), in small chunks so that many seams are crossed, and is
checked against the same processing done on the whole image at once with
scipy and scikit-image: the promise segpipe makes, shown on real data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from .data import sample_path
from .errors import OutputExistsError
from .io import open_image
from .io._zarr import open_label_array
from .workflow import Workflow

__all__ = ["DemoResult", "check_outputs", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    objects: int
    seconds: float
    matches_whole_image: bool
    outputs: dict[str, Path]


@dataclass(frozen=True)
class _Case:
    name: str
    source: dict[str, Any]
    chunks: list[int]
    sigma: float
    foreground: str
    connectivity: int
    outputs: tuple[str, ...]


_CASES = (
    _Case(
        "landsat_water",
        {"path": "L7_ETMs.tif", "bands": [5]},  # SWIR: water is dark
        [64, 64],
        1.5,
        "below",
        2,
        ("labels", "geotiff"),
    ),
    _Case(
        "nuclei_3d", {"path": "nuclei.tif"}, [20, 96, 96], 1.0, "above", 3, ("labels", "ome_zarr")
    ),
)

_SUFFIX = {"labels": "_labels.zarr", "geotiff": "_labels.tif", "ome_zarr": ".ome.zarr"}


def _outputs(output: Path, case: _Case) -> dict[str, str]:
    return {kind: str(output / f"{case.name}{_SUFFIX[kind]}") for kind in case.outputs}


def check_outputs(output: Path, *, overwrite: bool) -> None:
    """Refuse to start when an output of an earlier run would be replaced."""
    for case in _CASES:
        for path in _outputs(output, case).values():
            if Path(path).exists() and not overwrite:
                raise OutputExistsError(
                    f"demo output {path} already exists; pass --overwrite to replace it "
                    "or -o to write elsewhere"
                )


def run_demo(output: Path, *, overwrite: bool = False) -> list[DemoResult]:
    """Run every demo workflow on the current dask scheduler; write under ``output``."""
    check_outputs(output, overwrite=overwrite)
    output.mkdir(parents=True, exist_ok=True)
    results = []
    for case in _CASES:
        source = {**case.source, "path": str(sample_path(case.source["path"]))}
        flow = Workflow(
            source=source,
            steps=[
                {"gaussian": {"sigma": case.sigma}},
                {"threshold": {"method": "otsu", "foreground": case.foreground}},
                {"label": {"connectivity": case.connectivity}},
            ],
            output=_outputs(output, case),
            chunks=case.chunks,
        )
        start = time.perf_counter()
        run = flow.run(client=_current_client(), overwrite=overwrite)
        seconds = time.perf_counter() - start
        reference, count = _whole_image(source, case)
        labels = np.asarray(open_label_array(run.outputs["labels"])[...])
        results.append(
            DemoResult(
                name=case.name,
                shape=labels.shape,
                chunks=tuple(case.chunks),
                objects=run.num,
                seconds=seconds,
                matches_whole_image=run.num == count and _same_partition(labels, reference),
                outputs=run.outputs,
            )
        )
    return results


def _whole_image(source: dict[str, Any], case: _Case) -> tuple[np.ndarray, int]:
    """The same processing on the whole image at once, with scipy and scikit-image."""
    image = open_image(source["path"], bands=source.get("bands"))
    values = np.asarray(image.data.compute()).astype(np.float32)
    values = values[0] if image.axes.startswith("c") else values
    smooth = ndimage.gaussian_filter(values, case.sigma, mode="reflect")
    t = threshold_otsu(smooth)
    mask = smooth > t if case.foreground == "above" else smooth <= t
    structure = ndimage.generate_binary_structure(mask.ndim, case.connectivity)
    labels, count = ndimage.label(mask, structure)
    return labels, int(count)


def _current_client() -> Any:
    from distributed import default_client

    return default_client()


def _same_partition(labels: np.ndarray, reference: np.ndarray) -> bool:
    ours, theirs = labels.ravel(), reference.ravel()
    if not np.array_equal(ours == 0, theirs == 0):
        return False
    pairs = np.unique(np.stack([ours[ours != 0], theirs[ours != 0]]).astype(np.int64), axis=1)
    return np.unique(pairs[0]).size == np.unique(pairs[1]).size == pairs.shape[1]
