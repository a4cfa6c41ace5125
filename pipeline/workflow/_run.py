"""Running a workflow: open, fit, map, stitch, write, record."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cloudpickle
import dask.array as da
import numpy as np

from ..errors import OutputExistsError
from ..io import Image, open_image, write_cog, write_labels_zarr, write_ome_zarr
from ..io._chunks import Written
from ..io._remote import is_url
from ..io._zarr import open_label_array, write_labels_zarr_resumable
from ..kernels import Step
from ..kernels._postprocess import classes_of_objects, drop_invalid
from ..kernels._units import conversions
from ..measure._sizes import SizeCounts
from ..report._preview import preview_pixels
from ..stitch._instances import stitch_instances_recorded
from ..stitch._label import label_recorded
from ..stitch._recorded import Recording
from ._answers import performance_report, preview_scratch, write_answers, write_run_report
from ._digest import LabelDigest
from ._fuse import check_chunks, fit_steps, map_steps, total_halo
from ._record import Timer, georeference, grid_of, versions
from ._schema import WorkflowSpec


@dataclass(frozen=True)
class RunResult:
    """What a run made.

    Attributes
    ----------
    labels
        The stitched labels, read lazily from the written label zarr (or the
        OME-Zarr's label image or the GeoTIFF when no label zarr was asked for;
        ``None`` when only a table or polygons were). :meth:`labels_xarray`
        gives them as an xarray DataArray.
    num
        Number of objects.
    outputs
        Output kind (``labels``, ``geotiff``, ``ome_zarr``, ``record``) to path.
    record
        The run record: inputs, parameters, versions, timings, object count.
    """

    labels: da.Array | None
    num: int
    outputs: dict[str, Path]
    record: dict[str, Any] = field(repr=False)

    def labels_xarray(self) -> Any:
        """The labels as an ``xarray.DataArray``, read lazily from the written output.

        From a label zarr, the data variable as ``xarray.open_zarr`` gives it,
        with its attributes; from an OME-Zarr or GeoTIFF, the labels with the
        same coordinates. A georeferenced one has ``x`` / ``y`` at pixel centres
        and a CF grid mapping: rioxarray's ``.rio.crs`` and ``.rio.transform()``
        are the source's. ``None`` when only a table or polygons were written.
        """
        source = _labels_source(self.outputs)
        if source is None:
            return None
        from ..io._xarray import open_labels_xarray, to_xarray

        if "labels" in self.outputs:
            return open_labels_xarray(source)
        found = to_xarray(open_image(source))
        return found.squeeze("band", drop=True) if "band" in found.dims else found


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
    attempts per chunk on a distributed cluster. Next to the outputs go the run
    record (``<name>.run.json``), the HTML report (``<name>.report.html``) and,
    on a distributed cluster, Dask's performance report
    (``<name>.dask-performance.html``).
    """
    say = log or (lambda message: None)
    outputs = {kind: resolve_path(base, path) for kind, path in spec.output.paths().items()}
    files = _run_files(outputs)
    _refuse_existing({**outputs, **files}, overwrite)
    labels_path = outputs.get("labels") or _scratch(outputs)
    try:
        with performance_report(files["performance"]) as performance:
            written, record, sizes, num = _run(
                spec, base, outputs, labels_path, say, progress, resume, retries
            )
        files["record"].write_text(json.dumps(record, indent=2))
        written["record"] = files["record"]
        if performance is not None:
            written["performance"] = performance
        written["report"] = write_run_report(record, files["report"], written, sizes, performance)
        say(f"report: {written['report']}")
    finally:
        for scratch in (_scratch(outputs), preview_scratch(labels_path)):
            if scratch != outputs.get("labels") and scratch.exists():
                shutil.rmtree(scratch) if scratch.is_dir() else scratch.unlink()
    if "preview" not in outputs:
        written.pop("preview", None)
    return RunResult(labels=_written_labels(written), num=num, outputs=written, record=record)


def open_source(
    spec: WorkflowSpec, base: Path
) -> tuple[Image, WorkflowSpec, da.Array, tuple[int, ...]]:
    """Open the source (metadata only) and put the steps on its grid: the image, the
    workflow in pixels, the data (band axis first, one chunk size per axis) and the
    halo, every chunk checked against it.

    Raises
    ------
    PipelineError
        What the source or the steps' world-unit parameters get wrong: a path or
        URL that cannot be read, scenes that do not share a grid, a size in mm on
        an image without spacing, an annotation outside the image, chunks smaller
        than the halo.
    """
    image = spec.source.open(base, spec.chunks)
    spec = spec.on_grid(grid_of(image))
    data = image.data if image.axes.startswith("c") else image.data[None]
    # One chunk size per axis: the chunks are the zarr chunks of every pass's records.
    data = data.rechunk(tuple(sizes[0] for sizes in data.chunks))
    mapped = spec.stages()[0]
    halo = total_halo(mapped, data.ndim - 1)
    check_chunks(data, mapped, halo, str(image.source))
    return image, spec, data, halo


