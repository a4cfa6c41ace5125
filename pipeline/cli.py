"""The ``segpipe`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ._cli_options import where_to_run
from ._cli_schedule import runs, schedule, serve
from ._cli_score import score
from .errors import PipelineError

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="segpipe")
def cli(debug: bool) -> None:
    """segpipe: segment images too big for one machine, on a Dask cluster."""


@cli.command()
@click.argument("workflow", type=click.Path(dir_okay=False, path_type=Path))
@where_to_run("A running scheduler; default: embedded cluster.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist.")
@click.option(
    "--resume", is_flag=True, help="Continue a killed run: write only the chunks it had not."
)
@click.option(
    "--retries",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Further attempts for a failing chunk on a cluster.",
)
def run(
    workflow: Path,
    scheduler: str | None,
    cluster_file: Path | None,
    overwrite: bool,
    resume: bool,
    retries: int,
) -> None:
    """Run a WORKFLOW file (YAML): read, fit, map every chunk, stitch, write."""
    from .cluster import connect, spec_from_options
    from .workflow import Workflow

    flow = Workflow.from_yaml(workflow)  # validated before any cluster starts
    flow.check_source()
    with connect(spec_from_options(scheduler, cluster_file)) as client:
        click.echo(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        if client.dashboard_link:
            click.echo(f"dashboard: {client.dashboard_link}")
        result = flow.run(
            client,
            overwrite=overwrite,
            log=click.echo,
            progress=True,
            resume=resume,
            retries=retries,
        )
    click.echo(f"done: {result.num} objects")
    for kind, path in result.outputs.items():
        click.echo(f"  {kind}: {path}")


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--level", type=int, default=None, help="Pyramid level to describe.")
@click.option("--nodata", type=float, default=None, help="The value that means no data.")
@click.option("--crs", default=None, help="Reproject onto this CRS, e.g. EPSG:32633.")
@click.option("--resolution", default=None, help="Pixel size when reprojecting: 30 or 30,30.")
@click.option("--resampling", default="nearest", show_default=True, help="When reprojecting.")
@click.option("--assets", default=None, help="STAC assets that become the bands, e.g. B04,B08.")
def inspect(
    paths: tuple[str, ...],
    level: int | None,
    nodata: float | None,
    crs: str | None,
    resolution: str | None,
    resampling: str,
    assets: str | None,
) -> None:
    """Show what segpipe reads from PATHS: shape, dtype, axes, chunks, georeference,
    levels; for several scenes (or a STAC source), the mosaic: each scene and its place."""
    from .io import open_image
    from .io._raster import crs_name

    try:
        size = [float(v) for v in resolution.split(",")] if resolution else None
    except ValueError:
        raise click.BadParameter(
            f"{resolution!r} is not a number or x,y", param_hint="--resolution"
        ) from None
    image = open_image(
        list(paths) if len(paths) > 1 else paths[0],
        level=level,
        nodata=nodata,
        crs=crs,
        resolution=size,
        resampling=resampling,
        assets=assets.split(",") if assets else None,
    )
    rows = [
        ("source", image.source or paths[0]),
        ("shape", " x ".join(map(str, image.shape))),
        ("axes", image.axes),
        ("dtype", str(image.dtype)),
        ("chunks", " x ".join(map(str, image.data.chunksize))),
        ("level", f"{image.level} of {max(len(image.levels), 1)}"),
    ]
    rows += [(f"level {i}", " x ".join(map(str, shape))) for i, shape in enumerate(image.levels)]
    if image.crs is not None:
        rows.append(("crs", crs_name(image.crs)))
    if image.transform is not None:
        rows.append(("transform", ", ".join(f"{v:g}" for v in list(image.transform)[:6])))
    if image.spacing is not None:
        unit = f" {image.units}" if image.units else ""
        rows.append(("spacing", " x ".join(f"{s:g}" for s in image.spacing) + unit))
    if image.nodata is not None:
        rows.append(("nodata", f"{image.nodata:g}"))
    if image.mosaic is not None:
        rows += _mosaic_rows(image)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


def _mosaic_rows(image: Any) -> list[tuple[str, str]]:
    """Each scene of a mosaic (its box of pixels on the grid, its CRS, how it is read),
    and the footprint: the grid's bounds and the share of it the scenes cover."""
    from .io._raster import crs_name

    mosaic = image.mosaic
    rows = []
    for number, (scene, placed) in enumerate(zip(mosaic.scenes, mosaic.placements, strict=True)):
        for part, where in zip(scene.parts, placed, strict=True):
            how = f"reprojected ({mosaic.resampling})" if where.warped else "read as is"
            name = scene.name if part.path == scene.name else f"{scene.name} {part.path}"
            rows.append(
                (
                    f"scene {number + 1}",
                    f"{name}: rows {where.rows[0]}-{where.rows[1]}, cols {where.cols[0]}-"
                    f"{where.cols[1]}, {crs_name(part.crs)}, {how}",
                )
            )
    left, top = image.transform.c, image.transform.f
    right = left + image.shape[-1] * image.transform.a
    bottom = top + image.shape[-2] * image.transform.e
    rows.append(
        (
            "footprint",
            f"x {left:g} to {right:g}, y {bottom:g} to {top:g}; "
            f"{100 * mosaic.covered:.1f}% of the grid covered by the scenes' boxes",
        )
    )
    return rows


