"""The ``segpipe`` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import PipelineError

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="segpipe")
def cli(debug: bool) -> None:
    """segpipe: segment images too big for one machine, on a Dask cluster."""


@cli.command()
@click.argument("workflow", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scheduler", default=None, help="A running scheduler; default: embedded cluster.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist.")
def run(workflow: Path, scheduler: str | None, overwrite: bool) -> None:
    """Run a WORKFLOW file (YAML): read, fit, map every chunk, stitch, write."""
    from .cluster import connect
    from .workflow import Workflow

    flow = Workflow.from_yaml(workflow)  # validated before any cluster starts
    with connect(scheduler) as client:
        click.echo(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        if client.dashboard_link:
            click.echo(f"dashboard: {client.dashboard_link}")
        result = flow.run(client, overwrite=overwrite, log=click.echo, progress=True)
    click.echo(f"done: {result.num} objects")
    for kind, path in result.outputs.items():
        click.echo(f"  {kind}: {path}")


@cli.command()
@click.argument("path")
@click.option("--level", type=int, default=None, help="Pyramid level to describe.")
def inspect(path: str, level: int | None) -> None:
    """Show what segpipe reads from PATH: shape, dtype, axes, chunks, georeference, levels."""
    from .io import open_image

    image = open_image(path, level=level)
    rows = [
        ("source", image.source or path),
        ("shape", " x ".join(map(str, image.shape))),
        ("axes", image.axes),
        ("dtype", str(image.dtype)),
        ("chunks", " x ".join(map(str, image.data.chunksize))),
        ("level", f"{image.level} of {max(len(image.levels), 1)}"),
    ]
    rows += [(f"level {i}", " x ".join(map(str, shape))) for i, shape in enumerate(image.levels)]
    if image.crs is not None:
        rows.append(("crs", _short_crs(image.crs)))
    if image.transform is not None:
        rows.append(("transform", ", ".join(f"{v:g}" for v in list(image.transform)[:6])))
    if image.spacing is not None:
        unit = f" {image.units}" if image.units else ""
        rows.append(("spacing", " x ".join(f"{s:g}" for s in image.spacing) + unit))
    if image.nodata is not None:
        rows.append(("nodata", f"{image.nodata:g}"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


def _short_crs(wkt: str) -> str:
    from rasterio.crs import CRS

    crs = CRS.from_wkt(wkt)
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else wkt.split('"')[1] if '"' in wkt else wkt


@cli.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for the demo's outputs.",
)
@click.option("--scheduler", default=None, help="A running scheduler; default: embedded cluster.")
@click.option("--overwrite", is_flag=True, help="Replace outputs of an earlier demo run.")
def demo(output: Path, scheduler: str | None, overwrite: bool) -> None:
    """Segment bundled real samples end to end and check them against whole-image processing."""
    from .cluster import connect
    from .demo import check_outputs, run_demo

    check_outputs(output, overwrite=overwrite)
    with connect(scheduler) as client:
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
