"""Running a workflow: open, fit, map, stitch, write, record."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..errors import OutputExistsError
from ..io import open_image, write_cog, write_labels_zarr, write_ome_zarr
from ..io._zarr import write_labels_zarr_resumable
from ..kernels._postprocess import classes_of_objects, drop_invalid
from ..stitch import label, stitch_instances
from ._fuse import check_chunks, fit_steps, map_steps, total_halo
from ._record import Timer, georeference, versions
from ._schema import WorkflowSpec


@dataclass(frozen=True)
class RunResult:
    """What a run made.

    Attributes
    ----------
    labels
        The stitched labels, read lazily from the written label zarr (or the
        lazy result when no label zarr was asked for).
    num
        Number of objects.
    outputs
        Output kind (``labels``, ``geotiff``, ``ome_zarr``, ``record``) to path.
    record
        The run record: inputs, parameters, versions, timings, object count.
    """

    labels: da.Array
    num: int
    outputs: dict[str, Path]
    record: dict[str, Any] = field(repr=False)


def run_spec(
    spec: WorkflowSpec,
    base: Path,
    *,
    overwrite: bool = False,
    log: Any = None,
    progress: bool = False,
    resume: bool = False,
    retries: int = 0,
) -> RunResult:
    """Run ``spec`` on the current dask scheduler; relative paths are taken from ``base``.

    The label zarr is written chunk by chunk, each chunk recorded once it is on
    disk; with ``resume`` a run of the same workflow on the same input that was
    killed writes only the chunks it had not recorded. ``retries``: further
    attempts per chunk on a distributed cluster.
    """
    say = log or (lambda message: None)
    outputs = {kind: _resolve(base, path) for kind, path in spec.output.paths().items()}
    _refuse_existing(outputs, overwrite)
    timer = Timer()
    started = datetime.now(UTC)

    with timer.stage("open"):
        image = open_image(
            str(_resolve(base, spec.source.path)),
            level=spec.source.level,
            bands=spec.source.bands,
            chunks=spec.chunks,
        )
    data = image.data if image.axes.startswith("c") else image.data[None]
    mapped, joiner, after = spec.stages()
    halo = total_halo(mapped, data.ndim - 1)
    check_chunks(data, mapped, halo, str(image.source))
    say(f"image {image.shape} {image.dtype} in chunks {image.data.chunksize}, halo {halo}")

    with timer.stage("fit"):
        states = fit_steps(data, mapped, image.valid)
    for step, state in zip(mapped, states, strict=True):
        if state is not None:
            say(f"fitted {step.describe()}: {state}")

    segments = map_steps(data, mapped, states, halo)
    kind = mapped[-1].output
    if kind == "instances":
        with timer.stage("stitch instances: first pass and seams"):
            labels, num, report = stitch_instances(
                segments, halo, iou=spec.seam_iou, keep_labels=spec.keep_labels
            )
        if image.valid is not None:
            labels, num = drop_invalid(labels, num, image.valid)
        seams: dict[str, Any] = {"method": "instances matched by IoU", **report.as_dict()}
        say(
            f"seams: {report.seam_pieces} pieces crossed seams, {report.matched} matched, "
            f"{report.fragments} left as fragments, {report.merged_objects} objects merged"
        )
    else:
        if image.valid is not None:
            segments = da.where(image.valid, segments, 0).astype(segments.dtype)
        with timer.stage("label: first pass and seams"):
            connectivity = joiner.connectivity if joiner is not None else 1
            labels, num = label(
                segments,
                connectivity=min(connectivity, segments.ndim),
                by_value=kind == "classes",
                keep_labels=spec.keep_labels,
            )
        seams = {"method": "connected components (exact)"}
    for step, state in zip(mapped, states, strict=True):
        labels, num = step.select(labels, num, state)
    for step in after:
        with timer.stage(step.name):
            labels, num = step.finish(labels, num)
    say(f"{num} objects")
    object_classes = None
    if kind == "classes":
        with timer.stage("object classes"):
            object_classes = classes_of_objects(labels, segments, num)

    record: dict[str, Any] = {
        "workflow": json.loads(spec.model_dump_json(serialize_as_any=True, by_alias=True)),
        "steps": [step.describe() for step in spec.steps],
        "fitted": {step.describe(): _jsonable(s) for step, s in zip(mapped, states, strict=True)},
        "source": {
            "path": str(image.source),
            "shape": list(image.shape),
            "dtype": str(image.dtype),
        },
        "chunks": list(image.data.chunksize),
        "halo": list(halo),
        "objects": num,
        "seams": seams,
        "versions": versions(),
        "started": started.isoformat(),
    }
    if object_classes is not None:
        found, counts = np.unique(object_classes, return_counts=True)
        record["objects_per_class"] = {int(c): int(n) for c, n in zip(found, counts, strict=True)}
    attributes = {**georeference(image), "segpipe": record}
    if object_classes is not None:
        attributes["object_classes"] = object_classes.tolist()
    writing = {
        "run_key": _run_key(spec, image.source),
        "resume": resume,
        "retries": retries,
        "progress": progress,
    }
    written = _write(labels, image, outputs, attributes, timer, say, writing, record)
    if "classes" in outputs:
        with timer.stage("write classes"):
            write_labels_zarr(
                segments,
                outputs["classes"],
                attributes={**georeference(image), "segpipe": record},
                overwrite=True,
                progress=progress,
            )
        written["classes"] = outputs["classes"]
        say(f"classes: {outputs['classes']}")
    record["timings_s"] = timer.stages
    record["finished"] = datetime.now(UTC).isoformat()
    record_path = _record_path(outputs)
    record_path.write_text(json.dumps(record, indent=2))
    written["record"] = record_path
    result_labels = da.from_zarr(str(written["labels"])) if "labels" in written else labels
    return RunResult(labels=result_labels, num=num, outputs=written, record=record)


def _write(
    labels: da.Array,
    image: Any,
    outputs: dict[str, Path],
    attributes: dict[str, Any],
    timer: Timer,
    say: Any,
    writing: dict[str, Any],
    record: dict[str, Any],
) -> dict[str, Path]:
    written: dict[str, Path] = {}
    scratch = None
    labels_path = outputs.get("labels")
    if labels_path is None and "geotiff" in outputs:
        scratch = Path(tempfile.mkdtemp(prefix=".segpipe-", dir=outputs["geotiff"].parent))
        labels_path = scratch / "labels.zarr"
    try:
        if labels_path is not None:
            with timer.stage("label: second pass and write zarr"):
                chunks = write_labels_zarr_resumable(
                    labels, labels_path, attributes=attributes, overwrite=True, **writing
                )
            record["chunks_written"] = {
                "total": chunks.total,
                "written": chunks.written,
                "skipped": chunks.skipped,
            }
            if writing["resume"]:
                say(f"resumed: {chunks.skipped} of {chunks.total} chunks were written already")
            if "labels" in outputs:
                written["labels"] = labels_path
            say(f"labels: {labels_path}")
        if "geotiff" in outputs:
            with timer.stage("write geotiff"):
                written["geotiff"] = write_cog(
                    labels_path,  # type: ignore[arg-type]
                    outputs["geotiff"],
                    crs=image.crs,
                    transform=image.transform,
                    overwrite=True,
                )
            say(f"geotiff: {written['geotiff']}")
        if "ome_zarr" in outputs:
            source = da.from_zarr(str(labels_path)) if labels_path is not None else labels
            with timer.stage("write ome-zarr"):
                written["ome_zarr"] = write_ome_zarr(
                    source, image, outputs["ome_zarr"], overwrite=True
                )
            say(f"ome_zarr: {written['ome_zarr']}")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return written


def _run_key(spec: WorkflowSpec, source: Any) -> str:
    """A digest of the workflow and its input: a run to resume must have the same."""
    digest = hashlib.sha256(spec.model_dump_json(serialize_as_any=True, by_alias=True).encode())
    path = Path(str(source))
    if path.exists():
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    else:
        digest.update(str(source).encode())
    return digest.hexdigest()[:16]


def _resolve(base: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or "://" in path else (base / candidate).resolve()


def _refuse_existing(outputs: dict[str, Path], overwrite: bool) -> None:
    if overwrite:
        return
    for kind, path in outputs.items():
        if path.exists():
            raise OutputExistsError(
                f"output {kind} {path} already exists; choose another path in the workflow's "
                "output or pass --overwrite (overwrite=True) to replace it"
            )
    record = _record_path(outputs)
    if record.exists():
        raise OutputExistsError(
            f"run record {record} already exists; pass --overwrite to replace it"
        )


def _record_path(outputs: dict[str, Path]) -> Path:
    first = next(iter(outputs.values()))
    return first.with_name(first.name.split(".")[0] + ".run.json")


def _jsonable(value: Any) -> Any:
    """A fitted state as JSON: numbers and arrays as numbers, anything else as its repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return repr(value)