def _run(
    spec: WorkflowSpec,
    base: Path,
    outputs: dict[str, Path],
    labels_path: Path,
    say: Any,
    progress: bool,
    resume: bool,
    retries: int,
) -> tuple[dict[str, Path], dict[str, Any], SizeCounts, int]:
    """Open, fit, map, stitch and write: the outputs, the record, the object sizes."""
    timer = Timer()
    started = datetime.now(UTC)
    given = spec  # as written: its sizes may be in world units

    with timer.stage("open"):
        image, spec, data, halo = open_source(spec, base)
    run_key = _run_key(given, base)
    mapped, joiner, after = spec.stages()
    say(f"image {image.shape} {image.dtype} in chunks {image.data.chunksize}, halo {halo}")

    recording = Recording(
        folder=labels_path.with_name(f".{labels_path.name}.run-{run_key}.first"),
        resume=resume,
        progress=progress,
        retries=retries,
        keep_labels=not _pointwise(mapped, data.ndim - 1),
    )
    if not resume and recording.folder.exists():
        shutil.rmtree(recording.folder)
    recording.folder.mkdir(parents=True, exist_ok=True)

    with timer.stage("fit"):
        states = _fit(data, mapped, image.valid, recording.folder / "fits.pkl", say)
    for step, state in zip(mapped, states, strict=True):
        if state is not None:
            say(f"fitted {step.describe()}: {state}")

    segments = map_steps(data, mapped, states, halo, image.valid)
    kind = mapped[-1].output
    counted: tuple[da.Array, SizeCounts] | None = None  # sizes known before the write
    if kind == "instances":
        with timer.stage("stitch instances: first pass and seams"):
            labels, num, report, first = stitch_instances_recorded(
                segments, halo, recording, iou=spec.seam_iou
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
            recorded = label_recorded(
                segments,
                recording,
                connectivity=min(connectivity, segments.ndim),
                by_value=kind == "classes",
            )
        labels, num, first = recorded.labels, recorded.num, recorded.first
        if recorded.sizes is not None:
            counted = (labels, recorded.sizes)
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
        "workflow": json.loads(given.model_dump_json(serialize_as_any=True, by_alias=True)),
        "steps": [step.describe() for step in spec.steps],
        "units": conversions(given.steps, spec.steps),  # sizes given in units, in pixels
        "fitted": {step.describe(): _jsonable(s) for step, s in zip(mapped, states, strict=True)},
        "source": {
            "path": str(image.source),
            "shape": list(image.shape),
            "dtype": str(image.dtype),
            "nodata": image.nodata,
            **({"scenes": [scene.name for scene in image.mosaic.scenes]} if image.mosaic else {}),
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
    record["first_pass"] = {
        **_counts(first),
        "labels": "recorded" if recording.keep_labels else "computed again in the second pass",
    }
    # The first pass's sizes hold unless a step changed the labels since.
    known = counted[1] if counted is not None and counted[0] is labels else None
    # Objects are connected, except instances, which may not be.
    digest = LabelDigest(
        preview_pixels(labels.shape), connected=kind != "instances", sizes=known is None
    )
    writing = {
        "run_key": run_key,
        "resume": resume,
        "retries": retries,
        "progress": progress,
        "digest": digest,
    }
    written, chunks = _write(labels, labels_path, image, outputs, attributes, timer, writing)
    sampled, sizes = digest.assemble(chunks.digests, labels.dtype, known)
    record["chunks_written"] = _counts(chunks)
    if resume:
        say(
            f"resumed: {first.skipped} of {first.total} chunks had their first pass recorded, "
            f"{record['chunks_written']['skipped']} of {first.total} were written already"
        )
    shutil.rmtree(recording.folder)
    if "classes" in outputs:
        with timer.stage("write classes"):
            written["classes"] = write_labels_zarr(
                segments,
                outputs["classes"],
                attributes={**georeference(image), "segpipe": record},
                overwrite=True,
                progress=progress,
                name="classes",
            )
    answers = write_answers(labels_path, labels.shape, image, outputs, sampled, timer)
    written.update(answers)
    for output_kind, path in written.items():
        if output_kind in outputs:
            say(f"{output_kind}: {path}")
    record["outputs"] = {kind: str(path) for kind, path in written.items() if kind in outputs}
    record["timings_s"] = timer.stages
    record["finished"] = datetime.now(UTC).isoformat()
    return written, record, sizes, num


def _write(
    labels: da.Array,
    labels_path: Path,
    image: Any,
    outputs: dict[str, Path],
    attributes: dict[str, Any],
    timer: Timer,
    writing: dict[str, Any],
) -> tuple[dict[str, Path], Written]:
    """Write the label zarr (a hidden scratch one when no label zarr was asked for),
    then the raster outputs made from it."""
    written: dict[str, Path] = {}
    with timer.stage("label: second pass and write zarr"):
        chunks = write_labels_zarr_resumable(
            labels, labels_path, attributes=attributes, overwrite=True, **writing
        )
    if "labels" in outputs:
        written["labels"] = labels_path
    if "geotiff" in outputs:
        with timer.stage("write geotiff"):
            written["geotiff"] = write_cog(
                labels_path,
                outputs["geotiff"],
                crs=image.crs,
                transform=image.transform,
                overwrite=True,
            )
    if "ome_zarr" in outputs:
        with timer.stage("write ome-zarr"):
            written["ome_zarr"] = write_ome_zarr(
                da.from_zarr(open_label_array(labels_path)),
                image,
                outputs["ome_zarr"],
                overwrite=True,
            )
    return written, chunks


def _written_labels(written: dict[str, Path]) -> da.Array | None:
    """The labels, read lazily from the first written raster output that holds them."""
    source = _labels_source(written)
    if source is None:
        return None
    if "labels" in written:
        return da.from_zarr(open_label_array(source))
    image = open_image(source)
    return image.data[0] if image.axes.startswith("c") else image.data


def _labels_source(written: dict[str, Path]) -> str | None:
    """Where the labels are read back from: the label zarr, else the OME-Zarr's label
    image (``labels/labels`` in it), else the GeoTIFF (its one band)."""
    if "labels" in written:
        return str(written["labels"])
    if "ome_zarr" in written:
        return f"{written['ome_zarr']}/labels/labels"
    if "geotiff" in written:
        return str(written["geotiff"])
    return None


def _scratch(outputs: dict[str, Path]) -> Path:
    """Where a run that asked for no label zarr builds one for its other outputs."""
    first = next(iter(outputs.values()))
    return first.with_name(f".{first.name}.labels.zarr")


def _fit(
    data: da.Array, steps: list[Step], valid: da.Array | None, cache: Path, say: Any
) -> list[Any]:
    """The steps' fits, or those an interrupted run of the same workflow recorded."""
    if cache.exists():
        say("fits: as recorded by the interrupted run")
        with open(cache, "rb") as handle:
            states: list[Any] = cloudpickle.load(handle)
        return states
    states = fit_steps(data, steps, valid)
    scratch = cache.with_name(cache.name + ".tmp")
    scratch.write_bytes(cloudpickle.dumps(states))
    scratch.replace(cache)
    return states


def _pointwise(steps: list[Step], ndim: int) -> bool:
    """Whether the steps make a mask pixel by pixel: then a chunk of it is cheaper to
    compute again than its first-pass labels are to write and read back (4 bytes a
    pixel), and the second pass labels it again."""
    return all(
        step.pointwise and step.output != "instances" and not any(step.halo(ndim)) for step in steps
    )


def _counts(written: Written) -> dict[str, int]:
    return {"total": written.total, "written": written.written, "skipped": written.skipped}


def _run_key(spec: WorkflowSpec, base: Path) -> str:
    """A digest of the workflow and its input: a run to resume must have the same."""
    digest = hashlib.sha256(spec.model_dump_json(serialize_as_any=True, by_alias=True).encode())
    paths = spec.source.resolved(base)
    for source in paths if isinstance(paths, list) else [paths]:
        path = Path(source)
        if not is_url(source) and path.exists():
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        else:
            digest.update(source.encode())
    return digest.hexdigest()[:16]


def resolve_path(base: Path, path: str) -> Path:
    """``path`` as written in a workflow, taken from ``base`` when relative."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or "://" in path else (base / candidate).resolve()


def _refuse_existing(paths: dict[str, Path], overwrite: bool) -> None:
    if overwrite:
        return
    for kind, path in paths.items():
        if path.exists():
            raise OutputExistsError(
                f"output {kind} {path} already exists; choose another path in the workflow's "
                "output or pass --overwrite (overwrite=True) to replace it"
            )


def _run_files(outputs: dict[str, Path]) -> dict[str, Path]:
    """What a run writes about itself, named after its first output."""
    first = next(iter(outputs.values()))
    stem = first.name.split(".")[0]
    return {
        "record": first.with_name(f"{stem}.run.json"),
        "report": first.with_name(f"{stem}.report.html"),
        "performance": first.with_name(f"{stem}.dask-performance.html"),
    }


def _jsonable(value: Any) -> Any:
    """A fitted state as JSON: numbers and arrays as numbers, anything else as its repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return repr(value)
