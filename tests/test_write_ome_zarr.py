"""write_ome_zarr: an image and its labels as one NGFF 0.4 OME-Zarr group, whole or not at all."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
import zarr
from scipy import ndimage
from skimage.filters import threshold_otsu

import pipeline
from pipeline.data import sample_path
from pipeline.errors import InputValueError, UnsupportedInputError
from pipeline.io._image import Image
from pipeline.io._ome_zarr import write_ome_zarr

NUCLEI_SPACING = (0.29, 0.26, 0.26)  # z, y, x in micrometres (data/README.md)


@pytest.fixture(scope="module")
def landsat() -> np.ndarray:
    """The 6 bands of the bundled Landsat scene, 6 x 352 x 349 uint8."""
    with rasterio.open(sample_path("L7_ETMs.tif")) as source:
        return source.read()


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    """The bundled confocal nuclei volume, 60 x 256 x 256 uint16."""
    return tifffile.imread(sample_path("nuclei.tif"))


def label(pixels: np.ndarray) -> np.ndarray:
    """Objects above the Otsu threshold, as uint32 labels (the reference, whole array)."""
    return ndimage.label(pixels > threshold_otsu(pixels))[0].astype(np.uint32)


def stride(array: np.ndarray, level: int) -> np.ndarray:
    """Every 2**level-th pixel along the last two axes (y, x), from pixel 0."""
    step = 2**level
    return array[..., ::step, ::step]


def chunk_files(array_path: Path) -> list[Path]:
    return [p for p in array_path.rglob("*") if p.is_file() and not p.name.startswith(".")]


def check_multiscale(
    group: zarr.Group,
    name: str,
    axes: list[dict[str, str]],
    base_scale: list[float],
    levels: int,
) -> None:
    """The NGFF 0.4 multiscales of ``group``: paths 0..levels-1, y and x scales doubling."""
    (multiscale,) = group.attrs["multiscales"]
    assert multiscale["version"] == "0.4"
    assert multiscale["name"] == name
    assert multiscale["axes"] == axes
    assert [d["path"] for d in multiscale["datasets"]] == [str(n) for n in range(levels)]
    names = [axis["name"] for axis in axes]
    for level, dataset in enumerate(multiscale["datasets"]):
        (transform,) = dataset["coordinateTransformations"]
        assert transform["type"] == "scale"
        expected = [
            size * 2**level if axis in ("y", "x") else size
            for size, axis in zip(base_scale, names, strict=True)
        ]
        assert transform["scale"] == pytest.approx(expected, rel=1e-12)
    assert multiscale["type"] and multiscale["metadata"]["method"] == "stride"


def check_level_arrays(group_path: Path, reference: np.ndarray, levels: int) -> None:
    """Level n equals the stride-2**n sampling of ``reference``; arrays are NGFF zarr v2."""
    for level in range(levels):
        array = zarr.open_array(group_path / str(level), mode="r")
        assert array.metadata.zarr_format == 2
        np.testing.assert_array_equal(array[...], stride(reference, level))
        zarray = json.loads((group_path / str(level) / ".zarray").read_text())
        assert zarray["dimension_separator"] == "/"  # NGFF: nested chunk folders
        assert zarray["compressor"]["id"] == "blosc"
        # Every chunk is stored, all-background ones included (write_empty_chunks=True).
        expected = math.prod(-(-s // c) for s, c in zip(array.shape, array.chunks, strict=True))
        assert len(chunk_files(group_path / str(level))) == expected


def check_labels_group(out: Path, name: str) -> zarr.Group:
    root = zarr.open_group(out, mode="r")
    assert root.metadata.zarr_format == 2
    assert root["labels"].attrs["labels"] == [name]
    label_group = root[f"labels/{name}"]
    image_label = label_group.attrs["image-label"]
    assert image_label["version"] == "0.4"
    assert image_label["source"] == {"image": "../../"}
    return label_group


def test_2d_image_and_labels(tmp_path: Path, landsat: np.ndarray) -> None:
    nir = landsat[3]
    labels = label(nir)
    image = Image(
        data=da.from_array(nir, chunks=128),
        axes="yx",
        spacing=(28.5, 28.5),
        units="m",
        source=str(sample_path("L7_ETMs.tif")),
    )

    out = write_ome_zarr(da.from_array(labels, chunks=100), image, tmp_path / "scene.zarr")

    assert out == tmp_path / "scene.zarr"
    axes = [
        {"name": "y", "type": "space", "unit": "meter"},
        {"name": "x", "type": "space", "unit": "meter"},
    ]
    root = zarr.open_group(out, mode="r")
    check_multiscale(root, "L7_ETMs.tif", axes, [28.5, 28.5], levels=2)
    check_level_arrays(out, nir, levels=2)
    label_group = check_labels_group(out, "labels")
    check_multiscale(label_group, "labels", axes, [28.5, 28.5], levels=2)
    check_level_arrays(out / "labels" / "labels", labels, levels=2)
    assert zarr.open_array(out / "labels" / "labels" / "0", mode="r").chunks == (100, 100)
    assert names(tmp_path) == ["scene.zarr"]  # no staging left


def test_3d_volume_in_micrometres(tmp_path: Path, nuclei: np.ndarray) -> None:
    labels = label(nuclei)
    image = Image(
        data=da.from_array(nuclei, chunks=(16, 96, 96)),
        axes="zyx",
        spacing=NUCLEI_SPACING,
        units="um",
    )

    out = write_ome_zarr(
        da.from_array(labels, chunks=(20, 64, 64)), image, tmp_path / "nuclei.zarr", name="nuclei"
    )

    axes = [{"name": axis, "type": "space", "unit": "micrometer"} for axis in "zyx"]
    root = zarr.open_group(out, mode="r")
    check_multiscale(root, "nuclei", axes, list(NUCLEI_SPACING), levels=2)
    check_level_arrays(out, nuclei, levels=2)
    assert zarr.open_array(out / "1", mode="r").shape == (60, 128, 128)  # z kept whole
    label_group = check_labels_group(out, "nuclei")
    check_multiscale(label_group, "nuclei", axes, list(NUCLEI_SPACING), levels=2)
    check_level_arrays(out / "labels" / "nuclei", labels, levels=2)


def test_channels_image_gets_labels_with_one_channel(tmp_path: Path, landsat: np.ndarray) -> None:
    labels = label(landsat[3])
    image = Image(data=da.from_array(landsat, chunks=(6, 128, 128)), axes="cyx")

    out = write_ome_zarr(da.from_array(labels, chunks=128), image, tmp_path / "bands.zarr")

    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    root = zarr.open_group(out, mode="r")
    check_multiscale(root, "bands", axes, [1.0, 1.0, 1.0], levels=2)
    check_level_arrays(out, landsat, levels=2)
    label_group = check_labels_group(out, "labels")
    check_multiscale(label_group, "labels", axes, [1.0, 1.0, 1.0], levels=2)
    check_level_arrays(out / "labels" / "labels", labels[np.newaxis], levels=2)


def test_levels_halve_until_the_image_fits_in_256_pixels(tmp_path: Path) -> None:
    noise = ndimage.gaussian_filter(np.random.default_rng(3).random((1100, 900)), 4)
    pixels = (noise * 1000).astype(np.float32)
    labels = label(noise)
    image = Image(data=da.from_array(pixels, chunks=(300, 250)), axes="yx", spacing=(2.0, 3.0))

    out = write_ome_zarr(da.from_array(labels, chunks=(300, 250)), image, tmp_path / "x.zarr")

    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]  # no units known
    check_multiscale(zarr.open_group(out, mode="r"), "x", axes, [2.0, 3.0], levels=4)
    check_level_arrays(out, pixels, levels=4)  # 1100 -> 550 -> 275 -> 138
    check_level_arrays(out / "labels" / "labels", labels, levels=4)


@pytest.mark.cluster
def test_on_a_cluster_of_processes(
    tmp_path: Path, nuclei: np.ndarray, cluster_client: object
) -> None:
    labels = label(nuclei)
    # Read from zarr stores, as on a cluster: the workers read the chunks themselves.
    for name, data in (("nuclei", nuclei), ("labels", labels)):
        zarr.create_array(tmp_path / f"{name}.zarr", data=data, chunks=(30, 128, 128))
    image = Image(data=da.from_zarr(tmp_path / "nuclei.zarr"), axes="zyx")

    out = write_ome_zarr(da.from_zarr(tmp_path / "labels.zarr"), image, tmp_path / "n.zarr")

    check_level_arrays(out, nuclei, levels=2)
    check_level_arrays(out / "labels" / "labels", labels, levels=2)


def test_existing_output_is_kept_without_overwrite(tmp_path: Path) -> None:
    image = Image(data=da.arange(64, dtype=np.uint8, chunks=32).reshape(8, 8), axes="yx")
    out = write_ome_zarr(da.ones((8, 8), dtype=np.uint32, chunks=4), image, tmp_path / "a.zarr")

    with pytest.raises(pipeline.OutputExistsError, match="overwrite=True"):
        write_ome_zarr(da.zeros((8, 8), dtype=np.uint32, chunks=4), image, out)
    np.testing.assert_array_equal(zarr.open_array(out / "labels/labels/0", mode="r")[...], 1)

    write_ome_zarr(da.full((8, 8), 7, dtype=np.uint32, chunks=4), image, out, overwrite=True)
    np.testing.assert_array_equal(zarr.open_array(out / "labels/labels/0", mode="r")[...], 7)
    assert names(tmp_path) == ["a.zarr"]


def test_a_failing_computation_leaves_nothing_and_keeps_the_old_output(tmp_path: Path) -> None:
    def fail(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("kernel crashed")

    image = Image(data=da.zeros((8, 8), dtype=np.uint8, chunks=4), axes="yx")
    labels = da.zeros((8, 8), dtype=np.uint32, chunks=4).map_blocks(fail, dtype=np.uint32)
    with pytest.raises(RuntimeError, match="kernel crashed"):
        write_ome_zarr(labels, image, tmp_path / "a.zarr")
    assert names(tmp_path) == []

    old = write_ome_zarr(da.ones((8, 8), dtype=np.uint32, chunks=4), image, tmp_path / "a.zarr")
    with pytest.raises(RuntimeError, match="kernel crashed"):
        write_ome_zarr(labels, image, old, overwrite=True)
    np.testing.assert_array_equal(zarr.open_array(old / "labels/labels/0", mode="r")[...], 1)
    assert names(tmp_path) == ["a.zarr"]


LABELS = da.zeros((8, 8), dtype=np.uint32)
IMAGE = Image(da.zeros((8, 8), dtype=np.uint8), "yx")


@pytest.mark.parametrize(
    ("labels", "image", "name", "error", "message"),
    [
        pytest.param(
            da.zeros((8, 9), dtype=np.uint32), IMAGE, "labels", InputValueError,
            r"labels of shape \(8, 9\) do not fit", id="shape",
        ),
        pytest.param(
            LABELS.astype(np.float32), IMAGE, "labels", UnsupportedInputError,
            "must be integers", id="float-labels",
        ),
        pytest.param(
            np.zeros((8, 8), np.uint32), IMAGE, "labels", UnsupportedInputError,
            "must be a dask array", id="numpy-labels",
        ),
        pytest.param(
            LABELS, np.zeros((8, 8)), "labels", UnsupportedInputError, "pipeline Image",
            id="not-an-image",
        ),
        pytest.param(LABELS, IMAGE, "a/b", InputValueError, "plain folder name", id="name-path"),
        pytest.param(LABELS, IMAGE, "", InputValueError, "plain folder name", id="name-empty"),
        pytest.param(
            LABELS, Image(IMAGE.data, "yx", spacing=(1, 1), units="px"), "labels",
            InputValueError, "units 'px' are not a unit of length", id="units",
        ),
    ],
)  # fmt: skip
def test_bad_arguments_fail_before_any_file_appears(
    tmp_path: Path, labels: object, image: object, name: str, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        write_ome_zarr(labels, image, tmp_path / "a.zarr", name=name)  # type: ignore[arg-type]
    assert names(tmp_path) == []


def names(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden staging names included."""
    return sorted(p.name for p in folder.iterdir())
