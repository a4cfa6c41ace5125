"""The ``segpipe schedule``, ``segpipe serve`` and ``segpipe runs`` commands."""

from __future__ import annotations

import signal
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from ._cli_options import where_to_run

__all__ = ["runs", "schedule", "serve"]


@click.group()
def schedule() -> None:
    """Run workflows on a cron schedule or for each new file (see segpipe serve)."""


@schedule.command("add")
@click.argument("workflow", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cron", default=None, help="When: a cron expression, e.g. '0 2 * * *'.")
@click.option("--watch", default=None, help="Each new file matching this, e.g. 'inbox/*.tif'.")
@click.option("--timezone", default=None, help="Of the cron times, e.g. UTC; default local.")
@click.option("--retries", type=click.IntRange(0), default=3, show_default=True)
@click.option(
    "--backoff",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Seconds before the first retry of a failed run; doubled at each retry.",
)
@click.option(
    "--settle",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds a new file must stay unchanged before it is taken as fully written.",
)
def add(
    workflow: Path,
    cron: str | None,
    watch: str | None,
    timezone: str | None,
    retries: int,
    backoff: float,
    settle: float,
) -> None:
    """Schedule WORKFLOW: at --cron times, for each new --watch file, or both."""
    from .schedule import add_schedule, ledger

    row = add_schedule(
        ledger(),
        workflow,
        cron=cron,
        watch=watch,
        timezone=timezone,
        retries=retries,
        backoff=backoff,
        settle=settle,
    )
    click.echo(f"schedule {row.id}: {_trigger(row)} -> {row.workflow}")


@schedule.command("list")
def list_schedules() -> None:
    """Show the schedules."""
    from .schedule import ledger

    rows = ledger().schedules()
    if not rows:
        click.echo("no schedules; add one with segpipe schedule add WORKFLOW --watch/--cron")
    for row in rows:
        click.echo(f"{row.id:>4}  {_trigger(row)}  {row.workflow}  (retries {row.retries})")


@schedule.command("remove")
@click.argument("schedule_id", type=int)
def remove(schedule_id: int) -> None:
    """Remove schedule SCHEDULE_ID; its runs stay in the ledger."""
    from .schedule import ledger

    row = ledger().remove_schedule(schedule_id)
    click.echo(f"removed schedule {row.id}: {_trigger(row)} -> {row.workflow}")


def _trigger(row: Any) -> str:
    parts = []
    if row.cron:
        parts.append(f"cron '{row.cron}'" + (f" {row.timezone}" if row.timezone else ""))
    if row.watch:
        parts.append(f"watch {row.watch}")
    return " and ".join(parts)


@click.command()
@where_to_run("A running scheduler to run on; default: an embedded cluster.")
@click.option(
    "--interval",
    type=click.FloatRange(0.05),
    default=10.0,
    show_default=True,
    help="Seconds between looks for due work.",
)
@click.option("--once", is_flag=True, help="Look once, run everything due now, then exit.")
def serve(scheduler: str | None, cluster_file: Path | None, interval: float, once: bool) -> None:
    """Run the schedules: queue what is due, run it on the cluster, record it in the ledger.

    Schedules and the ledger are in $SEGPIPE_HOME (default ~/.segpipe). One serve per
    home; killed and started again, it resumes the run it was doing.
    """
    from .cluster import connect, spec_from_options
    from .schedule import ServeLock, Server, ledger, segpipe_home

    spec = spec_from_options(scheduler, cluster_file)
    home = segpipe_home()
    signal.signal(signal.SIGTERM, _stop)
    with ServeLock(home), ExitStack() as stack:
        found = ledger()
        if not found.schedules():
            _say("no schedules yet: add one with segpipe schedule add; looking anyway")

        def start_cluster() -> Any:  # called when the first run is due
            started = stack.enter_context(connect(spec))
            workers = len(started.scheduler_info()["workers"])
            _say(f"cluster: {workers} workers" + _dashboard(started))
            return started

        _say(f"serving {home} every {interval:g} s" if not once else f"serving {home} once")
        try:
            Server(found, start_cluster, log=_say).serve(interval=interval, once=once)
        except KeyboardInterrupt:
            _say("stopped; a run under way resumes at the next segpipe serve")
            raise SystemExit(130) from None


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _dashboard(client: Any) -> str:
    return f", dashboard {client.dashboard_link}" if client.dashboard_link else ""


def _say(line: str) -> None:
    click.echo(f"{datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S')}  {line}")


@click.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(["queued", "running", "retrying", "done", "failed"]))
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.pass_context
def runs(context: click.Context, status: str | None, limit: int) -> None:
    """List the runs in the ledger, newest first (segpipe runs show ID for one)."""
    if context.invoked_subcommand is not None:
        return
    from .schedule import ServeLock, ledger, segpipe_home

    found = ledger().runs(status=status, limit=limit)
    if not found:
        click.echo("no runs" + (f" {status}" if status else ""))
        return
    serving = ServeLock.held(segpipe_home())
    click.echo(
        f"{'id':>5}  {'status':<11} {'tries':>5}  {'started':<19}  {'took':>8}  "
        f"{'objects':>8}  input"
    )
    for run in found:
        state = run.status if serving or run.status != "running" else "interrupted"
        started = _local(run.started) if run.started else "-"
        took = f"{run.seconds:.1f} s" if run.seconds is not None else "-"
        objects = str(run.objects) if run.objects is not None else "-"
        line = f"{run.id:>5}  {state:<11} {run.attempts:>5}  {started:<19}  {took:>8}  "
        line += f"{objects:>8}  {run.input}" + (f" @ {run.tick}" if run.tick else "")
        click.echo(line)
        if run.error and run.status in ("retrying", "failed"):
            click.echo(f"{'':>7}{run.error.splitlines()[0][:160]}")


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--traceback", "show_traceback", is_flag=True, help="Show the error's traceback.")
def show(run_id: int, show_traceback: bool) -> None:
    """Show everything the ledger has on run RUN_ID."""
    from .schedule import ledger

    run = ledger().run(run_id)
    rows = [
        ("run", str(run.id)),
        ("status", run.status),
        ("schedule", str(run.schedule)),
        ("workflow", run.workflow),
        ("input", run.input),
        ("tick", run.tick or "-"),
        ("attempts", f"{run.attempts} of {run.retries + 1}"),
        ("queued", _local(run.queued)),
        ("started", _local(run.started) if run.started else "-"),
        ("ended", _local(run.ended) if run.ended else "-"),
        ("took", f"{run.seconds:.2f} s" if run.seconds is not None else "-"),
        ("objects", str(run.objects) if run.objects is not None else "-"),
        ("resumed", f"{run.resumed_chunks} chunks recorded before" if run.resumed_chunks else "-"),
        ("next try", _local(run.next_try) if run.next_try else "-"),
        ("stage", run.stage or "-"),
        ("record", run.record or "-"),
        ("error", run.error or "-"),
    ]
    rows += [(f"output {kind}", path) for kind, path in run.outputs.items()]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")
    if show_traceback and run.traceback:
        click.echo(run.traceback)


@runs.command("retry")
@click.argument("run_id", type=int)
def retry(run_id: int) -> None:
    """Queue failed run RUN_ID again (e.g. after its input was replaced)."""
    from .schedule import ledger

    run = ledger().retry(run_id)
    click.echo(f"run {run.id} queued again: {run.input}")


def _local(moment: str) -> str:
    return datetime.fromisoformat(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S")
