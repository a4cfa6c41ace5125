"""The ledger: schedules and every run they made, in SQLite under ``$SEGPIPE_HOME``.

One row per run: its schedule, workflow, input (and trigger time for a
schedule that runs one file at every tick), outputs, status, attempts, times,
error and object count. The row is the claim: the input key
``(workflow, input, tick)`` is unique, so two triggers for the same input,
from one server or two, never make two runs. A run moves

    queued -> running -> done
                      -> retrying -> running ...  (after its backoff)
                      -> failed                   (no attempts left, or an error
                                                   that trying again cannot fix)

and every move is one transaction, taken only from the state it expects.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import InputValueError

__all__ = ["Ledger", "Run", "ScheduleRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow TEXT NOT NULL,
    cron TEXT,
    watch TEXT,
    timezone TEXT,
    retries INTEGER NOT NULL,
    backoff REAL NOT NULL,
    settle REAL NOT NULL,
    created TEXT NOT NULL,
    checked TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule INTEGER NOT NULL,
    workflow TEXT NOT NULL,
    input TEXT NOT NULL,
    tick TEXT NOT NULL DEFAULT '',
    fingerprint TEXT,
    outputs TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL,
    backoff REAL NOT NULL,
    owns INTEGER NOT NULL DEFAULT 0,
    queued TEXT NOT NULL,
    started TEXT,
    ended TEXT,
    next_try TEXT,
    error TEXT,
    traceback TEXT,
    objects INTEGER,
    seconds REAL,
    resumed_chunks INTEGER,
    record TEXT,
    owner TEXT,
    stage TEXT,
    UNIQUE (workflow, input, tick)
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, next_try);
"""

STATUSES = ("queued", "running", "retrying", "done", "failed")


def now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ScheduleRow:
    """A schedule: a workflow and what triggers it."""

    id: int
    workflow: str
    cron: str | None
    watch: str | None
    timezone: str | None
    retries: int
    backoff: float
    settle: float
    created: str
    checked: str


@dataclass(frozen=True)
class Run:
    """One run in the ledger (see the module's docstring for its statuses)."""

    id: int
    schedule: int
    workflow: str
    input: str
    tick: str
    fingerprint: str | None
    outputs: dict[str, str]
    status: str
    attempts: int
    retries: int
    backoff: float
    owns: bool
    queued: str
    started: str | None
    ended: str | None
    next_try: str | None
    error: str | None
    traceback: str | None
    objects: int | None
    seconds: float | None
    resumed_chunks: int | None
    record: str | None
    owner: str | None
    stage: str | None


