"""A real cluster that talks TLS only: certificates from cluster/tls/make-certs.py, a
``dask scheduler`` and a ``dask worker`` subprocess requiring encryption, and clients
with no certificate, with one from another CA, and with the right one (cluster/tls.yaml).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import yaml

from pipeline.cluster import ClusterConnectionError, connect
from pipeline.errors import PipelineError
from pipeline.io._zarr import open_label_array
from tests.conftest import assert_same_partition, dask_processes
from tests.test_cluster_configs import (
    CLUSTER,
    landsat_reference,
    landsat_workflow,
    make_certs,
)

ENCRYPTED = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}


def _tls_args(certs: Path, role: str) -> list[str]:
    return [
        "--tls-ca-file",
        str(certs / "ca.pem"),
        "--tls-cert",
        str(certs / f"{role}.pem"),
        "--tls-key",
        str(certs / f"{role}-key.pem"),
    ]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A TLS-only scheduler and worker; yields the address and the folder of the
    certificates (in ``tls/certs``, where cluster/tls.yaml expects them)."""
    folder = tmp_path_factory.mktemp("tls")
    certs = make_certs(folder / "tls" / "certs")
    with dask_processes(
        folder / "dask",
        n_workers=1,
        scheduler_args=["--protocol", "tls", *_tls_args(certs, "scheduler")],
        worker_args=_tls_args(certs, "worker"),
        env=ENCRYPTED,
        wait=False,  # a plain client could not join; the tests' TLS client waits
    ) as cluster:
        yield cluster.address, folder


def _config(folder: Path, name: str, address: str, certs: str | None) -> Path:
    """cluster/tls.yaml pointed at ``address`` and the certificates in ``certs``
    (relative to ``folder``), or a plain config without security."""
    config = yaml.safe_load((CLUSTER / "tls.yaml").read_text())
    config.update(address=address, timeout=3)
    if certs is None:
        del config["security"]
    else:
        config["security"] = {
            key: value.replace("tls/certs", certs) if isinstance(value, str) else value
            for key, value in config["security"].items()
        }
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.cluster
def test_a_client_without_tls_is_refused(tls_cluster: tuple[str, Path]) -> None:
    address, folder = tls_cluster
    assert address.startswith("tls://127.0.0.1:")
    plain = _config(folder, "plain.yaml", address.replace("tls://", "tcp://"), certs=None)
    with pytest.raises(ClusterConnectionError, match="cannot connect to the scheduler at tcp://"):
        connect(plain)


@pytest.mark.cluster
def test_a_client_with_a_certificate_of_another_ca_is_refused(
    tls_cluster: tuple[str, Path],
) -> None:
    address, folder = tls_cluster
    make_certs(folder / "other")
    stranger = _config(folder, "stranger.yaml", address, certs="other")
    with pytest.raises(ClusterConnectionError, match="TLS certificate does not match") as refused:
        connect(stranger)
    assert isinstance(refused.value, PipelineError) and isinstance(refused.value, OSError)


@pytest.mark.cluster
def test_a_client_with_the_right_certificate_computes_and_runs_a_workflow(
    tls_cluster: tuple[str, Path],
) -> None:
    address, folder = tls_cluster
    trusted = _config(folder, "tls.yaml", address, certs="tls/certs")
    output = folder / "out" / "labels.zarr"
    with connect(trusted) as client:
        client.wait_for_workers(1, timeout=60)
        assert client.scheduler.address == address
        (worker,) = client.scheduler_info()["workers"]
        assert worker.startswith("tls://127.0.0.1:")
        assert int(da.arange(1000, chunks=100).sum().compute()) == 999 * 1000 // 2

        result = landsat_workflow(output).run(client)

    reference, count = landsat_reference()
    assert result.num == count
    assert_same_partition(np.asarray(open_label_array(output)[...]), reference)
