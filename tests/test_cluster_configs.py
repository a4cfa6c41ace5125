"""The cluster configs in cluster/, their schema, and ``connect`` on real clusters.

Batch-queue and Kubernetes configs are checked through what they would submit
(the job script made by dask-jobqueue, the manifest made by dask-kubernetes);
local and remote configs connect to real schedulers and worker processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import yaml
from scipy import ndimage
from skimage.filters import threshold_otsu

import pipeline
from pipeline.cluster import (
    KINDS,
    ClusterConfigError,
    ClusterConnectionError,
    LocalConfig,
    MissingExtraError,
    RemoteConfig,
    SlurmConfig,
    connect,
    job_script,
    kubernetes_manifest,
    read_cluster_config,
    validate_cluster_config,
)
from pipeline.data import sample_path
from pipeline.io._zarr import open_label_array
from tests.conftest import assert_same_partition, dask_processes, run_segpipe

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
MAKE_CERTS = CLUSTER / "tls" / "make-certs.py"
LANDSAT = sample_path("L7_ETMs.tif")
CONFIGS = sorted(CLUSTER.glob("*.yaml"))


# Helpers shared with test_cluster_tls.py ---------------------------------------------


def make_certs(folder: Path) -> Path:
    """Certificates made by cluster/tls/make-certs.py, run as a user would."""
    done = subprocess.run(
        [sys.executable, str(MAKE_CERTS), str(folder)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return folder


def landsat_workflow(output: Path) -> pipeline.Workflow:
    """Band 5 of the Landsat sample: Otsu threshold and labels, in chunks of 128."""
    return pipeline.Workflow(
        source={"path": str(LANDSAT), "bands": [5]},
        steps=[{"threshold": {"method": "otsu"}}, "label"],
        output=str(output),
        chunks=128,
    )


def landsat_reference() -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label`` of the whole thresholded band."""
    with rasterio.open(LANDSAT) as src:
        band = src.read(5)
    labels, count = ndimage.label(band > threshold_otsu(band))
    return labels, int(count)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# The shipped configs --------------------------------------------------------------------


def test_the_configs_cover_every_kind() -> None:
    kinds = {yaml.safe_load(path.read_text())["kind"] for path in CONFIGS}
    assert kinds == set(KINDS)
    assert {p.name for p in CONFIGS} >= {
        "local.yaml",
        "remote.yaml",
        "slurm.yaml",
        "pbs.yaml",
        "kubernetes.yaml",
        "tls.yaml",
    }


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name != "tls.yaml"], ids=lambda p: p.name)
def test_every_config_validates(path: Path) -> None:
    config = read_cluster_config(path)
    assert config.kind == yaml.safe_load(path.read_text())["kind"]


def test_the_tls_config_validates_next_to_its_certificates(tmp_path: Path) -> None:
    shutil.copy(CLUSTER / "tls.yaml", tmp_path / "tls.yaml")
    with pytest.raises(ClusterConfigError, match=r"security\.ca_file: no file at .*ca\.pem"):
        read_cluster_config(tmp_path / "tls.yaml")
    make_certs(tmp_path / "tls" / "certs")
    config = read_cluster_config(tmp_path / "tls.yaml")
    assert isinstance(config, RemoteConfig) and config.security is not None
    assert config.url.startswith("tls://")
    assert config.security.ca_file == tmp_path / "tls" / "certs" / "ca.pem"
    assert config.security.key == tmp_path / "tls" / "certs" / "client-key.pem"
    assert config.security.require_encryption


# Bad configs: the message names the file, the field, the value and what is allowed --------

