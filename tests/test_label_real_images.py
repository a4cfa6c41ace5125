"""pipeline.label on real images: a Landsat band, a 3D nuclei stack, an MRI brain mask.

Each is compared with scipy.ndimage.label on the whole array; one run uses a real
distributed cluster of 2 worker processes and writes the labels to a zarr store.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import nibabel
import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage
from skimage.filters import threshold_otsu

import pipeline
from pipeline.data import sample_path
from tests.conftest import WORKFLOW_DATA, assert_same_partition


@pytest.fixture(scope="module")
def landsat_water() -> np.ndarray:
    """Band 5 (SWIR) of the Landsat scene below its Otsu threshold: water."""
    band = tifffile.imread(sample_path("L7_ETMs.tif"))[..., 4]
    return band < threshold_otsu(band)


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    stack = tifffile.imread(sample_path("nuclei.tif"))
    return stack > threshold_otsu(stack)


@pytest.fixture(scope="module")
def brain() -> np.ndarray:
    return np.asarray(nibabel.load(WORKFLOW_DATA / "ch2bet.nii.gz").dataobj) > 0


def _compare(mask: np.ndarray, chunks: object, connectivity: int) -> int:
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    reference, count = ndimage.label(mask, structure)
    labels, num = pipeline.label(da.from_array(mask, chunks=chunks), connectivity=connectivity)
    assert num == count
    assert_same_partition(labels.compute(scheduler="threads"), reference)
    return num


@pytest.mark.parametrize("chunks", [(352, 349), 64, (37, 101), 16])
@pytest.mark.parametrize("connectivity", [1, 2])
def test_landsat_water_mask(landsat_water: np.ndarray, chunks: object, connectivity: int) -> None:
    assert _compare(landsat_water, chunks, connectivity) > 50


@pytest.mark.parametrize("chunks", [(60, 256, 256), (16, 64, 64), (7, 50, 33)])
@pytest.mark.parametrize("connectivity", [1, 3])
def test_nuclei_3d(nuclei: np.ndarray, chunks: object, connectivity: int) -> None:
    assert _compare(nuclei, chunks, connectivity) > 10


@pytest.mark.parametrize("chunks", [(64, 64, 64), (45, 100, 31)])
@pytest.mark.parametrize("connectivity", [1, 2])
def test_brain_mask(brain: np.ndarray, chunks: object, connectivity: int) -> None:
    assert _compare(brain, chunks, connectivity) >= 1


@pytest.mark.cluster
@pytest.mark.parametrize("keep", [True, False])
def test_zarr_to_zarr_on_a_two_process_cluster(
    cluster_client: object, nuclei: np.ndarray, tmp_path: Path, keep: bool
) -> None:
    source = zarr.create_array(
        tmp_path / "mask.zarr", shape=nuclei.shape, chunks=(15, 64, 64), dtype=bool
    )
    source[...] = nuclei
    mask = da.from_zarr(str(tmp_path / "mask.zarr"))

    labels, num = pipeline.label(mask, connectivity=3, keep_labels=keep)
    target = zarr.create_array(
        tmp_path / "labels.zarr",
        shape=labels.shape,
        chunks=(15, 64, 64),
        dtype=labels.dtype,
        config={"write_empty_chunks": True},
    )
    da.store(labels, target, lock=False)

    workers = cluster_client.scheduler_info()["workers"]  # type: ignore[attr-defined]
    assert len(workers) == 2
    reference, count = ndimage.label(nuclei, np.ones((3, 3, 3)))
    assert num == count
    assert_same_partition(zarr.open_array(tmp_path / "labels.zarr")[...], reference)


@pytest.mark.cluster
def test_landsat_on_a_two_process_cluster(
    cluster_client: object, landsat_water: np.ndarray
) -> None:
    labels, num = pipeline.label(da.from_array(landsat_water, chunks=(50, 70)), connectivity=2)
    result = cluster_client.compute(labels).result()  # type: ignore[attr-defined]
    reference, count = ndimage.label(landsat_water, np.ones((3, 3)))
    assert num == count
    assert_same_partition(result, reference)
