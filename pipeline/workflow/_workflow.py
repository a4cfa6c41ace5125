"""The Workflow object: a validated workflow, from YAML or built in Python, and its run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..kernels import Step
from ._run import RunResult, run_spec
from ._schema import WorkflowSpec, read_spec, validate_spec


class Workflow:
    """A segmentation workflow: source, per-chunk steps, outputs.

    Parameters
    ----------
    source
        A path, or ``{"path": ..., "level": ..., "bands": [...]}``.
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