class Ledger:
    """The SQLite ledger at ``path`` (made if missing). Safe to share between processes.

    Examples
    --------
    >>> import tempfile
    >>> ledger = Ledger(Path(tempfile.mkdtemp()) / "ledger.sqlite")
    >>> sid = ledger.add_schedule("/w/water.yaml", watch="/inbox/*.tif")
    >>> run = ledger.claim(sid, "/w/water.yaml", "/inbox/a.tif")
    >>> ledger.claim(sid, "/w/water.yaml", "/inbox/a.tif") is None  # the same input again
    True
    >>> ledger.run(run).status
    'queued'
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # readers never wait for the server
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction that holds the write lock from its start (BEGIN IMMEDIATE)."""
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # schedules ---------------------------------------------------------------

    def add_schedule(
        self,
        workflow: str,
        *,
        cron: str | None = None,
        watch: str | None = None,
        timezone: str | None = None,
        retries: int = 3,
        backoff: float = 60.0,
        settle: float = 30.0,
    ) -> int:
        """Add a schedule; its id. Its cron ticks count from now."""
        moment = _iso(now())
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO schedules (workflow, cron, watch, timezone, retries, backoff, "
                "settle, created, checked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (workflow, cron, watch, timezone, retries, backoff, settle, moment, moment),
            )
            return int(cursor.lastrowid or 0)

    def schedules(self) -> list[ScheduleRow]:
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM schedules ORDER BY id").fetchall()
        return [ScheduleRow(**dict(row)) for row in rows]

    def remove_schedule(self, schedule: int) -> ScheduleRow:
        """Remove a schedule (its runs stay in the ledger); the schedule removed."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM schedules WHERE id = ?", (schedule,)).fetchone()
            if row is None:
                raise InputValueError(
                    f"{self.path}: there is no schedule {schedule}; see segpipe schedule list"
                )
            db.execute("DELETE FROM schedules WHERE id = ?", (schedule,))
        return ScheduleRow(**dict(row))

    def checked(self, schedule: int, moment: datetime) -> None:
        """Record that ``schedule``'s cron ticks up to ``moment`` were handled."""
        with self._transaction() as db:
            db.execute("UPDATE schedules SET checked = ? WHERE id = ?", (_iso(moment), schedule))

    # runs --------------------------------------------------------------------

    def claim(
        self,
        schedule: int,
        workflow: str,
        input: str,
        *,
        tick: str = "",
        fingerprint: str | None = None,
        retries: int = 3,
        backoff: float = 60.0,
    ) -> int | None:
        """Queue a run of ``workflow`` on ``input``; its id, or None when the ledger has
        one for that input already (from any trigger, in any state)."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO runs (schedule, workflow, input, tick, fingerprint, "
                "status, retries, backoff, queued) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                (schedule, workflow, input, tick, fingerprint, retries, backoff, _iso(now())),
            )
            return int(cursor.lastrowid) if cursor.rowcount == 1 and cursor.lastrowid else None

    def known(self, workflow: str) -> set[tuple[str, str]]:
        """The ``(input, tick)`` pairs that ``workflow`` has a run for."""
        with self._transaction() as db:
            rows = db.execute("SELECT input, tick FROM runs WHERE workflow = ?", (workflow,))
            return {(row["input"], row["tick"]) for row in rows}

    def next_due(self, moment: datetime) -> Run | None:
        """The oldest queued run, or retrying run whose backoff is over by ``moment``."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM runs WHERE status = 'queued' "
                "OR (status = 'retrying' AND next_try <= ?) ORDER BY id LIMIT 1",
                (_iso(moment),),
            ).fetchone()
        return _run(row) if row is not None else None

    def start(self, run: int, outputs: dict[str, str]) -> bool:
        """Take ``run`` to running, if it is still waiting; whether this call took it.

        From here the run owns its outputs (they were checked absent before): a
        later attempt or a resumed run may replace what an earlier one left.
        """
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE runs SET status = 'running', started = ?, ended = NULL, owner = ?, "
                "outputs = ?, stage = NULL, owns = 1 "
                "WHERE id = ? AND status IN ('queued', 'retrying')",
                (_iso(now()), _owner(), json.dumps(outputs), run),
            )
            return cursor.rowcount == 1

    def stage(self, run: int, line: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET stage = ? WHERE id = ?", (line, run))

    def done(
        self, run: int, *, objects: int, seconds: float, resumed_chunks: int, record: str | None
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'done', ended = ?, attempts = attempts + 1, "
                "objects = ?, seconds = ?, resumed_chunks = ?, record = ?, error = NULL, "
                "traceback = NULL, next_try = NULL WHERE id = ? AND status = 'running'",
                (_iso(now()), objects, seconds, resumed_chunks, record, run),
            )

    def failed(
        self, run: int, *, error: str, traceback: str, final: bool, disown: bool = False
    ) -> str:
        """Record a failed attempt; the run's new status: ``retrying`` (with its next try
        after a backoff that doubles with each attempt) or, when no attempt is left or
        ``final`` (trying again cannot help), ``failed``. ``disown``: the run found its
        outputs taken by something else, and must check them again if retried."""
        moment = now()
        with self._transaction() as db:
            row = db.execute(
                "SELECT attempts, retries, backoff FROM runs WHERE id = ?", (run,)
            ).fetchone()
            attempts = row["attempts"] + 1
            again = not final and attempts <= row["retries"]
            status = "retrying" if again else "failed"
            wait = timedelta(seconds=row["backoff"] * 2 ** (attempts - 1))
            db.execute(
                "UPDATE runs SET status = ?, attempts = ?, ended = ?, next_try = ?, error = ?, "
                "traceback = ?, owns = owns AND NOT ? "
                "WHERE id = ? AND status IN ('running', 'queued', 'retrying')",
                (
                    status,
                    attempts,
                    _iso(moment),
                    _iso(moment + wait) if again else None,
                    error,
                    traceback,
                    disown,
                    run,
                ),
            )
        return status

    def interrupted(self) -> list[Run]:
        """Put every running run back in the queue, to be resumed (it owns its outputs);
        those runs.

        Only for a server that holds the serve lock: then nothing else runs them.
        """
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM runs WHERE status = 'running'").fetchall()
            db.execute("UPDATE runs SET status = 'queued', owner = NULL WHERE status = 'running'")
        return [_run(row) for row in rows]

    def retry(self, run: int) -> Run:
        """Queue a failed run again, with its attempts reset (``segpipe runs retry``)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE runs SET status = 'queued', attempts = 0, next_try = NULL "
                "WHERE id = ? AND status = 'failed'",
                (run,),
            )
            if cursor.rowcount != 1:
                found = db.execute("SELECT status FROM runs WHERE id = ?", (run,)).fetchone()
                state = "there is no such run" if found is None else f"it is {found['status']}"
                raise InputValueError(
                    f"{self.path}: cannot retry run {run}: {state}; only failed runs are retried"
                )
        return self.run(run)

    def run(self, run: int) -> Run:
        with self._transaction() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run,)).fetchone()
        if row is None:
            raise InputValueError(f"{self.path}: there is no run {run}; see segpipe runs")
        return _run(row)

    def runs(self, *, status: str | None = None, limit: int | None = None) -> list[Run]:
        """Runs, newest first."""
        query, arguments = "SELECT * FROM runs", []
        if status is not None:
            query += " WHERE status = ?"
            arguments.append(status)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._transaction() as db:
            rows = db.execute(query, arguments).fetchall()
        return [_run(row) for row in rows]


def _run(row: sqlite3.Row) -> Run:
    values: dict[str, Any] = dict(row)
    values["outputs"] = json.loads(values["outputs"] or "{}")
    values["owns"] = bool(values["owns"])
    return Run(**values)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
