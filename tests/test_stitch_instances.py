"""Instance stitching by IoU in the halos, and the watershed step, against whole images."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
from dask.array.overlap import overlap
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

import pipeline
from pipeline.data import sample_path
from pipeline.errors import InputValueError, NondeterministicInputError
from pipeline.kernels import Watershed
from pipeline.stitch import stitch_instances
from pipeline.workflow import WorkflowError
from tests.conftest import WORKFLOW_DATA, assert_same_partition, object_f1

NUCLEI = sample_path("nuclei.tif")
SVS = WORKFLOW_DATA / "cmu_small_region.svs"


def blocks_of(reference: np.ndarray, chunks: tuple[int, ...], halo: tuple[int, ...]) -> da.Array:
    """Padded blocks that each see the reference objects, with ids scrambled per block."""
    padded = overlap(
        da.from_array(reference, chunks=chunks), dict(enumerate(halo)), boundary="reflect"
    )

    def scramble(block: np.ndarray, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(block_id)) % 2**32)
        ids = np.unique(block)
        table = np.zeros(int(ids.max()) + 1, dtype=np.uint32)
        table[ids[ids != 0]] = rng.permutation(ids.size - (ids[0] == 0)) + 7
        return table[block]

    return padded.map_blocks(scramble, dtype=np.uint32)


@st.composite
def instance_cases(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(4, 40 if ndim == 2 else 14)) for _ in range(ndim))
    halo = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    chunks = tuple(
        draw(st.integers(min(2 * h + 1, s), s)) for s, h in zip(shape, halo, strict=True)
    )
    seed = draw(st.integers(0, 2**31))
    noise = np.random.default_rng(seed).random(shape)
    smooth = ndimage.gaussian_filter(noise, draw(st.sampled_from([0.0, 1.0, 2.0])))
    labels, _ = ndimage.label(smooth > np.quantile(smooth, draw(st.floats(0.3, 0.8))))
    return labels, chunks, halo


@given(instance_cases(), st.booleans())
def test_blocks_that_agree_stitch_into_the_whole_image_objects(
    case: tuple[np.ndarray, tuple[int, ...], tuple[int, ...]], keep: bool
) -> None:
    reference, chunks, halo = case
    with dask.config.set(scheduler="sync"):
        labels, num, report = stitch_instances(
            blocks_of(reference, chunks, halo), halo, keep_labels=keep
        )
        result = labels.compute()
    assert num == reference.max()
    assert_same_partition(result, reference)
    assert report.fragments == 0
    assert report.matched == report.seam_pieces


def test_the_seam_report_counts_matches_and_fragments() -> None:
    image = np.zeros((6, 12), dtype=np.uint32)
    image[1:3, 2:10] = 1  # crosses the seam at x = 6
    image[4, 5:8] = 2  # crosses it too
    padded = overlap(da.from_array(image, chunks=(6, 6)), {0: 2, 1: 2}, boundary="reflect")

    def lose_object_two_on_the_right(block: np.ndarray, block_id: tuple[int, ...]) -> np.ndarray:
        return np.where((block == 2) & (block_id[1] == 1), 0, block)

    with dask.config.set(scheduler="sync"):
        labels, num, report = stitch_instances(
            padded.map_blocks(lose_object_two_on_the_right, dtype=np.uint32), (2, 2)
        )
        result = labels.compute()
    assert num == 2
    assert (result[1:3, 2:10] == result[1, 2]).all()  # one object across the seam
    assert report.seam_pieces == 3 and report.matched == 2 and report.fragments == 1
    assert report.merged_objects == 1


def test_pieces_overlapping_too_little_stay_apart() -> None:
    image = np.zeros((4, 12), dtype=np.uint32)
    image[1:3, 2:10] = 1
    padded = overlap(da.from_array(image, chunks=(4, 6)), {0: 1, 1: 2}, boundary="reflect")

    def shrink_on_the_right(block: np.ndarray, block_id: tuple[int, ...]) -> np.ndarray:
        out = block.copy()
        if block_id[1] == 1:
            out[:, :3] = 0  # the right chunk sees only 1 of the 4 shared columns
        return out

    with dask.config.set(scheduler="sync"):
        _, num, report = stitch_instances(
            padded.map_blocks(shrink_on_the_right, dtype=np.uint32), (1, 2)
        )
    # The left piece reaches into the right chunk unmatched; the right one stops short.
    assert num == 2 and report.seam_pieces == report.fragments == 1
    assert report.matched == report.merged_objects == 0


def test_a_block_that_changes_between_passes_is_refused() -> None:
    image = np.zeros((8, 8), dtype=np.uint32)
    image[2:6, 2:6] = 1
    padded = overlap(da.from_array(image, chunks=4), {0: 1, 1: 1}, boundary="reflect")
    calls = {"n": 0}

    def flaky(block: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        return block if calls["n"] <= 4 else np.zeros_like(block)

    with dask.config.set(scheduler="sync"):
        labels, _, _ = stitch_instances(
            padded.map_blocks(flaky, dtype=np.uint32), (1, 1), keep_labels=False
        )
        with pytest.raises(NondeterministicInputError, match="instance chunk"):
            labels.compute()


@pytest.mark.parametrize(
    ("halo", "iou", "message"),
    [((0, 1), 0.5, "axis 0 is split into 2 chunks but has no halo"), ((1, 1), 0.3, "iou")],
)
def test_bad_stitching_arguments_fail_before_work(
    halo: tuple[int, int], iou: float, message: str
) -> None:
    padded = da.zeros((12, 12), chunks=6, dtype=np.uint32)
    with pytest.raises(InputValueError, match=message):
        stitch_instances(padded, halo, iou=iou)


# --- watershed on real images --------------------------------------------------------------


def reference_watershed(mask: np.ndarray, min_distance: int) -> np.ndarray:
    """scikit-image's distance watershed on the whole image."""
    distance = ndimage.distance_transform_edt(mask)
    peaks = np.zeros(mask.shape, dtype=bool)
    found = peak_local_max(
        distance, min_distance=min_distance, exclude_border=False, labels=mask.astype(int)
    )
    peaks[tuple(found.T)] = True
    markers, _ = ndimage.label(peaks, structure=np.ones((3,) * mask.ndim))
    return watershed(-distance, markers, mask=mask)


