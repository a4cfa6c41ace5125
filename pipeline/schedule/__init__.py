"""Scheduled processing: workflows run on a cron schedule or for each new input file.

Schedules and the run ledger live under ``$SEGPIPE_HOME`` (default
``~/.segpipe``) in SQLite; ``segpipe serve`` runs what they make due::

    segpipe schedule add workflows/inbox_water.yaml --watch "inbox/*.tif"
    segpipe schedule add nightly.yaml --cron "0 2 * * *"   # its outputs named with {date}
    segpipe serve                      # the embedded cluster; or --scheduler / --cluster
    segpipe runs                       # every run: input, status, times, objects, error
"""

from ._add import add_schedule
from ._home import ServeLock, ServerRunningError, segpipe_home
from ._ledger import Ledger, Run, ScheduleRow
from ._serve import Server

__all__ = [
    "Ledger",
    "Run",
    "ScheduleRow",
    "ServeLock",
    "Server",
    "ServerRunningError",
    "add_schedule",
    "ledger",
    "segpipe_home",
]


def ledger() -> Ledger:
    """The ledger of ``$SEGPIPE_HOME``."""
    return Ledger(segpipe_home() / "ledger.sqlite")
