"""Where the work runs: an embedded LocalCluster by default, a running scheduler,
or the cluster of a config file (local, remote with TLS, SLURM, PBS, Kubernetes).

The config files are described in ``cluster/README.md`` of the source tree.
"""

from ._config import ClusterConfigError, read_cluster_config, validate_cluster_config
from ._connect import ClusterConnectionError, connect, spec_from_options
from ._deploy import MissingExtraError, job_script, kubernetes_manifest
from ._kinds import (
    KINDS,
    ClusterConfig,
    JobQueueConfig,
    KubernetesConfig,
    LocalConfig,
    PBSConfig,
    RemoteConfig,
    SlurmConfig,
    TLSConfig,
)

__all__ = [
    "KINDS",
    "ClusterConfig",
    "ClusterConfigError",
    "ClusterConnectionError",
    "JobQueueConfig",
    "KubernetesConfig",
    "LocalConfig",
    "MissingExtraError",
    "PBSConfig",
    "RemoteConfig",
    "SlurmConfig",
    "TLSConfig",
    "connect",
    "job_script",
    "kubernetes_manifest",
    "read_cluster_config",
    "spec_from_options",
    "validate_cluster_config",
]
