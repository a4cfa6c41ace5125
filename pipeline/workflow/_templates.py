"""Workflows for many inputs: a source that is a file pattern, outputs named from templates.

A workflow run by a schedule names its source with a pattern and its outputs
with placeholders filled in for each input::

    source: {path: "inbox/*.tif", bands: [4, 3]}
    output: {labels: "out/{stem}_labels.zarr", table: "out/{stem}.parquet"}

Placeholders: ``{stem}`` (the input's name without its suffixes, ``ch2`` for
``ch2.nii.gz``), ``{name}`` (its whole name), ``{parent}`` (its folder's name),
``{date}`` (``YYYY-MM-DD``) and ``{time}`` (``HHMMSS``) of the trigger, and
``{run}`` (the run's id in the ledger).
"""

from __future__ import annotations

import glob
import string
from datetime import datetime
from pathlib import Path

from ._schema import Outputs, WorkflowError, WorkflowSpec

PLACEHOLDERS = ("stem", "name", "parent", "date", "time", "run")
_PER_INPUT = ("stem", "name", "run")
_PER_TRIGGER = ("date", "time", "run")
_MULTI_SUFFIXES = (".nii.gz", ".ome.tiff", ".ome.tif", ".ome.zarr", ".tar.gz")


def is_pattern(path: str) -> bool:
    """Whether ``path`` is a file pattern (``*``, ``?`` or ``[...]``) rather than one path.

    Examples
    --------
    >>> is_pattern("inbox/*.tif"), is_pattern("inbox/scene.tif")
    (True, False)
    """
    return glob.has_magic(path)


def placeholders(template: str) -> list[str]:
    """The placeholder names in ``template``, in order.

    Examples
    --------
    >>> placeholders("out/{stem}_{date}.zarr")
    ['stem', 'date']
    """
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:  # an unmatched brace
        raise WorkflowError(
            f"{template!r}: {error}; write a literal brace as {{{{ or }}}}"
        ) from None


def is_templated(spec: WorkflowSpec) -> bool:
    """Whether ``spec`` needs an input to run: a pattern source or placeholders in outputs."""
    pattern = isinstance(spec.source.path, str) and is_pattern(spec.source.path)
    return pattern or any(placeholders(path) for path in spec.output.paths().values())


def check_templates(spec: WorkflowSpec, origin: str, *, pattern: bool) -> None:
    """Check ``spec``'s output templates for a schedule.

    ``pattern``: the schedule feeds the workflow many inputs (a pattern), so every
    output must name its input (``{stem}``, ``{name}`` or ``{run}``); otherwise it
    runs one file at every tick, so every output must name its trigger (``{date}``,
    ``{time}`` or ``{run}``).

    Raises
    ------
    WorkflowError
        An unknown placeholder, or an output that two runs would both write.
    """
    for kind, template in spec.output.paths().items():
        found = placeholders(template)
        unknown = sorted(set(found) - set(PLACEHOLDERS))
        if unknown or any(not field for field in found):
            raise WorkflowError(
                f"{origin}: output.{kind} {template!r} uses "
                f"{', '.join('{' + f + '}' for f in unknown) or 'an empty {}'}; "
                f"the placeholders are {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        needed = _PER_INPUT if pattern else _PER_TRIGGER
        if not set(found) & set(needed):
            example = Path(template)
            fix = f"{example.with_name('{' + needed[0] + '}_' + example.name)}"
            why = (
                "every input of the pattern would write the same output"
                if pattern
                else "the workflow reads one file, so every tick would write the same output"
            )
            raise WorkflowError(
                f"{origin}: output.{kind} {template!r}: {why}; put "
                f"{' or '.join('{' + p + '}' for p in needed)} in its name, e.g. {fix!r}"
            )


def for_input(spec: WorkflowSpec, path: str | Path, *, when: datetime, run: str) -> WorkflowSpec:
    """``spec`` for one input ``path``: its source is ``path`` and its outputs are named."""
    source = Path(path)
    values = {
        "stem": stem(source),
        "name": source.name,
        "parent": source.resolve().parent.name,
        "date": when.strftime("%Y-%m-%d"),
        "time": when.strftime("%H%M%S"),
        "run": run,
    }
    outputs = {kind: template.format(**values) for kind, template in spec.output.paths().items()}
    return spec.model_copy(
        update={
            "source": spec.source.model_copy(update={"path": str(source)}),
            "output": Outputs(**outputs),
        }
    )


def stem(path: Path) -> str:
    """``path``'s name without its suffixes: ``ch2`` for ``ch2.nii.gz``, ``a.b`` for ``a.b.tif``.

    Examples
    --------
    >>> stem(Path("inbox/ch2.nii.gz")), stem(Path("scene.2024.tif"))
    ('ch2', 'scene.2024')
    """
    name = path.name
    for suffix in _MULTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
