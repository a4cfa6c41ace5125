"""Scores (Dice, object F1) chunk by chunk, against plain whole-array computations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dask.array as da
import nibabel
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from skimage.filters import threshold_otsu
from skimage.metrics import contingency_table

import pipeline
from pipeline.data import sample_path
from pipeline.io import write_labels_zarr
from tests.conftest import WORKFLOW_DATA, run_segpipe


def _dice(mask: np.ndarray, reference: np.ndarray) -> float:
    a, b = mask != 0, reference != 0
    return 1.0 if not (a.any() or b.any()) else 2 * (a & b).sum() / (a.sum() + b.sum())


def _brute_force(labels: np.ndarray, reference: np.ndarray, iou: float) -> tuple[int, int, int]:
    """Matched, predicted and reference counts: the IoU of every pair of objects, one
    object mask at a time, and a largest one-to-one matching of the pairs above ``iou``."""
    ours, theirs = np.unique(labels[labels != 0]), np.unique(reference[reference != 0])
    ious = np.zeros((ours.size, theirs.size))
    for i, a in enumerate(ours):
        one = labels == a
        for j, b in enumerate(theirs):
            other = reference == b
            ious[i, j] = (one & other).sum() / (one | other).sum()
    return _matching(ious > iou), ours.size, theirs.size


def _matching(above: np.ndarray) -> int:
    rows, columns = linear_sum_assignment(above, maximize=True)
    return int(above[rows, columns].sum())


def _blobs(shape: tuple[int, ...], seed: int, level: float = 0.55) -> np.ndarray:
    """Random blobs, labelled, with scattered non-consecutive ids."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 2.0)
    labels, count = ndimage.label(smooth > np.quantile(smooth, level))
    ids = np.concatenate([[0], rng.permutation(count) * 3 + 5])
    return ids[labels]


def _segmentation_of(reference: np.ndarray, seed: int) -> np.ndarray:
    """Objects like the reference's, some grown, some shrunk, one merged and one missed,
    plus a false one: IoUs spread from 0 to 1."""
    rng = np.random.default_rng(seed)
    ours = np.zeros_like(reference)
    ids = np.unique(reference[reference != 0])
    for number, object_id in enumerate(ids):
        one = reference == object_id
        change = rng.integers(0, 4)
        if change == 1:
            one = ndimage.binary_dilation(one)
        elif change == 2:
            one = ndimage.binary_erosion(one)
        elif change == 3 and number == 0:
            continue  # missed
        ours[one & (ours == 0)] = 1000 + (number if number != 1 else 0)  # 0 and 1 merged
    corner = tuple(slice(0, 2) for _ in reference.shape)
    ours[corner] = 77
    return ours


CHUNKINGS_2D = [(2, 3), (7, 9), (40, 52)]
CHUNKINGS_3D = [(1, 5, 7), (4, 6, 5), (12, 20, 24)]


@pytest.mark.parametrize("chunks", CHUNKINGS_2D)
@pytest.mark.parametrize("iou", [0.0, 0.3, 0.5, 0.8])
def test_2d_object_f1_equals_a_brute_force_matching(chunks: tuple[int, int], iou: float) -> None:
    reference = _blobs((40, 52), seed=3)
    labels = _segmentation_of(reference, seed=2)
    matched, predicted, expected = _brute_force(labels, reference, iou)
    assert matched > 0 and matched < min(predicted, expected)
    scores = pipeline.object_f1(da.from_array(labels, chunks=chunks), reference, iou=iou)
    assert (scores.matched, scores.predicted, scores.reference) == (matched, predicted, expected)
    assert scores.precision == pytest.approx(matched / predicted)
    assert scores.recall == pytest.approx(matched / expected)
    assert scores.f1 == pytest.approx(2 * matched / (predicted + expected))
    assert scores.iou == iou