@cli.command()
@click.argument("output")
@click.option("-o", "--out", "png", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--image",
    default=None,
    help="Image to draw under the labels; default the run's source, when OUTPUT says it.",
)
@click.option("--bands", default=None, help="Bands of the image to show, e.g. 4,3,2 (from 1).")
@click.option("--max-size", type=click.IntRange(16), default=1024, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the PNG if it exists.")
def preview(
    output: str,
    png: Path,
    image: str | None,
    bands: str | None,
    max_size: int,
    overwrite: bool,
) -> None:
    """Write a PNG of the labels in OUTPUT (label zarr, OME-Zarr or GeoTIFF) over the image.

    Reads a downsampled level, never the whole image.
    """
    from .report import write_preview

    chosen = [int(b) for b in bands.split(",")] if bands else None
    under, source_bands = (image, chosen) if image else _run_source(output)
    written = write_preview(
        output,
        png,
        image=under,
        bands=chosen or source_bands,
        max_size=max_size,
        overwrite=overwrite,
    )
    click.echo(f"preview: {written}")


def _run_source(output: str) -> tuple[str | None, list[int] | None]:
    """The source image and bands of the run that wrote a label zarr, if it says."""
    from .io._zarr import open_label_array

    record: Any
    try:
        record = open_label_array(output).attrs.get("segpipe", {})
    except Exception:  # not a label zarr: an OME-Zarr draws its own image, a GeoTIFF none
        return None, None
    source = record.get("workflow", {}).get("source", {})
    path = record.get("source", {}).get("path")
    return (path if path and Path(path).exists() else None), source.get("bands")


@cli.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for the demo's outputs.",
)
@where_to_run("A running scheduler; default: embedded cluster.")
@click.option("--overwrite", is_flag=True, help="Replace outputs of an earlier demo run.")
def demo(output: Path, scheduler: str | None, cluster_file: Path | None, overwrite: bool) -> None:
    """Segment bundled real samples end to end and check them against whole-image processing."""
    from .cluster import connect, spec_from_options
    from .demo import check_outputs, run_demo

    check_outputs(output, overwrite=overwrite)
    with connect(spec_from_options(scheduler, cluster_file)) as client:
        click.echo(f"cluster: {len(client.scheduler_info()['workers'])} worker processes")
        if client.dashboard_link:
            click.echo(f"dashboard: {client.dashboard_link}")
        results = run_demo(output, overwrite=overwrite)

    for r in results:
        click.echo(
            f"{r.name}: {' x '.join(map(str, r.shape))} pixels in chunks of "
            f"{' x '.join(map(str, r.chunks))}: {r.objects} objects in {r.seconds:.2f} s; "
            f"identical to whole-image scipy/scikit-image: "
            f"{'yes' if r.matches_whole_image else 'NO'}"
        )
        for kind, path in r.outputs.items():
            click.echo(f"  {kind}: {path}")
    if not all(r.matches_whole_image for r in results):
        raise click.ClickException("a demo result differs from whole-image processing")


@cli.command()
@click.argument("workflow", type=click.Path(dir_okay=False, path_type=Path))
@where_to_run("The running scheduler to run on.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist.")
@click.option("--resume", is_flag=True, help="Continue a killed run of this workflow.")
@click.option("--retries", type=click.IntRange(0), default=2, show_default=True)
def submit(
    workflow: Path,
    scheduler: str | None,
    cluster_file: Path | None,
    overwrite: bool,
    resume: bool,
    retries: int,
) -> None:
    """Hand a WORKFLOW to a running scheduler and return; print its run id."""
    from .cluster import connect, spec_from_options
    from .submit import submit as start
    from .workflow import Workflow

    spec = spec_from_options(scheduler, cluster_file)
    if spec is None:
        raise click.UsageError("submit needs a running cluster: give --scheduler or --cluster")
    flow = Workflow.from_yaml(workflow)  # validated before anything is sent
    flow.check_one_input()
    with connect(spec) as client:
        run_id = start(flow, client, overwrite=overwrite, resume=resume, retries=retries)
        click.echo(f"run {run_id} submitted to {client.scheduler.address}")
        if client.dashboard_link:
            click.echo(f"dashboard: {client.dashboard_link}")
        where = f"--scheduler {client.scheduler.address}"
    click.echo(f"follow it with: segpipe status {run_id} {where} --follow")


@cli.command()
@click.argument("run_id")
@where_to_run("The scheduler the run was submitted to.")
@click.option("--follow", is_flag=True, help="Print each new line until the run ends.")
def status(run_id: str, scheduler: str | None, cluster_file: Path | None, follow: bool) -> None:
    """Show the state of run RUN_ID (from segpipe submit); exit 1 if it failed."""
    import time

    from .cluster import connect, spec_from_options
    from .submit import FINISHED
    from .submit import status as state_of

    spec = spec_from_options(scheduler, cluster_file)
    if spec is None:
        raise click.UsageError("status needs the run's cluster: give --scheduler or --cluster")
    with connect(spec) as client:
        shown = 0
        while True:
            found = state_of(run_id, client)
            for line in found.get("log", [])[shown:]:
                click.echo(f"  {line}")
            shown = len(found.get("log", []))
            if not follow or found["state"] in FINISHED:
                break
            time.sleep(0.5)
    click.echo(f"run {run_id}: {found['state']}")
    for kind, path in found.get("outputs", {}).items():
        click.echo(f"  {kind}: {path}")
    if found["state"] == "failed":
        raise click.ClickException(found.get("error", "the run failed"))


cli.add_command(schedule)
cli.add_command(serve)
cli.add_command(runs)
cli.add_command(score)


def main() -> None:
    """Entry point: one clear line per error, the traceback only with --debug."""
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (PipelineError, FileNotFoundError) as error:
        if debug:
            raise
        click.echo(f"segpipe: error: {error}", err=True)
        sys.exit(1)