BAD = {
    "unknown kind": (
        "kind: spark\n",
        ["kind: expected one of local, remote, slurm, pbs, kubernetes; got kind 'spark'"],
    ),
    "no kind": ("n_workers: 2\n", ["kind: expected one of local, remote", "got no kind"]),
    "unknown field": (
        "kind: local\nworkers: 2\n",
        [
            "workers: unknown field",
            "expected one of kind, n_workers, threads_per_worker, memory_limit",
        ],
    ),
    "unknown nested field": (
        "kind: remote\naddress: tls://h:8786\nsecurity: {certfile: a.pem}\n",
        [
            "security.certfile: unknown field",
            "expected one of ca_file, cert, key, require_encryption",
        ],
    ),
    "negative workers": (
        "kind: local\nn_workers: -2\n",
        ["n_workers: Input should be greater than or equal to 1 (got -2)"],
    ),
    "missing address": ("kind: remote\ntimeout: 5\n", ["address: required field is missing"]),
    "not an address": ("kind: remote\naddress: scheduler\n", ["address: 'scheduler' is not a"]),
    "tcp with security": (
        "kind: remote\naddress: tcp://h:8786\n"
        "security: {ca_file: made.pem, cert: made.pem, key: made.pem}\n",
        ["unencrypted but security is set; use tls://h:8786"],
    ),
    "missing tls file": (
        "kind: remote\naddress: tls://h:8786\n"
        "security: {ca_file: ca.pem, cert: c.pem, key: k.pem}\n",
        ["security.ca_file: no file at {folder}/ca.pem", "make-certs.py", "security.key"],
    ),
    "neither scale nor adapt": (
        "kind: slurm\ncores: 4\nmemory: 8GB\n",
        ["give either scale: {jobs: N} or adapt"],
    ),
    "walltime read as a number": (
        "kind: slurm\ncores: 4\nmemory: 8GB\nwalltime: 12:00:00\nscale: {jobs: 1}\n",
        ['walltime: walltime must be quoted in YAML, e.g. walltime: "02:00:00"'],
    ),
    "memory": (
        "kind: pbs\ncores: 4\nmemory: lots\nscale: {jobs: 1}\n",
        ["memory: 'lots' is not an amount of memory; expected e.g. 4GB"],
    ),
    "more processes than cores": (
        "kind: slurm\ncores: 2\nprocesses: 4\nmemory: 8GB\nscale: {jobs: 1}\n",
        ["processes 4 is more than cores 2"],
    ),
    "zero jobs": (
        "kind: slurm\ncores: 2\nmemory: 8GB\nscale: {jobs: 0}\n",
        ["scale.jobs: Input should be greater than or equal to 1 (got 0)"],
    ),
    "adapt upside down": (
        "kind: pbs\ncores: 2\nmemory: 8GB\nadapt: {minimum_jobs: 5, maximum_jobs: 2}\n",
        ["adapt: minimum_jobs 5 is more than maximum_jobs 2"],
    ),
    "kubernetes name": (
        "kind: kubernetes\nname: Seg_Pipe\nimage: segpipe:1\n",
        ["name: 'Seg_Pipe' is not a Kubernetes name"],
    ),
    "kubernetes env number": (
        "kind: kubernetes\nimage: segpipe:1\nenv: {OMP_NUM_THREADS: 1}\n",
        ["env.OMP_NUM_THREADS: Input should be a valid string (got 1)"],
    ),
    "not a mapping": ("- local\n", ["a cluster config is a mapping with a kind"]),
    "not yaml": ("kind: [local\n", ["not valid YAML"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_configs_name_the_file_and_the_field(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = _write(tmp_path, "bad.yaml", text)
    _write(tmp_path, "made.pem", "")
    with pytest.raises(ClusterConfigError) as caught:
        read_cluster_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part.replace("{folder}", str(tmp_path)) in message
    assert isinstance(caught.value, pipeline.InputValueError)
    assert isinstance(caught.value, ValueError)


def test_an_unreadable_config_is_a_read_error(tmp_path: Path) -> None:
    with pytest.raises(pipeline.ReadError, match=r"missing\.yaml: cannot read the cluster config"):
        read_cluster_config(tmp_path / "missing.yaml")
    with pytest.raises(pipeline.ReadError, match=r"missing\.yaml"):
        connect(str(tmp_path / "missing.yaml"))


def test_relative_paths_are_taken_from_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_certs(tmp_path / "site" / "certs")
    path = _write(
        tmp_path / "site",
        "tls.yaml",
        "kind: remote\naddress: 10.0.0.5:8786\n"
        "security: {ca_file: certs/ca.pem, cert: certs/client.pem, key: certs/client-key.pem}\n",
    )
    slurm = _write(
        tmp_path / "site",
        "slurm.yaml",
        "kind: slurm\ncores: 2\nmemory: 4GB\nlocal_directory: scratch\nscale: {jobs: 1}\n",
    )
    monkeypatch.chdir(tmp_path)  # elsewhere than the configs
    config = read_cluster_config(path)
    assert isinstance(config, RemoteConfig) and config.security is not None
    assert config.security.cert == tmp_path / "site" / "certs" / "client.pem"
    assert config.url == "tls://10.0.0.5:8786"  # security implies TLS
    slurm_config = read_cluster_config(slurm)
    assert isinstance(slurm_config, SlurmConfig)
    assert slurm_config.local_directory == str(tmp_path / "site" / "scratch")


# What the batch-queue and Kubernetes configs submit -------------------------------------


def test_slurm_config_makes_a_job_script() -> None:
    script = job_script(CLUSTER / "slurm.yaml")
    config = read_cluster_config(CLUSTER / "slurm.yaml")
    assert isinstance(config, SlurmConfig)
    lines = script.splitlines()
    for directive in (
        "#SBATCH -p normal",
        "#SBATCH -A my-project",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=30G",  # 32GB, in the GiB SLURM counts in
        "#SBATCH -t 02:00:00",
        "#SBATCH --output=segpipe-worker-%j.out",
        "export OMP_NUM_THREADS=1",
    ):
        assert directive in lines
    (command,) = [line for line in lines if "dask_worker" in line]
    assert command.startswith(f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:")
    assert "--nworkers 4" in command and "--nthreads 2" in command
    assert "--local-directory /tmp" in command


def test_pbs_config_makes_a_job_script() -> None:
    script = job_script(read_cluster_config(CLUSTER / "pbs.yaml"))
    lines = script.splitlines()
    for directive in (
        "#PBS -q workq",
        "#PBS -A my-project",
        "#PBS -l select=1:ncpus=16:mem=60GB",
        "#PBS -l walltime=04:00:00",
        "#PBS -j oe",
        "cd $PBS_O_WORKDIR",
    ):
        assert directive in lines
    (command,) = [line for line in lines if "dask_worker" in line]
    assert "-m distributed.cli.dask_worker" in command and "--nworkers 8" in command
    assert "--local-directory $TMPDIR" in command


def test_the_network_interface_goes_to_the_workers() -> None:
    config = validate_cluster_config(
        {"kind": "slurm", "cores": 2, "memory": "4GB", "interface": "lo", "scale": {"jobs": 1}}
    )
    assert "--interface lo" in job_script(config)


def test_job_script_refuses_another_kind() -> None:
    with pytest.raises(ClusterConfigError, match=r"local\.yaml: kind: expected slurm or pbs"):
        job_script(CLUSTER / "local.yaml")


def test_kubernetes_config_makes_a_manifest() -> None:
    manifest = kubernetes_manifest(CLUSTER / "kubernetes.yaml")
    assert manifest["kind"] == "DaskCluster"
    assert manifest["metadata"] == {"name": "segpipe", "namespace": "segpipe"}
    worker, scheduler = manifest["spec"]["worker"], manifest["spec"]["scheduler"]
    assert worker["replicas"] == 4
    resources = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}
    for pod, command in ((worker, ["dask", "worker"]), (scheduler, ["dask", "scheduler"])):
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "registry.example.org/segpipe:0.1.0"
        assert container["resources"] == resources
        assert container["env"] == [{"name": "OMP_NUM_THREADS", "value": "1"}]
        assert container["args"][:2] == command
    text = yaml.safe_dump(manifest)  # what kubectl apply gets: plain YAML, no anchors
    assert "&id" not in text and yaml.safe_load(text) == manifest


def test_docker_compose_builds_the_scheduler_and_workers_from_the_project() -> None:
    compose = yaml.safe_load((CLUSTER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"scheduler", "worker"}
    for service in services.values():
        build = service["build"]
        assert (CLUSTER / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == CLUSTER / "Dockerfile"
    assert services["scheduler"]["command"][:2] == ["dask", "scheduler"]
    assert {"127.0.0.1:8786:8786", "127.0.0.1:8787:8787"} <= set(services["scheduler"]["ports"])
    assert services["worker"]["command"][:3] == ["dask", "worker", "tcp://scheduler:8786"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["worker"]["depends_on"]["scheduler"]["condition"] == "service_healthy"
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert 'pip install ".[cluster]"' in dockerfile
    for copied in ("pyproject.toml", "README.md", "pipeline"):
        assert copied in dockerfile and (ROOT / copied).exists()


# connect ------------------------------------------------------------------------------


def test_connect_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(pipeline.InputValueError, match=r"expected e\.g\. tcp://host:8786"):
        connect("not an address")
    with pytest.raises(pipeline.InputValueError, match="embedded cluster only"):
        connect("tcp://127.0.0.1:8786", n_workers=2)
    with pytest.raises(pipeline.InputValueError, match="sized by scale or adapt in its file"):
        connect(CLUSTER / "slurm.yaml", n_workers=2)  # refused before any scheduler starts
    with pytest.raises(pipeline.InputValueError, match="at least 1"):
        connect(CLUSTER / "local.yaml", n_workers=0)
    with pytest.raises(ClusterConfigError, match=r"bad\.yaml: n_workers"):
        connect(_write(tmp_path, "bad.yaml", "kind: local\nn_workers: 0\n"))


def test_connect_names_a_scheduler_it_cannot_reach(tmp_path: Path) -> None:
    nobody = _write(tmp_path, "nobody.yaml", "kind: remote\naddress: 127.0.0.1:1\ntimeout: 1\n")
    with pytest.raises(ClusterConnectionError, match="cannot connect to the scheduler at tcp://"):
        connect(nobody)


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'segpipe\[cluster\]'") as caught:
        job_script(CLUSTER / "slurm.yaml")
    assert "a slurm cluster needs dask-jobqueue" in str(caught.value)
    assert isinstance(caught.value, ImportError)
    with pytest.raises(MissingExtraError, match="a kubernetes cluster needs dask-kubernetes"):
        kubernetes_manifest(CLUSTER / "kubernetes.yaml")


def test_a_batch_queue_cluster_closes_with_its_client() -> None:
    # adapt from 0 jobs submits nothing while idle, so no queue is needed
    config = validate_cluster_config(
        {
            "kind": "slurm",
            "cores": 1,
            "memory": "1GB",
            "dashboard_address": ":0",
            "adapt": {"minimum_jobs": 0, "maximum_jobs": 1},
        }
    )
    with connect(config) as client:
        cluster = client.cluster
        assert type(cluster).__name__ == "SLURMCluster"
        assert client.scheduler_info()["workers"] == {}
        assert "#SBATCH --cpus-per-task=1" in cluster.job_script()
    assert cluster.status.name == "closed"


def _check_client(client: object, workers: int) -> None:
    from distributed import Client

    assert isinstance(client, Client)
    assert len(client.scheduler_info()["workers"]) == workers
    assert client.submit(sum, [1, 2, 3]).result() == 6
    assert int(da.ones((64, 64), chunks=32).sum().compute()) == 64 * 64
    assert set(client.run(os.getpid).values()) != {os.getpid()}  # worker processes


@pytest.mark.cluster
def test_connect_without_a_spec_starts_an_embedded_cluster() -> None:
    with connect(n_workers=1) as client:
        _check_client(client, 1)
    assert client.status == "closed"


@pytest.mark.cluster
def test_connect_with_the_local_config(tmp_path: Path) -> None:
    with connect(CLUSTER / "local.yaml", n_workers=1) as client:
        _check_client(client, 1)
    config = validate_cluster_config({"kind": "local", "n_workers": 1, "memory_limit": "1GB"})
    assert isinstance(config, LocalConfig)
    with connect(config) as client:
        (worker,) = client.scheduler_info()["workers"].values()
        assert worker["memory_limit"] == 10**9


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[str]:
    """A real ``dask scheduler`` with one ``dask worker``, both subprocesses."""
    with dask_processes(tmp_path / "dask", n_workers=1) as cluster:
        yield cluster.address


@pytest.mark.cluster
def test_connect_reaches_a_running_scheduler(scheduler: str, tmp_path: Path) -> None:
    assert scheduler.startswith("tcp://127.0.0.1:")
    with connect(scheduler) as client:
        client.wait_for_workers(1, timeout=60)
        _check_client(client, 1)
    host_port = scheduler.removeprefix("tcp://")
    remote = _write(tmp_path, "remote.yaml", f"kind: remote\naddress: {host_port}\ntimeout: 10\n")
    with connect(str(remote)) as client:
        assert client.scheduler.address == scheduler
        assert client.submit(pow, 2, 10).result() == 1024


# The command ---------------------------------------------------------------------------


@pytest.mark.cluster
def test_segpipe_run_with_a_cluster_file(tmp_path: Path) -> None:
    workflow = _write(
        tmp_path,
        "workflow.yaml",
        f"source: {{path: {LANDSAT}, bands: [5]}}\nchunks: 128\n"
        "steps: [{threshold: {method: otsu}}, label]\noutput: out/labels.zarr\n",
    )
    done = run_segpipe("run", str(workflow), "--cluster", str(CLUSTER / "local.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"cluster: {min(os.cpu_count() or 1, 8)} workers" in done.stdout
    reference, count = landsat_reference()
    assert f"done: {count} objects" in done.stdout
    assert_same_partition(
        np.asarray(open_label_array(tmp_path / "out" / "labels.zarr")[...]), reference
    )


def test_segpipe_run_refuses_a_scheduler_and_a_cluster_file(tmp_path: Path) -> None:
    workflow = _write(
        tmp_path,
        "workflow.yaml",
        f"source: {LANDSAT}\nsteps: [{{threshold: {{}}}}, label]\noutput: out.zarr\n",
    )
    both = run_segpipe(
        "run",
        str(workflow),
        "--scheduler",
        "tcp://127.0.0.1:1",
        "--cluster",
        "c.yaml",
        cwd=tmp_path,
    )
    assert both.returncode == 1
    assert "give one of them" in both.stderr and "Traceback" not in both.stderr
    bad = _write(tmp_path, "bad.yaml", "kind: local\nthreads: 2\n")
    refused = run_segpipe("run", str(workflow), "--cluster", str(bad), cwd=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{bad}: threads: unknown field" in refused.stderr
    assert "cluster:" not in refused.stdout  # nothing started
    helped = run_segpipe("demo", "--help", cwd=tmp_path)
    assert "--cluster FILE" in helped.stdout
