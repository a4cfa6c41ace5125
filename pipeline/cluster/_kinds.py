"""The kinds of cluster config, one pydantic model each: what a file of that kind may say."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

__all__ = [
    "KINDS",
    "MODELS",
    "Adapt",
    "ClusterConfig",
    "JobQueueConfig",
    "KubernetesConfig",
    "LocalConfig",
    "PBSConfig",
    "RemoteConfig",
    "Resources",
    "Scale",
    "SlurmConfig",
    "TLSConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _resolve(value: str | Path, info: ValidationInfo) -> Path:
    """``value`` as a path, relative paths taken from the config file's folder."""
    path = Path(value).expanduser()
    base = (info.context or {}).get("base")
    return path if path.is_absolute() or base is None else Path(base) / path


def _check_bytes(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parse_bytes(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an amount of memory; expected e.g. 4GB") from None
    return value


class LocalConfig(_Strict):
    """An embedded ``distributed.LocalCluster`` of worker processes on this machine.

    ``n_workers`` ``None`` means one worker per core, at most 8.
    """

    kind: Literal["local"]
    n_workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str | int | None = "auto"
    dashboard_address: str | None = ":0"

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"memory_limit must not be negative; got {value}")
        return value if value == "auto" else _check_bytes(value)


class TLSConfig(_Strict):
    """The client side of TLS: the CA that signed the scheduler's certificate, and
    this client's own certificate and key, signed by a CA the scheduler trusts."""

    ca_file: Path
    cert: Path
    key: Path | None = None
    require_encryption: bool = True

    @field_validator("ca_file", "cert", "key", mode="before")
    @classmethod
    def _existing_file(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or not isinstance(value, str | Path):
            return value
        path = _resolve(value, info)
        if not path.is_file():
            raise ValueError(
                f"no file at {path} (relative paths are taken from the config's folder); "
                f"make certificates with cluster/tls/make-certs.py"
            )
        return path


_ADDRESS = re.compile(r"^(?:(?P<scheme>[a-z]+)://)?(?P<host>[^\s:/]+|\[[0-9a-fA-F:]+\]):\d+$")


class RemoteConfig(_Strict):
    """A scheduler that is already running, reached at ``address``, over TLS with
    ``security``; ``timeout`` is seconds to wait for the connection."""

    kind: Literal["remote"]
    address: str
    security: TLSConfig | None = None
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("address")
    @classmethod
    def _is_address(cls, value: str) -> str:
        match = _ADDRESS.match(value)
        if match is None or match["scheme"] not in (None, "tcp", "tls"):
            raise ValueError(
                f"{value!r} is not a scheduler address; expected tcp://host:8786, "
                f"tls://host:8786 or host:8786"
            )
        return value

    @model_validator(mode="after")
    def _tls_address(self) -> RemoteConfig:
        if self.security is not None and self.address.startswith("tcp://"):
            raise ValueError(
                f"address {self.address} is unencrypted but security is set; "
                f"use tls://{self.address.removeprefix('tcp://')}"
            )
        return self

    @property
    def url(self) -> str:
        """The address with its protocol: ``tls://`` when security is set."""
        if "://" in self.address:
            return self.address
        return f"{'tls' if self.security is not None else 'tcp'}://{self.address}"


class Scale(_Strict):
    """A fixed number of batch jobs."""

    jobs: int = Field(ge=1)


class Adapt(_Strict):
    """Between ``minimum_jobs`` and ``maximum_jobs`` batch jobs, following the load."""

    minimum_jobs: int = Field(default=0, ge=0)
    maximum_jobs: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Adapt:
        if self.minimum_jobs > self.maximum_jobs:
            raise ValueError(
                f"minimum_jobs {self.minimum_jobs} is more than maximum_jobs {self.maximum_jobs}"
            )
        return self


_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


class JobQueueConfig(_Strict):
    """Workers started as batch jobs by dask-jobqueue; each job runs ``processes``
    worker processes sharing ``cores`` and ``memory``. The scheduler runs in the
    submitting process (on the login node), its dashboard on ``dashboard_address``."""

    kind: Literal["slurm", "pbs"]
    queue: str | None = None
    account: str | None = None
    cores: int = Field(ge=1)
    memory: str
    processes: int = Field(default=1, ge=1)
    walltime: str | None = None
    job_extra_directives: list[str] = Field(default_factory=list)
    job_script_prologue: list[str] = Field(default_factory=list)
    local_directory: str | None = None
    interface: str | None = None
    dashboard_address: str | None = ":8787"
    scale: Scale | None = None
    adapt: Adapt | None = None

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return str(_check_bytes(value))

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime_text(cls, value: Any) -> Any:
        if isinstance(value, int):  # YAML reads 12:00:00 unquoted as 43200 (seconds)
            raise ValueError('walltime must be quoted in YAML, e.g. walltime: "02:00:00"')
        return value

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value: str | None) -> str | None:
        if value is not None and not _WALLTIME.match(value):
            raise ValueError(f"{value!r} is not a walltime; expected HH:MM:SS, e.g. 02:00:00")
        return value

    @field_validator("local_directory")
    @classmethod
    def _local_directory(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value.startswith("$"):  # e.g. $TMPDIR, expanded on the node
            return value
        return str(_resolve(value, info))

    @model_validator(mode="after")
    def _one_size(self) -> JobQueueConfig:
        if self.processes > self.cores:
            raise ValueError(
                f"processes {self.processes} is more than cores {self.cores}; "
                f"each worker process needs at least one core"
            )
        if (self.scale is None) == (self.adapt is None):
            raise ValueError(
                "give either scale: {jobs: N} or adapt: {minimum_jobs: M, maximum_jobs: N}"
            )
        return self


class SlurmConfig(JobQueueConfig):
    """Workers as SLURM jobs (``dask_jobqueue.SLURMCluster``)."""

    kind: Literal["slurm"]


class PBSConfig(JobQueueConfig):
    """Workers as PBS jobs (``dask_jobqueue.PBSCluster``)."""

    kind: Literal["pbs"]


class Resources(_Strict):
    """Kubernetes resource ``requests`` and ``limits``, e.g. ``{cpu: "2", memory: 8Gi}``."""

    requests: dict[str, str] | None = None
    limits: dict[str, str] | None = None


_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class KubernetesConfig(_Strict):
    """A ``DaskCluster`` of the dask-kubernetes operator: a scheduler pod and
    ``n_workers`` worker pods of ``image``."""

    kind: Literal["kubernetes"]
    name: str = Field(default="segpipe", max_length=63)
    namespace: str | None = Field(default=None, max_length=63)
    image: str
    n_workers: int = Field(default=2, ge=0)
    resources: Resources | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not _K8S_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes name; use lower-case letters, digits and '-'"
            )
        return value


ClusterConfig = LocalConfig | RemoteConfig | SlurmConfig | PBSConfig | KubernetesConfig

MODELS: dict[str, type[BaseModel]] = {
    "local": LocalConfig,
    "remote": RemoteConfig,
    "slurm": SlurmConfig,
    "pbs": PBSConfig,
    "kubernetes": KubernetesConfig,
}
KINDS = tuple(MODELS)
