"""Sources on object storage and web servers: a real S3-compatible server (moto) and a
real HTTP server honouring Range requests, both on 127.0.0.1, read locally and by the
worker processes of a real cluster."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from scipy import ndimage
from skimage.filters import threshold_otsu

from pipeline import ReadError, Workflow, open_image
from pipeline.data import sample_path
from pipeline.io._zarr import open_label_array
from tests.conftest import SEGPIPE, assert_same_partition, subprocess_env
from tests.servers import S3, free_port, http_server, s3_server

pytestmark = pytest.mark.slow

SCENE = sample_path("L7_ETMs.tif")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Landsat scene as a GeoTIFF and band 5 as a zarr array, in one folder."""
    folder = tmp_path_factory.mktemp("remote")
    (folder / "l7").mkdir()
    shutil.copy(SCENE, folder / "l7" / "scene.tif")
    with rasterio.open(SCENE) as src:
        band = src.read(5)
    _stac(folder / "stac")
    array = zarr.create_array(
        folder / "l7" / "b5.zarr", shape=band.shape, chunks=(128, 128), dtype=band.dtype
    )
    array[...] = band
    return folder


def _stac(folder: Path) -> None:
    """Two STAC items, the west and east halves of the scene (overlapping), each with
    band 5 as asset B5 in its own file, hrefs relative to ``items.json``."""
    folder.mkdir()
    features = []
    with rasterio.open(SCENE) as src:
        for name, cols in (("west", (0, 200)), ("east", (150, 349))):
            window = Window(cols[0], 0, cols[1] - cols[0], src.height)
            profile = {
                **src.profile,
                "count": 1,
                "width": window.width,
                "transform": src.transform @ Affine.translation(cols[0], 0),
            }
            with rasterio.open(folder / f"{name}_B5.tif", "w", **profile) as dst:
                dst.write(src.read([5], window=window))
            box = list(transform_bounds(src.crs, "EPSG:4326", *src.bounds))
            features.append(
                {
                    "type": "Feature",
                    "stac_version": "1.0.0",
                    "id": name,
                    "geometry": {"type": "Polygon", "coordinates": [[box[:2], box[2:], box[:2]]]},
                    "bbox": box,
                    "properties": {"datetime": "2024-01-01T00:00:00Z"},
                    "links": [],
                    "assets": {"B5": {"href": f"{name}_B5.tif", "type": "image/tiff"}},
                }
            )
    (folder / "items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )


@pytest.fixture(scope="module")
def s3(files: Path) -> Iterator[S3]:
    """The folder uploaded to bucket ``scenes``; the AWS variables point at the server."""
    with s3_server() as server, pytest.MonkeyPatch.context() as patch:
        for name, value in server.environ().items():
            patch.setenv(name, value)
        client = server.client()
        client.create_bucket(Bucket="scenes")
        for path in sorted(files.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), "scenes", path.relative_to(files).as_posix())
        yield server


@pytest.fixture(scope="module")
def http(files: Path) -> Iterator[str]:
    with http_server(files) as url:
        yield url