@pytest.mark.parametrize("chunks", CHUNKINGS_3D)
def test_3d_scores_equal_whole_array_ones(chunks: tuple[int, int, int]) -> None:
    reference = _blobs((12, 20, 24), seed=3)
    labels = _segmentation_of(reference, seed=4)
    chunked = da.from_array(labels, chunks=chunks)
    for iou in (0.2, 0.5):
        matched, predicted, expected = _brute_force(labels, reference, iou)
        scores = pipeline.object_f1(chunked, da.from_array(reference, chunks=(5, 5, 5)), iou)
        assert (scores.matched, scores.predicted, scores.reference) == (
            matched,
            predicted,
            expected,
        )
    assert pipeline.dice(chunked, reference) == pytest.approx(_dice(labels, reference))


@pytest.mark.parametrize("chunks", CHUNKINGS_2D)
def test_dice_equals_numpy_for_bool_integer_and_real_masks(chunks: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    reference = _blobs((40, 52), seed=6)
    for mask in (
        _blobs((40, 52), seed=7) > 0,
        _blobs((40, 52), seed=7).astype(np.int16),
        rng.random((40, 52)).round(1),
    ):
        expected = _dice(mask, reference)
        assert pipeline.dice(da.from_array(mask, chunks=chunks), reference) == pytest.approx(
            expected
        )


def test_chunks_of_one_pixel() -> None:
    reference = _blobs((10, 12), seed=8, level=0.4)
    labels = _segmentation_of(reference, seed=9)
    chunked = da.from_array(labels, chunks=1)
    matched, predicted, expected = _brute_force(labels, reference, 0.5)
    scores = pipeline.object_f1(chunked, reference)
    assert (scores.matched, scores.predicted, scores.reference) == (matched, predicted, expected)
    assert pipeline.dice(chunked, reference) == pytest.approx(_dice(labels, reference))


def test_nan_is_background_and_empty_masks_agree() -> None:
    mask = np.array([[np.nan, 1.0], [0.0, 2.0]])
    assert pipeline.dice(mask, np.array([[1, 1], [0, 0]])) == pytest.approx(2 / 4)
    assert pipeline.dice(np.zeros((3, 3)), np.zeros((3, 3), bool)) == 1.0
    empty = pipeline.object_f1(np.zeros((3, 3), int), np.zeros((3, 3), int))
    assert (empty.precision, empty.recall, empty.f1, empty.matched) == (1.0, 1.0, 1.0, 0)
    missed = pipeline.object_f1(np.zeros((3, 3), int), np.eye(3, dtype=int))
    assert (missed.precision, missed.recall, missed.f1, missed.reference) == (0.0, 0.0, 0.0, 1)


def test_an_object_split_over_many_chunks_is_measured_whole() -> None:
    reference = np.zeros((30, 30), np.uint32)
    reference[2:28, 2:28] = 9
    labels = np.zeros_like(reference)
    labels[2:28, 2:15] = 4  # half the object: IoU 0.5, not above it
    labels[2:28, 15:16] = 4  # one column more: IoU above 0.5
    for chunks in [(1, 1), (3, 4), (30, 30)]:
        scores = pipeline.object_f1(da.from_array(labels, chunks=chunks), reference)
        assert scores.matched == 1 and scores.f1 == 1.0
    labels[2:28, 15] = 0
    assert pipeline.object_f1(labels, reference).matched == 0


@settings(max_examples=40)
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    chunk=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    seed=st.integers(0, 2**16),
    iou=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
)
def test_random_small_maps_in_any_chunks(
    shape: tuple[int, int], chunk: tuple[int, int], seed: int, iou: float
) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, shape)
    reference = rng.integers(0, 4, shape) * 10
    matched, predicted, expected = _brute_force(labels, reference, iou)
    scores = pipeline.object_f1(da.from_array(labels, chunks=chunk), reference, iou=iou)
    assert (scores.matched, scores.predicted, scores.reference) == (matched, predicted, expected)
    assert pipeline.dice(da.from_array(labels, chunks=chunk), reference) == pytest.approx(
        _dice(labels, reference)
    )


