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
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """segpipe: segment images too big for one machine, on a Dask cluster."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for the demo's zarr outputs.",
)
@click.option("--scheduler", default=None, help="A running scheduler; default: embedded cluster.")
@click.option("--overwrite", is_flag=True, help="Replace outputs of an earlier demo run.")
def demo(output: Path, scheduler: str | None, overwrite: bool) -> None:
    """Label bundled real samples chunk by chunk and check them against whole-image labelling."""
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
            f"identical to whole-image scipy.ndimage.label: "
            f"{'yes' if r.matches_whole_image else 'NO'}"
        )
        click.echo(f"  labels: {r.output}")
    if not all(r.matches_whole_image for r in results):
        raise click.ClickException("a demo result differs from whole-image labelling")


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
    except PipelineError as error:
        if debug:
            raise
        click.echo(f"segpipe: error: {error}", err=True)
        sys.exit(1)
