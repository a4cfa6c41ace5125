"""The workflow file: its schema, validated with pydantic before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .._yaml import read_yaml
from ..errors import InputValueError
from ..kernels import Grid, Label, Step, step_class
from ._source import Source


class WorkflowError(InputValueError):
    """A workflow file or object is not valid; the message names the file and the field."""


OUTPUT_FORMATS = {
    "table": (".parquet", ".csv"),
    "polygons": (".gpkg", ".geojson", ".json", ".parquet"),
    "preview": (".png",),
}


class Outputs(BaseModel):
    """What to write: a label zarr, a Cloud-Optimised GeoTIFF, an OME-Zarr, an object
    table, object polygons (at least one of these), the class map zarr of a class
    step, and a preview PNG."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    labels: str | None = None
    geotiff: str | None = None
    ome_zarr: str | None = None
    table: str | None = None
    polygons: str | None = None
    classes: str | None = None
    preview: str | None = None

    @field_validator("table", "polygons", "preview")
    @classmethod
    def _known_format(cls, value: str | None, info: ValidationInfo) -> str | None:
        formats = OUTPUT_FORMATS[str(info.field_name)]
        if value is not None and not value.lower().endswith(formats):
            raise ValueError(f"{value}: name a file ending in {', '.join(formats)}")
        return value

    @model_validator(mode="after")
    def _at_least_one(self) -> Outputs:
        if not (self.labels or self.geotiff or self.ome_zarr or self.table or self.polygons):
            raise ValueError("name at least one of labels, geotiff, ome_zarr, table, polygons")
        return self

    def paths(self) -> dict[str, str]:
        return {kind: path for kind, path in self.model_dump().items() if path}


class WorkflowSpec(BaseModel):
    """A workflow: source -> steps (fused per chunk, fitted globally) -> outputs."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    source: Source
    chunks: int | list[int] | None = None
    seam_iou: float = Field(default=0.5, ge=0.5, lt=1)
    steps: list[Step] = Field(min_length=1)
    output: Outputs

    @field_validator("source", mode="before")
    @classmethod
    def _source_from_path(cls, value: Any) -> Any:
        if isinstance(value, str | Path):
            return {"path": str(value)}
        if isinstance(value, list | tuple):  # the scenes of a mosaic
            return {"path": [str(item) if isinstance(item, Path) else item for item in value]}
        return value

    @field_validator("output", mode="before")
    @classmethod
    def _output_from_path(cls, value: Any) -> Any:
        return {"labels": str(value)} if isinstance(value, str | Path) else value

    @field_validator("chunks")
    @classmethod
    def _positive_chunks(cls, value: Any) -> Any:
        sizes = [value] if isinstance(value, int) else value or []
        if any(size < 1 for size in sizes):
            raise ValueError(f"chunk sizes must be positive; got {value}")
        return value

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_from_names(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        return [_make_step(item, index, info.context) for index, item in enumerate(value)]

    @model_validator(mode="after")
    def _steps_in_order(self) -> WorkflowSpec:
        made = "image"
        for number, step in enumerate(self.steps, start=1):
            if made not in step.accepts:
                raise ValueError(
                    f"step {number} ({step.name}) takes {' or '.join(step.accepts)} but the "
                    f"steps before it make {_KIND_NAMES[made]}; {_ORDER}"
                )
            made = "labels" if step.output == "instances" else step.output
        if made != "labels":
            raise ValueError(f"the steps make {_KIND_NAMES[made]}, not labels; {_ORDER}")
        if self.output.classes and self.stages()[0][-1].output != "classes":
            raise ValueError(
                "output classes is the class map of a class step (e.g. - kmeans: {k: 5} "
                "before - label: {}); these steps make no class map: remove output classes"
            )
        return self

    def on_grid(self, grid: Grid) -> WorkflowSpec:
        """This workflow with every step's parameters in pixels of ``grid`` (see
        :meth:`~pipeline.kernels.Step.on_grid`)."""
        steps = [step.on_grid(grid) for step in self.steps]
        if all(new is old for new, old in zip(steps, self.steps, strict=True)):
            return self
        return self.model_copy(update={"steps": steps})

    def stages(self) -> tuple[list[Step], Label | None, list[Step]]:
        """The per-chunk steps, the label step (None when the per-chunk steps end in
        instances, which are stitched by matching), and the label post-processing steps."""
        at = next(
            (i for i, step in enumerate(self.steps) if step.output == "labels"), len(self.steps)
        )
        joiner = self.steps[at] if at < len(self.steps) else None
        if isinstance(joiner, Label):
            return self.steps[:at], joiner, self.steps[at + 1 :]
        return self.steps[:at], None, self.steps[at:]


_KIND_NAMES = {
    "image": "an image",
    "mask": "a mask",
    "classes": "a class map",
    "labels": "labels",
}
_ORDER = (
    "the steps end with one label step (e.g. - label: {}) after a mask or class step, "
    "or with an instance step (e.g. - watershed: {} after a mask), followed only by "
    "label post-processing steps (e.g. - remove_small: {min_size: 50})"
)


def _make_step(item: Any, index: int, context: Any) -> Any:
    if isinstance(item, Step):
        return item
    if isinstance(item, str):
        item = {item: {}}
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(
            f"step {index + 1} must be one step name with its parameters, e.g. "
            f"'- gaussian: {{sigma: 1.0}}'; got {item!r}"
        )
    ((name, params),) = item.items()
    cls = step_class(str(name))
    try:
        return cls.model_validate(params or {}, context=context)
    except ValidationError as error:
        raise ValueError(f"{name}: {_describe(error)}") from None


def _describe(error: ValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        parts.append(f"{where}: {problem['msg']} (got {problem.get('input')!r})")
    return "; ".join(parts)


def validate_spec(data: Any, origin: str, base: Path | None = None) -> WorkflowSpec:
    """``data`` (as read from YAML, or given in Python) as a checked WorkflowSpec.

    Relative file paths in step parameters are taken from ``base`` (the
    workflow file's folder), else from the current directory.
    """
    try:
        return WorkflowSpec.model_validate(data, context={"base": base or Path.cwd()})
    except ValidationError as error:
        raise WorkflowError(f"{origin}: {_describe(error)}") from None
    except InputValueError as error:
        raise WorkflowError(f"{origin}: {error}") from None


def read_spec(path: Path) -> WorkflowSpec:
    """Read and validate a workflow YAML file."""
    data = read_yaml(path, "workflow file", WorkflowError)
    if not isinstance(data, dict):
        raise WorkflowError(
            f"{path}: a workflow is a mapping with source, steps and output; "
            f"got {type(data).__name__}"
        )
    return validate_spec(data, str(path), path.resolve().parent)