def chunked_watershed(
    mask: np.ndarray, chunks: tuple[int, ...], step: Watershed
) -> tuple[np.ndarray, int, object]:
    halo = step.halo(mask.ndim)
    padded = overlap(da.from_array(mask, chunks=chunks), dict(enumerate(halo)), boundary="reflect")
    instances = padded.map_blocks(
        lambda block: step.apply(block, None).astype(np.uint32), dtype=np.uint32
    )
    labels, num, report = stitch_instances(instances, halo)
    return labels.compute(), num, report


@pytest.fixture(scope="module")
def nuclei_mask() -> np.ndarray:
    smooth = ndimage.gaussian_filter(tifffile.imread(NUCLEI).astype(np.float32), 2)
    return smooth > threshold_otsu(smooth)


@pytest.fixture(scope="module")
def slide_mask() -> np.ndarray:
    gray = tifffile.imread(SVS)[1000:1512, 800:1312].mean(axis=2)
    smooth = ndimage.gaussian_filter(gray, 1.5)
    return smooth < threshold_otsu(smooth)  # dark (stained) nuclei


@pytest.fixture(scope="module")
def nuclei_reference(nuclei_mask: np.ndarray) -> np.ndarray:
    return reference_watershed(nuclei_mask, 10)


@pytest.mark.parametrize("chunks", [(30, 128, 128), (20, 100, 90)])
def test_watershed_of_3d_nuclei_matches_the_whole_image(
    nuclei_mask: np.ndarray, nuclei_reference: np.ndarray, chunks: tuple[int, int, int]
) -> None:
    step = Watershed(min_distance=10)  # default halo 40
    reference = nuclei_reference
    with dask.config.set(scheduler="threads"):
        labels, num, report = chunked_watershed(nuclei_mask, chunks, step)
    assert object_f1(labels, reference) >= 0.98
    assert num == len(np.unique(labels)) - 1
    assert report.seam_pieces > 0


@pytest.mark.parametrize("chunks", [(512, 512), (128, 128), (200, 300)])
def test_watershed_of_slide_nuclei_matches_the_whole_image(
    slide_mask: np.ndarray, chunks: tuple[int, int]
) -> None:
    step = Watershed(min_distance=5)  # default halo 20
    reference = reference_watershed(slide_mask, 5)
    with dask.config.set(scheduler="threads"):
        labels, _, report = chunked_watershed(slide_mask, chunks, step)
    assert object_f1(labels, reference) >= 0.98
    if chunks != (512, 512):
        assert report.matched > 10 * report.fragments


def test_watershed_workflow_on_a_cluster_records_the_seams(
    tmp_path: Path, cluster_client: object, nuclei_reference: np.ndarray
) -> None:
    flow = pipeline.Workflow(
        source=str(NUCLEI),
        steps=[
            {"gaussian": {"sigma": 2}},
            {"threshold": {"method": "otsu"}},
            {"watershed": {"min_distance": 10}},
            {"remove_small": {"min_size": 200}},
        ],
        output=str(tmp_path / "nuclei.zarr"),
        chunks=[60, 96, 128],  # the halo (8 + 40) needs chunks of at least 48
    )
    result = flow.run(client=cluster_client)
    reference = nuclei_reference.copy()
    sizes = np.bincount(reference.ravel())
    reference[(sizes < 200)[reference]] = 0
    assert object_f1(result.labels.compute(), reference) >= 0.98
    seams = result.record["seams"]
    assert seams["method"] == "instances matched by IoU"
    assert seams["seam_pieces"] == seams["matched"] + seams["fragments"] > 0


def test_gradient_watershed_splits_along_the_image_edge() -> None:
    yy, xx = np.mgrid[:60, :90]
    mask = ((yy - 30) ** 2 + (xx - 30) ** 2 < 20**2) | ((yy - 30) ** 2 + (xx - 60) ** 2 < 20**2)
    image = np.where(xx < 38, 1.0, 3.0).astype(np.float32)  # an edge left of the neck (x=45)
    by_gradient = Watershed(min_distance=10, surface="gradient").apply(
        mask, None, image=image[None]
    )
    by_distance = Watershed(min_distance=10).apply(mask, None, image=image[None])
    for labels in (by_gradient, by_distance):
        assert len(np.unique(labels[mask])) == 2
    row = by_gradient[30]
    assert row[36] != row[40]  # split at the edge
    assert by_distance[30, 36] == by_distance[30, 40] != by_distance[30, 52]  # split at the neck


@pytest.mark.parametrize(
    ("params", "field"),
    [({"min_distance": 0}, "min_distance"), ({"markers": "peaks"}, "markers"), ({"h": 0}, "h")],
)
def test_bad_watershed_parameters_fail_at_construction(params: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Watershed(**params)


def test_watershed_must_follow_a_mask() -> None:
    with pytest.raises(WorkflowError, match=r"step 1 \(watershed\) takes mask"):
        pipeline.Workflow(source="a.tif", steps=["watershed"], output="o.zarr")
