"""``segpipe schedule add``: a schedule checked in full before it is stored."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputValueError
from ..workflow import Workflow
from ..workflow._templates import check_templates, is_pattern
from ._cron import check_cron, zone
from ._ledger import Ledger, ScheduleRow

__all__ = ["add_schedule"]


def add_schedule(
    ledger: Ledger,
    workflow: str | Path,
    *,
    cron: str | None = None,
    watch: str | None = None,
    timezone: str | None = None,
    retries: int = 3,
    backoff: float = 60.0,
    settle: float = 30.0,
) -> ScheduleRow:
    """Add a schedule for the workflow file ``workflow`` to ``ledger``.

    Parameters
    ----------
    cron
        When to run: a cron expression (``"0 2 * * *"``: 02:00 every day) in
        ``timezone`` (an IANA name; default this machine's). With a pattern
        (``watch`` or the workflow's source) each tick runs the new inputs; with
        a workflow of one file each tick runs it once.
    watch
        A file pattern (``"inbox/*.tif"``, taken from the current folder when
        relative) that replaces the workflow's source: each new, fully written
        input is run once, as soon as it is seen (or at the next cron tick when
        ``cron`` is given too).
    retries, backoff
        A failed run is tried again up to ``retries`` times, after ``backoff``
        seconds, doubled at each attempt.
    settle
        Seconds an input must stay unchanged before it counts as fully written.

    Raises
    ------
    WorkflowError
        The workflow is not valid, or its outputs would be written by two runs.
    InputValueError
        Neither ``cron`` nor ``watch``, a bad cron expression or time zone, or a
        negative number.
    """
    path = Path(workflow).resolve()
    flow = Workflow.from_yaml(path)  # every field of the workflow, checked now
    if cron is None and watch is None:
        raise InputValueError(
            f"{path}: say when it runs: --cron '0 2 * * *' (a time) or --watch 'inbox/*.tif' "
            "(each new file), or both"
        )
    if cron is not None:
        check_cron(cron)
    zone(timezone)
    for name, value, least in (
        ("retries", retries, 0),
        ("backoff", backoff, 0),
        ("settle", settle, 0),
    ):
        if value < least:
            raise InputValueError(f"--{name} must be {least} or more; got {value}")
    watched = str(Path(watch).expanduser().absolute()) if watch else None
    many = watched is not None or is_pattern(flow.source_path())
    check_templates(flow.spec, str(path), pattern=many)
    number = ledger.add_schedule(
        str(path),
        cron=cron,
        watch=watched,
        timezone=timezone,
        retries=retries,
        backoff=backoff,
        settle=settle,
    )
    return next(row for row in ledger.schedules() if row.id == number)
