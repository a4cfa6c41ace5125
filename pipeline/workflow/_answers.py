"""What a run makes of its labels: the object table, polygons, the preview and the report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..io import Image
from ..io._chunks import client_or_none
from ..io._polygons import write_polygons
from ..io._staging import move_into_place
from ..io._tables import write_table
from ..io._zarr import open_label_array
from ..measure import regionprops
from ..measure._sizes import SizeCounts
from ..report import write_report
from ..report._preview import write_sampled_preview
from ._record import Timer


def write_answers(
    labels_path: Path,
    shape: tuple[int, ...],
    image: Image,
    outputs: dict[str, Path],
    sampled: np.ndarray,
    timer: Timer,
) -> dict[str, Path]:
    """Write the table, polygons and preview asked for; return them.

    The table is measured once and joined onto the polygons. The preview is
    drawn from the label pixels the write pass ``sampled`` (see
    :mod:`pipeline.workflow._digest`), so no label chunk is read for it.
    """
    labels = da.from_zarr(open_label_array(labels_path))
    written: dict[str, Path] = {}
    table = None
    if "table" in outputs or "polygons" in outputs:
        with timer.stage("object table"):
            table = regionprops(
                labels,
                image.data,
                spacing=image.spacing,
                transform=image.transform,
                crs=image.crs,
                affine=image.affine,
                units=image.units,
            )
        if "table" in outputs:
            written["table"] = write_table(table, outputs["table"], overwrite=True)
    if "polygons" in outputs:
        with timer.stage("polygons"):
            written["polygons"] = write_polygons(
                labels,
                outputs["polygons"],
                transform=image.transform,
                crs=image.crs,
                table=table,
                overwrite=True,
            )
    with timer.stage("preview"):
        preview = outputs.get("preview") or preview_scratch(labels_path)
        write_sampled_preview(
            sampled, shape, preview, image=image, name=str(labels_path), overwrite=True
        )
    written["preview"] = preview
    return written


def write_run_report(
    record: dict[str, Any],
    path: Path,
    written: dict[str, Path],
    sizes: SizeCounts,
    performance: Path | None,
) -> Path:
    """The run's HTML report next to its outputs, with links relative to it."""
    shown = {
        **record,
        "outputs": {kind: str(p) for kind, p in written.items()},
        "object_sizes": sizes,
    }
    preview = written.get("preview")
    return write_report(shown, path, preview=preview, performance=performance, overwrite=True)


@contextmanager
def performance_report(path: Path) -> Iterator[Path | None]:
    """Dask's performance report of what runs inside, on a distributed cluster.

    Yields where it will be (``None`` on a local scheduler, which has none); it
    is written under a hidden name and moved to ``path`` only if the block
    completes.
    """
    if client_or_none() is None:
        yield None
        return
    from distributed import performance_report as report

    hidden = _hidden(path, "partial.html")
    try:
        with report(filename=str(hidden)):
            yield path
    except BaseException:
        hidden.unlink(missing_ok=True)
        raise
    move_into_place(hidden, path, overwrite=True)


def preview_scratch(labels_path: Path) -> Path:
    """Where the preview goes for the report when no preview output was asked for."""
    return _hidden(labels_path, "preview.png")


def _hidden(next_to: Path, suffix: str) -> Path:
    return next_to.with_name(f".{next_to.name}.{suffix}")
