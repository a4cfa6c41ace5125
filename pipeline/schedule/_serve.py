"""``segpipe serve``: find what the schedules make due, run it on the cluster, record it.

The server holds the serve lock of its ``$SEGPIPE_HOME``, so it is the only one
running the ledger's runs. Every ``interval`` seconds it looks at each schedule:

- a watched pattern: each input that is new to the ledger and fully written
  (unchanged for ``settle`` seconds, by its modification time and by what the
  server itself saw) is queued once;
- a cron schedule: at each tick, the fully written new inputs of its pattern
  are queued, or, for a workflow of one file, a run for that tick.

Queued runs and retries whose backoff is over then run one at a time, oldest
first, each on the cluster the server was started with. A server that was
killed left its run marked running; the next one resumes that run (the chunks
it had recorded are not computed again) instead of starting another.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError, PipelineError
from ..workflow import Workflow, WorkflowError
from ..workflow._templates import is_pattern
from ._cron import latest_tick, zone
from ._inputs import Found, matching
from ._ledger import Ledger, Run, ScheduleRow, now

__all__ = ["Server"]


class Server:
    """Runs what a ledger's schedules make due, on the cluster ``connect`` gives.

    Parameters
    ----------
    ledger
        The ledger of schedules and runs.
    connect
        Makes the ``distributed.Client`` every run computes on; called once, when
        the first run is due (so a server with nothing to do starts no cluster).
    log
        Called with each line the server has to say.
    chunk_retries
        Further attempts for a failing chunk inside a run.
    """

    def __init__(
        self,
        ledger: Ledger,
        connect: Callable[[], Any],
        *,
        log: Callable[[str], None] = print,
        chunk_retries: int = 2,
    ) -> None:
        self.ledger = ledger
        self._connect = connect
        self._client: Any = None
        self.log = log
        self.chunk_retries = chunk_retries
        self._seen: dict[Path, tuple[str, float]] = {}  # input: (fingerprint, seen since)
        self._complaints: dict[int, str] = {}

    def serve(self, *, interval: float = 10.0, once: bool = False) -> None:
        """Resume interrupted runs, then look and run every ``interval`` seconds;
        ``once``: look once, run everything due now, and return."""
        for left in self.ledger.interrupted():
            self.log(f"run {left.id} ({left.input}) was interrupted; it will be resumed")
        while True:
            self.look(once=once)
            while (run := self.ledger.next_due(now())) is not None:
                self.execute(run)
                self.look(once=once)
            if once:
                return
            time.sleep(interval)

    # looking -----------------------------------------------------------------

    def look(self, *, once: bool = False) -> None:
        """Queue what each schedule makes due now. ``once``: a file counts as fully
        written by its modification time alone (there is no earlier look)."""
        moment = now()
        for schedule in self.ledger.schedules():
            try:
                flow = Workflow.from_yaml(schedule.workflow)
            except PipelineError as error:
                self._complain(schedule, f"{error}; its inputs wait until the workflow is fixed")
                continue
            self._complaints.pop(schedule.id, None)
            pattern = schedule.watch or flow.source_path()
            tick = None
            if schedule.cron:
                where = zone(schedule.timezone)
                since = datetime.fromisoformat(schedule.checked)
                tick = latest_tick(schedule.cron, since, moment, where)
            if schedule.watch or is_pattern(pattern):
                known = frozenset(i for i, t in self.ledger.known(schedule.workflow) if not t)
                found = matching(pattern, skip=known)
                ready = self._ready(found, schedule.settle, moment, once)
                if schedule.cron is None or tick is not None:
                    self._queue(schedule, ready)
            elif tick is not None:
                self._queue_tick(schedule, pattern, tick)
            if tick is not None:
                self.ledger.checked(schedule.id, moment)

    def _ready(
        self, found: list[Found], settle: float, moment: datetime, once: bool
    ) -> list[Found]:
        """The inputs unchanged for ``settle`` seconds, by their time and by our looks."""
        clock = time.monotonic()
        ready = []
        for item in found:
            fingerprint, since = self._seen.get(item.path, (None, clock))
            since = since if fingerprint == item.fingerprint else clock
            self._seen[item.path] = (item.fingerprint, since)
            quiet = item.quiet_for(moment.timestamp()) >= settle
            if quiet and (once or clock - since >= settle):
                ready.append(item)
        return ready

    def _queue(self, schedule: ScheduleRow, ready: list[Found]) -> None:
        for item in ready:  # a claim is refused if another trigger took the input meanwhile
            run = self.ledger.claim(
                schedule.id,
                schedule.workflow,
                str(item.path),
                fingerprint=item.fingerprint,
                retries=schedule.retries,
                backoff=schedule.backoff,
            )
            if run is not None:
                self.log(f"run {run} queued: {item.path} (schedule {schedule.id})")

    def _queue_tick(self, schedule: ScheduleRow, source: str, tick: datetime) -> None:
        run = self.ledger.claim(
            schedule.id,
            schedule.workflow,
            source,
            tick=tick.isoformat(),
            retries=schedule.retries,
            backoff=schedule.backoff,
        )
        if run is not None:
            self.log(f"run {run} queued: {source} for the tick at {tick.isoformat()}")

    def _complain(self, schedule: ScheduleRow, problem: str) -> None:
        if self._complaints.get(schedule.id) != problem:  # once, not at every look
            self.log(f"schedule {schedule.id}: {problem}")
            self._complaints[schedule.id] = problem

    # running -----------------------------------------------------------------

    def client(self) -> Any:
        """The client runs compute on, connected at the first call."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def execute(self, run: Run) -> None:
        """Run ``run`` and record how it ended. A run that owns its outputs already (an
        interrupted run, or a retry) resumes: it skips the chunks recorded before."""
        try:
            one = self._workflow(run)
            outputs = {kind: str(path) for kind, path in one.output_paths().items()}
            if not run.owns:
                _refuse_taken(outputs, run)
        except (WorkflowError, OutputExistsError) as error:
            self._failed(run, error, final=True)
            return
        client = self.client()  # the embedded cluster starts before the first run
        if not self.ledger.start(run.id, outputs):
            return  # taken by another trigger in the meantime
        notes = [f"attempt {run.attempts + 1}"] * bool(run.attempts) + ["resuming"] * run.owns
        self.log(f"run {run.id} started: {run.input}" + (f" ({', '.join(notes)})" * bool(notes)))
        began = time.perf_counter()

        def say(line: str) -> None:
            self.ledger.stage(run.id, line)
            self.log(f"run {run.id}: {line}")

        try:
            result = one.run(
                client,
                overwrite=run.owns,
                resume=run.owns,
                retries=self.chunk_retries,
                log=say,
            )
        except Exception as error:
            self._failed(run, error, final=isinstance(error, WorkflowError | OutputExistsError))
            return
        first_pass = result.record.get("first_pass", {})
        self.ledger.done(
            run.id,
            objects=result.num,
            seconds=round(time.perf_counter() - began, 3),
            resumed_chunks=int(first_pass.get("skipped", 0)),
            record=str(result.outputs["record"]) if "record" in result.outputs else None,
        )
        self.log(f"run {run.id} done: {result.num} objects from {run.input}")

    def _workflow(self, run: Run) -> Workflow:
        """The run's workflow, for its input and trigger time."""
        flow = Workflow.from_yaml(run.workflow)
        # {date} and {time}: the tick in its schedule's zone, or when the input was queued
        when = datetime.fromisoformat(run.tick or run.queued)
        when = when if run.tick else when.astimezone(zone(None))
        return flow.for_input(run.input, when=when, run=str(run.id))

    def _failed(self, run: Run, error: Exception, *, final: bool) -> None:
        status = self.ledger.failed(
            run.id,
            error=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(),
            final=final,
            disown=isinstance(error, OutputExistsError) and not run.owns,
        )
        again = "; it will be tried again" if status == "retrying" else ""
        self.log(f"run {run.id} failed: {error}{again}")


def _refuse_taken(outputs: dict[str, str], run: Run) -> None:
    for kind, path in outputs.items():
        if Path(path).exists():
            raise OutputExistsError(
                f"output {kind} {path} of run {run.id} ({run.input}) already exists and was "
                f"not written by this run; move it away, then: segpipe runs retry {run.id}"
            )
