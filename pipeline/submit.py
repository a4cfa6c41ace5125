"""Runs handed to a running cluster: submit a workflow and return, follow it by its id.

``submit`` starts the run as one long-lived task on a worker; that task drives
the run (it leaves its worker's thread pool while it waits, so the worker
keeps computing chunks) and keeps going after the submitting client has gone.
Its progress lives on the scheduler, under the run id, for as long as the
scheduler runs::

    segpipe submit water.yaml --scheduler tcp://head:8786   # prints the run id
    segpipe status 3f9c2a1b --scheduler tcp://head:8786 --follow

The workers write the outputs, so the paths in the workflow must be on a file
system that the workers share.
"""

from __future__ import annotations

import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from .errors import InputValueError
from .workflow import Workflow

_KEY = "segpipe-runs"
FINISHED = ("done", "failed")


def submit(
    flow: Workflow,
    client: Any,
    *,
    overwrite: bool = False,
    resume: bool = False,
    retries: int = 2,
) -> str:
    """Start ``flow`` on ``client``'s cluster and return its run id at once.

    Examples
    --------
    >>> from pipeline.cluster import connect
    >>> from pipeline.data import sample_path
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> flow = Workflow(
    ...     source={"path": str(sample_path("L7_ETMs.tif")), "bands": [5]},
    ...     steps=["threshold", "label"],
    ...     output=f"{folder}/water.zarr",
    ... )
    >>> with connect(n_workers=1) as client:
    ...     run = submit(flow, client)
    ...     wait_for(run, client)["state"]
    'done'
    """
    from distributed import fire_and_forget

    run_id = uuid.uuid4().hex[:8]
    _update(client, run_id, state="queued", submitted=_now(), log=[])
    future = client.submit(
        _drive,
        flow,
        run_id,
        overwrite,
        resume,
        retries,
        key=f"segpipe-run-{run_id}",
        pure=False,
    )
    fire_and_forget(future)
    return run_id


def status(run_id: str, client: Any) -> dict[str, Any]:
    """What the scheduler knows of run ``run_id``: state, stage, log, outputs, error.

    Raises
    ------
    InputValueError
        The scheduler knows no run of that id (it was restarted, or the id is wrong).
    """
    found = client.get_metadata([_KEY, run_id], default=None)
    if found is None:
        raise InputValueError(
            f"the scheduler at {client.scheduler.address} knows no run {run_id!r}; "
            "check the id printed by segpipe submit (runs are kept while the scheduler runs)"
        )
    return dict(found)


def wait_for(run_id: str, client: Any, *, every: float = 0.5, timeout: float | None = None) -> dict:
    """Poll run ``run_id`` until it is done or failed; its last status."""
    start = time.monotonic()
    while True:
        found = status(run_id, client)
        if found["state"] in FINISHED:
            return found
        if timeout is not None and time.monotonic() - start > timeout:
            return found
        time.sleep(every)


def _drive(flow: Workflow, run_id: str, overwrite: bool, resume: bool, retries: int) -> str:
    """The run, inside a worker: it drives the cluster from there."""
    from distributed import worker_client

    with worker_client() as client:
        log: list[str] = []

        def say(line: str) -> None:
            log.append(line)
            _update(client, run_id, log=list(log), stage=line)

        _update(client, run_id, state="running", started=_now())
        try:
            result = flow.run(client, overwrite=overwrite, log=say, resume=resume, retries=retries)
        except BaseException as error:
            _update(
                client,
                run_id,
                state="failed",
                finished=_now(),
                error=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc(),
            )
            raise
        _update(
            client,
            run_id,
            state="done",
            finished=_now(),
            objects=result.num,
            outputs={kind: str(path) for kind, path in result.outputs.items()},
        )
    return run_id


def _update(client: Any, run_id: str, **fields: Any) -> None:
    current = client.get_metadata([_KEY, run_id], default=None) or {}
    client.set_metadata([_KEY, run_id], {**current, **fields, "run": run_id})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
