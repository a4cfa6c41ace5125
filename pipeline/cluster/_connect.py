"""``connect``: a client of the embedded cluster, a running scheduler or a config's cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distributed import Client, Security

from ..errors import InputValueError, PipelineError, UnsupportedInputError
from ._config import read_cluster_config
from ._deploy import jobqueue_cluster, kubernetes_cluster
from ._kinds import (
    KINDS,
    ClusterConfig,
    JobQueueConfig,
    KubernetesConfig,
    LocalConfig,
    RemoteConfig,
)

__all__ = ["ClusterConnectionError", "connect", "spec_from_options"]

_CONFIG_SUFFIXES = (".yaml", ".yml")


class ClusterConnectionError(PipelineError, ConnectionError):
    """A running scheduler could not be reached, or refused the connection."""


def connect(
    spec: str | Path | ClusterConfig | None = None, *, n_workers: int | None = None
) -> Client:
    """A ``distributed.Client`` for running segpipe work.

    Parameters
    ----------
    spec
        Where to run:

        - ``None``: an embedded LocalCluster of worker processes on this machine
          (one single-threaded worker per core, at most 8);
        - a running scheduler's address, e.g. ``"tcp://10.0.0.5:8786"``,
          ``"tls://10.0.0.5:8786"`` or ``"10.0.0.5:8786"``;
        - a cluster config: the path of a YAML file (``cluster/slurm.yaml``) or
          a config object from :func:`read_cluster_config`.

        A cluster the call starts (embedded, SLURM, PBS, Kubernetes) closes with
        the client.
    n_workers
        Worker processes of the embedded cluster; only without ``spec`` or with
        a ``local`` config, whose ``n_workers`` it replaces.

    Returns
    -------
    distributed.Client
        Use it as a context manager, or close it.

    Raises
    ------
    ClusterConfigError
        The config file is not valid (checked before anything starts).
    InputValueError
        ``spec`` is neither an address nor a config, or ``n_workers`` is given
        for a cluster it does not size.
    ClusterConnectionError
        A running scheduler cannot be reached, or refuses this client (e.g. a
        TLS-only scheduler and no certificate, or one from another CA).
    MissingExtraError
        A slurm, pbs or kubernetes config without ``segpipe[cluster]`` installed.

    Examples
    --------
    >>> with connect(n_workers=1) as client:
    ...     len(client.scheduler_info()["workers"])
    1
    """
    config = _config_of(spec)
    if n_workers is not None:
        if not isinstance(config, LocalConfig):
            kind = "remote" if isinstance(config, str) else config.kind
            raise InputValueError(
                f"n_workers sizes the embedded cluster only; a {kind} cluster is sized "
                f"{_SIZED_BY[kind]}"
            )
        if n_workers < 1:
            raise InputValueError(f"n_workers must be at least 1; got {n_workers}")
        config = config.model_copy(update={"n_workers": n_workers})

    if isinstance(config, LocalConfig):
        workers = config.n_workers or min(os.cpu_count() or 1, 8)
        return Client(
            n_workers=workers,
            threads_per_worker=config.threads_per_worker,
            processes=True,
            memory_limit=config.memory_limit,
            dashboard_address=config.dashboard_address,
        )
    if isinstance(config, str):
        return _client_of(config)
    if isinstance(config, RemoteConfig):
        return _client_of(config.url, security=_security(config), timeout=config.timeout)
    if isinstance(config, JobQueueConfig):
        cluster = jobqueue_cluster(config)
        if config.scale is not None:
            cluster.scale(jobs=config.scale.jobs)
        elif config.adapt is not None:
            cluster.adapt(
                minimum_jobs=config.adapt.minimum_jobs, maximum_jobs=config.adapt.maximum_jobs
            )
        return _OwningClient(cluster)
    if isinstance(config, KubernetesConfig):
        return _OwningClient(kubernetes_cluster(config))
    raise UnsupportedInputError(
        f"cannot connect to a {type(config).__name__}; give None, a scheduler address, "
        f"a cluster config file or a config of kind {', '.join(KINDS)}"
    )


_SIZED_BY = {
    "remote": "by the workers started for its scheduler",
    "slurm": "by scale or adapt in its file",
    "pbs": "by scale or adapt in its file",
    "kubernetes": "by n_workers in its file",
}


def spec_from_options(scheduler: str | None, cluster: str | Path | None) -> str | Path | None:
    """The one of ``--scheduler ADDRESS`` and ``--cluster FILE`` given, if any.

    Examples
    --------
    >>> spec_from_options(None, "cluster/slurm.yaml")
    'cluster/slurm.yaml'
    >>> spec_from_options(None, None) is None
    True
    """
    if scheduler is not None and cluster is not None:
        raise InputValueError(
            f"--scheduler {scheduler} and --cluster {cluster} both say where to run; "
            f"give one of them"
        )
    return cluster if cluster is not None else scheduler


def _config_of(spec: str | Path | ClusterConfig | None) -> ClusterConfig | str:
    """The config ``spec`` names; a scheduler address stays a string."""
    if spec is None:
        return LocalConfig(kind="local")
    if isinstance(spec, Path):
        return read_cluster_config(spec)
    if not isinstance(spec, str):
        return spec
    if spec.lower().endswith(_CONFIG_SUFFIXES) or ("://" not in spec and Path(spec).is_file()):
        return read_cluster_config(spec)
    if "://" not in spec and ":" not in spec:
        raise InputValueError(
            f"scheduler address {spec!r} is not an address or a cluster config file; "
            f"expected e.g. tcp://host:8786 or cluster/local.yaml"
        )
    return spec


def _client_of(address: str, **options: Any) -> Client:
    """A client of the running scheduler at ``address``."""
    try:
        return Client(address, **options)
    except OSError as error:
        raise ClusterConnectionError(
            f"cannot connect to the scheduler at {address}: {error}; check that it runs, "
            f"and that address and security match how it was started (cluster/README.md)"
        ) from error


def _security(config: RemoteConfig) -> Security | None:
    tls = config.security
    if tls is None:
        return None
    return Security(
        tls_ca_file=str(tls.ca_file),
        tls_client_cert=str(tls.cert),
        tls_client_key=str(tls.key) if tls.key is not None else None,
        require_encryption=tls.require_encryption,
    )


class _OwningClient(Client):
    """A client of a cluster started for it, which it closes when it closes."""

    def __init__(self, cluster: Any) -> None:
        self._owned_cluster = cluster
        try:
            super().__init__(cluster)
        except BaseException:
            self._close_cluster()
            raise

    def close(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().close(*args, **kwargs)
        finally:
            self._close_cluster()

    def _close_cluster(self) -> None:
        cluster = self.__dict__.pop("_owned_cluster", None)
        if cluster is not None:
            cluster.close()