@pytest.fixture(scope="module")
def cluster(s3: S3) -> Iterator[object]:
    """Worker processes started once the AWS variables are set, as on a real deployment."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
        ) as local,
        Client(local) as client,
    ):
        yield client


def _local(files: Path, name: str) -> str:
    return str(files / "l7" / name)


@pytest.mark.parametrize("name", ["scene.tif", "b5.zarr"])
def test_the_same_pixels_and_georeference_from_disk_s3_and_http(
    files: Path, s3: S3, http: str, name: str
) -> None:
    local = open_image(_local(files, name))
    for url in (f"s3://scenes/l7/{name}", f"{http}/l7/{name}"):
        remote = open_image(url)
        assert remote.source == url
        assert (remote.shape, remote.dtype, remote.crs, remote.transform) == (
            local.shape,
            local.dtype,
            local.crs,
            local.transform,
        )
        np.testing.assert_array_equal(
            remote.data.compute(scheduler="threads"), local.data.compute()
        )


def test_a_workflow_labels_the_same_from_disk_s3_and_http(
    files: Path, s3: S3, http: str, cluster: object, tmp_path: Path
) -> None:
    steps = [
        {"threshold": {"method": "otsu", "foreground": "below"}},
        {"label": {"connectivity": 2}},
    ]
    sources = {
        "local geotiff": {"path": _local(files, "scene.tif"), "bands": [5]},
        "s3 geotiff": {"path": "s3://scenes/l7/scene.tif", "bands": [5]},
        "http geotiff": {"path": f"{http}/l7/scene.tif", "bands": [5]},
        "local zarr": _local(files, "b5.zarr"),
        "s3 zarr": "s3://scenes/l7/b5.zarr",
        "http zarr": f"{http}/l7/b5.zarr",
    }
    labels = {}
    for number, (kind, source) in enumerate(sources.items()):
        flow = Workflow(source, steps, str(tmp_path / f"out{number}.zarr"), chunks=100)
        result = flow.run(cluster)
        labels[kind] = open_label_array(result.outputs["labels"])[...]
    with rasterio.open(SCENE) as src:
        band = src.read(5)
    reference, count = ndimage.label(band <= threshold_otsu(band), np.ones((3, 3)))
    assert count > 100
    for kind, found in labels.items():  # byte for byte what the same file on disk gives
        np.testing.assert_array_equal(found, labels[f"local {kind.split()[-1]}"], err_msg=kind)
        assert_same_partition(found, reference)


def test_a_stac_collection_from_s3_and_http_is_the_local_one(
    files: Path, s3: S3, http: str
) -> None:
    with rasterio.open(SCENE) as src:
        band = src.read([5])
    for source in (
        str(files / "stac" / "items.json"),
        "s3://scenes/stac/items.json",
        f"{http}/stac/items.json",
    ):
        image = open_image(source, assets=["B5"], chunks=100)
        assert [scene.name for scene in image.mosaic.scenes] == ["west", "east"]
        np.testing.assert_array_equal(image.data.compute(scheduler="threads"), band)


def test_segpipe_run_refuses_a_missing_object_before_any_cluster_starts(
    s3: S3, tmp_path: Path
) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "source: s3://scenes/l7/gone.tif\nsteps: [threshold, label]\n"
        f"output: {tmp_path / 'o.zarr'}\n"
    )
    done = subprocess.run(
        [*SEGPIPE, "run", str(path)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and "cluster:" not in done.stdout
    assert done.stderr.startswith(
        "segpipe: error: s3://scenes/l7/gone.tif: not found on the server"
    )


def test_a_url_in_a_workflow_file_is_kept_as_a_url(files: Path, s3: S3, tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "source: s3://scenes/l7/b5.zarr\nsteps: [threshold, label]\noutput: out/labels.zarr\n"
    )
    flow = Workflow.from_yaml(path)
    assert flow.source_path() == "s3://scenes/l7/b5.zarr"
    image = flow.spec.source.open(flow.base, None)
    assert image.source == "s3://scenes/l7/b5.zarr" and image.shape == (352, 349)


@pytest.mark.parametrize("name", ["missing.tif", "missing.json"])
def test_a_missing_object_is_named_not_found(s3: S3, name: str) -> None:
    url = f"s3://scenes/l7/{name}"
    with pytest.raises(
        ReadError, match=rf"^{url}: not found on the server; check the URL \(bucket 'scenes'"
    ):
        open_image(url)


def test_a_missing_zarr_store_names_the_url(s3: S3) -> None:
    with pytest.raises(
        ReadError, match=r"^s3://scenes/l7/nothing\.zarr: no zarr array or group there"
    ):
        open_image("s3://scenes/l7/nothing.zarr")


def _inspect(url: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """``segpipe inspect URL`` in its own process, with these AWS variables."""
    return subprocess.run(
        [*SEGPIPE, "inspect", url],
        env={**subprocess_env(), **environ},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_wrong_keys_are_access_denied(s3: S3) -> None:
    done = _inspect("s3://scenes/l7/scene.tif", AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert done.returncode == 1, done.stderr
    assert re.match(
        r"segpipe: error: s3://scenes/l7/scene\.tif: access denied .*AWS_ACCESS_KEY_ID", done.stderr
    ), done.stderr


def test_web_errors_name_the_url(http: str) -> None:
    with pytest.raises(ReadError, match=rf"^{http}/l7/missing.tif: not found on the server"):
        open_image(f"{http}/l7/missing.tif")
    with pytest.raises(ReadError, match=rf"^{http}/private/scene.tif: access denied"):
        open_image(f"{http}/private/scene.tif")


def test_an_endpoint_that_does_not_answer_is_named() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    done = _inspect(
        "s3://scenes/a.tif",
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="a",
        AWS_SECRET_ACCESS_KEY="b",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
    )
    assert done.returncode == 1, done.stderr
    assert re.match(
        rf"segpipe: error: s3://scenes/a\.tif: cannot be reached .*endpoint \({endpoint}\)",
        done.stderr,
    ), done.stderr
