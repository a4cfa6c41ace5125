"""Batch-queue and Kubernetes clusters built from a config, and what they would submit.

dask-jobqueue and dask-kubernetes are imported only here and only when used;
they come with ``pip install segpipe[cluster]``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from pydantic import BaseModel

from ..errors import PipelineError
from ._config import ClusterConfigError, read_cluster_config
from ._kinds import JobQueueConfig, KubernetesConfig, PBSConfig, SlurmConfig

__all__ = [
    "MissingExtraError",
    "job_script",
    "jobqueue_cluster",
    "kubernetes_cluster",
    "kubernetes_manifest",
]

_Config = TypeVar("_Config", bound=BaseModel)


class MissingExtraError(PipelineError, ImportError):
    """A cluster kind needs a package of the ``cluster`` extra that is not installed."""


def _extra(module: str, kind: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0].replace("_", "-")
        raise MissingExtraError(
            f"a {kind} cluster needs {package}, which is not installed; "
            f"install it with: pip install 'segpipe[cluster]'"
        ) from None


def jobqueue_cluster(config: JobQueueConfig, *, scheduler_host: str | None = None) -> Any:
    """The ``SLURMCluster`` or ``PBSCluster`` of ``config``, with no jobs submitted yet.

    Its scheduler runs in this process, on ``interface`` if the config names one
    (else on the host's default address), or on ``scheduler_host``.
    """
    jobqueue = _extra("dask_jobqueue", config.kind)
    if isinstance(config, SlurmConfig):
        cls = jobqueue.SLURMCluster
    elif isinstance(config, PBSConfig):
        cls = jobqueue.PBSCluster
    else:
        raise TypeError(f"not a batch-queue config: {type(config).__name__}; use slurm or pbs")
    scheduler_options: dict[str, Any] = {"dashboard_address": config.dashboard_address}
    if scheduler_host is not None:
        scheduler_options = {"host": scheduler_host, "dashboard_address": ":0"}
    return cls(
        queue=config.queue,
        account=config.account,
        cores=config.cores,
        memory=config.memory,
        processes=config.processes,
        walltime=config.walltime,
        job_extra_directives=list(config.job_extra_directives),
        job_script_prologue=list(config.job_script_prologue),
        local_directory=config.local_directory,
        interface=config.interface,
        scheduler_options=scheduler_options,
    )


def job_script(config: JobQueueConfig | str | Path) -> str:
    """The batch script one job of a SLURM or PBS config would run.

    It is made by dask-jobqueue itself, from a cluster whose scheduler listens on
    127.0.0.1 and which is closed again without submitting anything, so no queue
    is needed; the scheduler address in the script is therefore a local one.

    Parameters
    ----------
    config
        A ``SlurmConfig`` or ``PBSConfig``, or the path of its YAML file.

    Returns
    -------
    str
        The script: ``#SBATCH``/``#PBS`` directives, the prologue and the
        ``python -m distributed.cli.dask_worker`` command.

    Raises
    ------
    ClusterConfigError
        The file is not a valid config, or not a slurm or pbs one.
    MissingExtraError
        dask-jobqueue is not installed.

    Examples
    --------
    >>> from pipeline.cluster import validate_cluster_config
    >>> config = validate_cluster_config(
    ...     {"kind": "slurm", "queue": "normal", "cores": 4, "memory": "16GB",
    ...      "walltime": "02:00:00", "scale": {"jobs": 2}}
    ... )
    >>> print("\\n".join(x for x in job_script(config).splitlines() if x.startswith("#SBATCH")))
    #SBATCH -J dask-worker
    #SBATCH -p normal
    #SBATCH -n 1
    #SBATCH --cpus-per-task=4
    #SBATCH --mem=15G
    #SBATCH -t 02:00:00
    """
    cluster = jobqueue_cluster(
        _as_config(config, JobQueueConfig, "slurm or pbs"), scheduler_host="127.0.0.1"
    )
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


def kubernetes_manifest(config: KubernetesConfig | str | Path) -> dict[str, Any]:
    """The ``DaskCluster`` resource of a kubernetes config, as a dict.

    Made with ``dask_kubernetes.operator.make_cluster_spec``, without a
    Kubernetes API. The scheduler and workers are started with the ``dask``
    command (``dask scheduler``, ``dask worker``), which images built from
    ``cluster/Dockerfile`` have; ``namespace`` goes in the metadata.

    Parameters
    ----------
    config
        A ``KubernetesConfig``, or the path of its YAML file.

    Returns
    -------
    dict
        The manifest; ``kubectl apply`` takes it as YAML.

    Raises
    ------
    ClusterConfigError
        The file is not a valid config, or not a kubernetes one.
    MissingExtraError
        dask-kubernetes is not installed.

    Examples
    --------
    >>> from pipeline.cluster import validate_cluster_config
    >>> config = validate_cluster_config(
    ...     {"kind": "kubernetes", "image": "segpipe:0.1", "n_workers": 3, "namespace": "img"}
    ... )
    >>> manifest = kubernetes_manifest(config)
    >>> manifest["metadata"], manifest["spec"]["worker"]["replicas"]
    ({'name': 'segpipe', 'namespace': 'img'}, 3)
    """
    config = _as_config(config, KubernetesConfig, "kubernetes")
    operator = _extra("dask_kubernetes.operator", "kubernetes")
    resources = config.resources.model_dump(exclude_none=True) if config.resources else None
    manifest: dict[str, Any] = operator.make_cluster_spec(
        name=config.name,
        image=config.image,
        n_workers=config.n_workers,
        resources=resources,
        env=dict(config.env) or None,
        worker_command="dask worker",
    )
    manifest = json.loads(json.dumps(manifest))  # a tree: no parts shared by two places
    if config.namespace is not None:
        manifest["metadata"]["namespace"] = config.namespace
    # make_cluster_spec starts the scheduler with the old ``dask-scheduler`` script,
    # which distributed no longer installs.
    for container in manifest["spec"]["scheduler"]["spec"]["containers"]:
        if container.get("args", [])[:1] == ["dask-scheduler"]:
            container["args"] = ["dask", "scheduler", *container["args"][1:]]
    return manifest


def kubernetes_cluster(config: KubernetesConfig) -> Any:
    """A running ``KubeCluster`` of ``config`` (needs the operator in the cluster)."""
    operator = _extra("dask_kubernetes.operator", "kubernetes")
    return operator.KubeCluster(
        custom_cluster_spec=kubernetes_manifest(config), namespace=config.namespace
    )


def _as_config(config: _Config | str | Path, model: type[_Config], kinds: str) -> _Config:
    """``config``, read from its file if it is a path, checked to be a ``model``."""
    if not isinstance(config, str | Path):
        return config
    read = read_cluster_config(config)
    if not isinstance(read, model):
        raise ClusterConfigError(f"{config}: kind: expected {kinds}; got {read.kind!r}")
    return read
