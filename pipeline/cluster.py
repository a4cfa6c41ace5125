"""Where the work runs: an embedded LocalCluster by default, or a running scheduler."""

from __future__ import annotations

import os

from distributed import Client

from .errors import InputValueError

__all__ = ["connect"]


def connect(address: str | None = None, *, n_workers: int | None = None) -> Client:
    """A ``distributed.Client`` for running segpipe work.

    Parameters
    ----------
    address
        A running scheduler, e.g. ``"tcp://10.0.0.5:8786"``. ``None`` starts an
        embedded LocalCluster of worker processes on this machine (one
        single-threaded worker per core, at most 8) that closes with the client.
    n_workers
        Worker processes of the embedded cluster; only without ``address``.

    Examples
    --------
    >>> with connect(n_workers=1) as client:
    ...     len(client.scheduler_info()["workers"])
    1
    """
    if address is None:
        workers = n_workers if n_workers is not None else min(os.cpu_count() or 1, 8)
        if workers < 1:
            raise InputValueError(f"n_workers must be at least 1; got {n_workers}")
        return Client(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        )
    if n_workers is not None:
        raise InputValueError(
            "n_workers sizes the embedded cluster only; a remote scheduler has its own workers"
        )
    if "://" not in address and ":" not in address:
        raise InputValueError(
            f"scheduler address {address!r} is not an address; expected e.g. tcp://host:8786"
        )
    return Client(address)
