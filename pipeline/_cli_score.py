"""The ``segpipe score`` command: a run's labels against a reference on the same grid."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click
import numpy as np

from ._cli_options import where_to_run
from .errors import InputValueError

__all__ = ["score"]


@click.command()
@click.argument("output")
@click.argument("reference")
@click.option(
    "--metric",
    type=click.Choice(["dice", "f1"]),
    required=True,
    help="dice: overlap of the foregrounds (non-zero); f1: objects matched one to one by IoU.",
)
@click.option(
    "--iou",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.5,
    show_default=True,
    help="f1: a pair of objects matches when its IoU is above this.",
)
@where_to_run("A running scheduler to compute on; default: threads in this process.")
def score(
    output: str,
    reference: str,
    metric: str,
    iou: float,
    scheduler: str | None,
    cluster_file: Path | None,
) -> None:
    """Score OUTPUT (labels a run wrote, or any image segpipe reads) against REFERENCE.

    Both are read chunk by chunk with open_image (zarr, OME-Zarr, GeoTIFF, TIFF,
    NIfTI) and must be on the same pixel grid; non-zero pixels are foreground.
    """
    from .cluster import connect, spec_from_options
    from .io import open_image
    from .measure import dice, object_f1

    ours, theirs = open_image(output), open_image(reference)
    ours_data, theirs_data = _one_band(ours, output), _one_band(theirs, reference)
    _check_grid(ours, ours_data.shape, output, theirs, theirs_data.shape, reference)
    spec = spec_from_options(scheduler, cluster_file)
    with connect(spec) if spec is not None else nullcontext():
        if metric == "dice":
            click.echo(f"dice       {dice(ours_data, theirs_data):.4f}")
            return
        if metric == "f1":
            found = object_f1(ours_data, theirs_data, iou=iou)
        else:
            raise click.BadParameter(f"{metric!r}; the metrics are dice, f1", param_hint="--metric")
    click.echo(
        f"objects    {found.predicted} in {output}, {found.reference} in {reference}, "
        f"{found.matched} matched at IoU > {found.iou:g}"
    )
    click.echo(f"precision  {found.precision:.4f}")
    click.echo(f"recall     {found.recall:.4f}")
    click.echo(f"f1         {found.f1:.4f}")


def _one_band(image: Any, path: str) -> Any:
    """The image's pixels over its spatial axes: a one-band image loses its band axis."""
    if not image.axes.startswith("c"):
        return image.data
    if image.data.shape[0] != 1:
        raise InputValueError(
            f"{path} has {image.data.shape[0]} bands; scores compare one band of labels or "
            "of a mask: write the band to score as an image of its own"
        )
    return image.data[0]


def _check_grid(
    ours: Any,
    shape: tuple[int, ...],
    output: str,
    theirs: Any,
    reference_shape: tuple[int, ...],
    reference: str,
) -> None:
    """Refuse a reference on another grid: another shape, or another place in the world."""
    if shape != reference_shape:
        raise InputValueError(
            f"{output} is {' x '.join(map(str, shape))} pixels but {reference} is "
            f"{' x '.join(map(str, reference_shape))}: the reference must be on the output's "
            "grid (the same image, level and crop)"
        )
    for name in ("transform", "affine"):
        mine, other = getattr(ours, name), getattr(theirs, name)
        if mine is None or other is None:
            continue
        if not np.allclose(np.asarray(mine, float), np.asarray(other, float)):
            raise InputValueError(
                f"{output} and {reference} are both {' x '.join(map(str, shape))} pixels but "
                f"lie elsewhere: {name} {_numbers(mine)} against {_numbers(other)}; score "
                "against a reference on the output's grid"
            )


def _numbers(value: Any) -> str:
    return "[" + ", ".join(f"{v:g}" for v in np.asarray(value, float).ravel()[:6]) + "]"