def test_nuclei_segmentation_scores_as_the_contingency_table_says() -> None:
    """The real 3D sample, chunks cutting the nuclei: skimage's contingency table
    of the whole arrays gives the IoUs."""
    reference = tifffile.imread(WORKFLOW_DATA / "nuclei_label.tif")
    nuclei = tifffile.imread(sample_path("nuclei.tif")).astype(np.float32)
    smooth = ndimage.gaussian_filter(nuclei, 1.0)
    labels, _ = ndimage.label(smooth > threshold_otsu(smooth))
    table = contingency_table(reference, labels).toarray()[1:, 1:]  # background out
    sizes_theirs, sizes_ours = np.bincount(reference.ravel())[1:], np.bincount(labels.ravel())[1:]
    ious = table / (sizes_theirs[:, None] + sizes_ours[None, :] - table)
    present = sizes_theirs > 0
    expected = _matching(ious[present] > 0.5)
    scores = pipeline.object_f1(da.from_array(labels, chunks=(17, 37, 53)), reference)
    assert scores.matched == expected
    assert scores.predicted == labels.max() and scores.reference == int(present.sum())


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: pipeline.dice(np.zeros((4, 5)), np.zeros((5, 4))),
            pipeline.InputValueError,
            r"mask has shape \(4, 5\) but reference has shape \(5, 4\)",
        ),
        (
            lambda: pipeline.object_f1(np.zeros((4, 5)), np.zeros((4, 5), int)),
            pipeline.UnsupportedInputError,
            r"labels holds float64 values; expected integer object ids \(label a mask first",
        ),
        (
            lambda: pipeline.object_f1(np.zeros((4, 5), int), np.zeros((4, 5), int), iou=1.0),
            pipeline.InputValueError,
            r"iou 1\.0 is outside \[0, 1\)",
        ),
        (
            lambda: pipeline.dice(np.zeros((0, 5)), np.zeros((0, 5))),
            pipeline.InputValueError,
            r"empty \(shape \(0, 5\)\)",
        ),
        (
            lambda: pipeline.dice(np.array(["a"]), np.array(["b"])),
            pipeline.UnsupportedInputError,
            r"mask holds <U1 values; expected a boolean, integer or real array",
        ),
    ],
)
def test_bad_arguments_are_refused_before_any_chunk(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


def test_segpipe_score_dice_and_f1_from_files(tmp_path: Path) -> None:
    brain = np.asarray(nibabel.load(WORKFLOW_DATA / "ch2bet.nii.gz").dataobj) > 0
    # nibabel's x, y, z array as segpipe's z, y, x volume
    ours = ndimage.binary_erosion(brain.T, iterations=2)
    write_labels_zarr(da.from_array(ours.astype(np.uint32), chunks=64), tmp_path / "brain.zarr")
    reference = str(WORKFLOW_DATA / "ch2bet.nii.gz")
    done = run_segpipe("score", "brain.zarr", reference, "--metric", "dice", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["dice", f"{_dice(ours, brain.T):.4f}"]

    nuclei = str(WORKFLOW_DATA / "nuclei_label.tif")
    found = run_segpipe("score", nuclei, nuclei, "--metric", "f1", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "20 matched at IoU > 0.5" in found.stdout
    assert "f1         1.0000" in found.stdout


def test_segpipe_score_refuses_a_reference_on_another_grid(tmp_path: Path) -> None:
    labels, brain = WORKFLOW_DATA / "nuclei_label.tif", WORKFLOW_DATA / "ch2bet.nii.gz"
    refused = run_segpipe("score", str(labels), str(brain), "--metric", "dice", cwd=tmp_path)
    assert refused.returncode == 1
    assert (
        f"segpipe: error: {labels} is 60 x 256 x 256 pixels but {brain} is 181 x 217 x 181"
        in refused.stderr
    )
    assert "Traceback" not in refused.stderr
