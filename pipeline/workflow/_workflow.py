"""The Workflow object: a validated workflow, from YAML or built in Python, and its run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..kernels import Step
from ._run import RunResult, open_source, resolve_path, run_spec
from ._schema import WorkflowError, WorkflowSpec, read_spec, validate_spec
from ._templates import for_input, is_templated


class Workflow:
    """A segmentation workflow: source, per-chunk steps, outputs.

    Parameters
    ----------
    source
        A path or URL, a list of scenes (a mosaic), or ``{"path": ..., "level":
        ..., "bands": [...], "nodata": ..., "crs": ..., "resolution": ...,
        "resampling": ..., "assets": [...]}`` (see :class:`~pipeline.workflow._source.Source`).
    steps
        Step objects or ``{"name": {params}}`` mappings, as in YAML: image steps,
        one mask or class step (e.g. ``threshold``) and ``label``, or a mask and an
        instance step (e.g. ``watershed``); then label post-processing steps.
    output
        A label zarr path, or ``{"labels": ..., "geotiff": ..., "ome_zarr": ...}``.
    chunks
        Chunk size: one int, or one per spatial axis; default the source's own.
    seam_iou
        Instance steps (watershed, superpixels, models): pieces of an object
        seen by two chunks are joined when their IoU in the shared halo is
        above this (0.5 to 1).
    base
        Folder that relative paths are taken from (a YAML file's own folder).

    Examples
    --------
    >>> from pipeline.data import sample_path
    >>> flow = Workflow(
    ...     source={"path": str(sample_path("L7_ETMs.tif")), "bands": [5]},
    ...     steps=[{"gaussian": {"sigma": 1.0}}, {"threshold": {"method": "otsu"}}, "label"],
    ...     output="scene_labels.zarr",
    ...     chunks=128,
    ... )
    >>> [step.name for step in flow.spec.steps]
    ['gaussian', 'threshold', 'label']
    """

    def __init__(
        self,
        source: Any,
        steps: list[Step | dict[str, Any] | str],
        output: Any,
        chunks: int | list[int] | None = None,
        *,
        seam_iou: float = 0.5,
        base: str | Path | None = None,
        origin: str = "workflow",
    ) -> None:
        data = {
            "source": source,
            "steps": steps,
            "output": output,
            "chunks": chunks,
            "seam_iou": seam_iou,
        }
        self.base = Path(base) if base is not None else Path.cwd()
        self.spec: WorkflowSpec = validate_spec(data, origin, self.base)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Workflow:
        """Read a workflow file; relative paths in it are taken from its folder."""
        path = Path(path)
        spec = read_spec(path)
        flow = cls.__new__(cls)
        flow.spec = spec
        flow.base = path.resolve().parent
        return flow

    @property
    def templated(self) -> bool:
        """Whether the workflow runs per input: a pattern source or output templates."""
        return is_templated(self.spec)

    def source_path(self) -> str:
        """The source path or pattern, taken from the workflow's folder when relative.

        Raises
        ------
        WorkflowError
            The source is a list of scenes (a mosaic), which has no one path.
        """
        path = self.spec.source.resolved(self.base)
        if isinstance(path, list):
            raise WorkflowError(
                f"source.path is a list of {len(path)} scenes; a workflow that is scheduled "
                "or given inputs one by one reads one path: name the scenes in a STAC "
                "ItemCollection (.json) or a GDAL VRT and give its path"
            )
        return path

    def output_paths(self) -> dict[str, Path]:
        """Output kind to path, taken from the workflow's folder when relative."""
        return {kind: resolve_path(self.base, p) for kind, p in self.spec.output.paths().items()}

    def check_one_input(self) -> None:
        """Refuse a workflow for many inputs (a pattern source, output templates)
        where one run is asked for.

        Raises
        ------
        WorkflowError
            The message says how to run it: from a schedule, or for one file.
        """
        if self.templated:
            raise WorkflowError(
                f"source.path {self.spec.source.path!r} and output names "
                f"{list(self.spec.output.paths().values())} are templates for many inputs; "
                "run it from a schedule (segpipe schedule add WORKFLOW --watch PATTERN), "
                "or for one file with Workflow.for_input(path)"
            )

    def check_source(self) -> None:
        """Open the source (metadata only) and put the steps on its grid, so that what
        they get wrong fails now, before any cluster starts: a path or URL that
        cannot be read, scenes that do not share a grid, a size in mm on an image
        without spacing, an annotation outside the image, chunks smaller than the
        halo.

        Raises
        ------
        PipelineError
            The message names the file or URL, the field and the fix.
        """
        self.check_one_input()
        open_source(self.spec, self.base)

    def for_input(
        self, path: str | Path, *, when: datetime | None = None, run: str = "0"
    ) -> Workflow:
        """This workflow for one input file: its source is ``path`` and the output
        templates (``out/{stem}_labels.zarr``) are filled in; ``when`` gives
        ``{date}`` and ``{time}`` (default now, UTC), ``run`` gives ``{run}``.

        Examples
        --------
        >>> flow = Workflow("inbox/*.tif", ["threshold", "label"], "out/{stem}_labels.zarr")
        >>> flow.for_input("inbox/scene_042.tif").spec.output.labels
        'out/scene_042_labels.zarr'
        """
        one = Workflow.__new__(Workflow)
        one.base = self.base
        one.spec = for_input(self.spec, path, when=when or datetime.now(UTC), run=run)
        return one

    def run(
        self,
        client: Any = None,
        *,
        overwrite: bool = False,
        log: Any = None,
        progress: bool = False,
        resume: bool = False,
        retries: int = 0,
    ) -> RunResult:
        """Run the workflow and write its outputs.

        Parameters
        ----------
        client
            A ``distributed.Client`` to run on; ``None`` starts the embedded
            LocalCluster for the run and closes it afterwards.
        overwrite
            Replace outputs that exist; without it an existing output is an error
            raised before any work.
        log
            Called with one line of progress per stage (e.g. ``print``).
        progress
            Show a progress bar while the labels are written.
        resume
            Continue a run of this same workflow on the same input that was
            killed: only the label chunks it had not recorded as written are
            computed and written; the output is byte-identical to an
            undisturbed run's.
        retries
            Further attempts for a chunk whose task fails on a distributed
            cluster (a lost worker does not count).
        """
        self.check_one_input()
        if client is None:
            self.check_source()  # before the embedded cluster starts
        options = {
            "overwrite": overwrite,
            "log": log,
            "progress": progress,
            "resume": resume,
            "retries": retries,
        }
        if client is not None:
            with client.as_current():
                return run_spec(self.spec, self.base, **options)
        from ..cluster import connect

        with connect():
            return run_spec(self.spec, self.base, **options)
