"""Stitching in batches, and with the first pass recorded on disk, against whole arrays."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from dask.array.overlap import overlap
from scipy import ndimage
from skimage.measure import label as sk_label

import pipeline
from pipeline.errors import ChunkError, InputValueError, NondeterministicInputError
from pipeline.measure._sizes import SizeCounts
from pipeline.stitch._instances import stitch_instances_recorded
from pipeline.stitch._label import label_recorded
from pipeline.stitch._recorded import Recording
from tests.conftest import assert_same_partition


def blobs(shape: tuple[int, ...], seed: int, levels: int = 1) -> np.ndarray:
    """Smoothed noise cut into ``levels`` classes (0 is background)."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 1.5)
    edges = np.quantile(noise, np.linspace(0.5, 1, levels + 1)[:-1])
    return np.digitize(noise, edges).astype(np.uint8)


def markers(recording: Recording) -> list[Path]:
    return sorted(recording.done.iterdir())


@pytest.fixture(autouse=True)
def small_batches() -> object:
    """Batches of 3 chunks, so every pass really is split."""
    with dask.config.set({"segpipe.batch-size": 3, "scheduler": "threads"}):
        yield


@pytest.mark.parametrize(
    ("shape", "chunks", "connectivity"),
    [((60, 70), (16, 9), 1), ((60, 70), (25, 30), 2), ((18, 20, 22), (7, 6, 8), 3)],
)
@pytest.mark.parametrize("keep", [True, False])
def test_label_in_batches_matches_scipy(
    shape: tuple[int, ...], chunks: tuple[int, ...], connectivity: int, keep: bool
) -> None:
    mask = blobs(shape, seed=sum(shape)) > 0
    structure = ndimage.generate_binary_structure(len(shape), connectivity)
    reference, count = ndimage.label(mask, structure=structure)
    labels, num = pipeline.label(
        da.from_array(mask, chunks=chunks), connectivity=connectivity, keep_labels=keep
    )
    assert num == count
    assert_same_partition(labels.compute(), reference)


@pytest.mark.parametrize(
    ("shape", "chunks", "connectivity", "levels"),
    [
        ((60, 70), (16, 9), 1, 1),
        ((60, 70), (13, 30), 2, 3),
        ((18, 20, 22), (7, 6, 8), 1, 2),
        ((60, 70), (5, 7), 2, 2),  # 120 chunks: seams found in runs that split rows
    ],
)
@pytest.mark.parametrize("keep", [True, False])
def test_recorded_labels_match_skimage(
    tmp_path: Path,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    connectivity: int,
    levels: int,
    keep: bool,
) -> None:
    classes = blobs(shape, seed=len(shape) + levels, levels=levels)
    reference = sk_label(classes, background=0, connectivity=connectivity)
    recording = Recording(tmp_path / "first", keep_labels=keep)
    recorded = label_recorded(
        da.from_array(classes, chunks=chunks),
        recording,
        connectivity=connectivity,
        by_value=levels > 1,
    )
    assert recorded.num == reference.max()
    assert_same_partition(recorded.labels.compute(), reference)
    expected = SizeCounts.of(np.bincount(reference.ravel())[1:])
    assert recorded.sizes is not None
    np.testing.assert_array_equal(recorded.sizes.pixels, expected.pixels)
    np.testing.assert_array_equal(recorded.sizes.objects, expected.objects)
    written = recorded.first
    grid = int(np.prod([-(-s // c) for s, c in zip(shape, chunks, strict=True)]))
    assert (written.total, written.written, written.skipped) == (grid, grid, 0)
    assert len(markers(recording)) == len(list(recording.summaries.iterdir())) == grid
    assert recording.labels.exists() == keep  # else the second pass labelled again


@pytest.mark.parametrize("keep", [True, False])
def test_a_resumed_first_pass_redoes_only_unrecorded_chunks(tmp_path: Path, keep: bool) -> None:
    mask = blobs((64, 64), seed=3) > 0
    reference, _ = ndimage.label(mask)
    recording = Recording(tmp_path / "first", keep_labels=keep)
    expected = label_recorded(da.from_array(mask, chunks=16), recording).labels.compute()
    lost = markers(recording)[::3]  # as if the run died before recording these
    for marker in lost:
        marker.unlink()

    again = Recording(tmp_path / "first", resume=True, keep_labels=keep)
    recorded = label_recorded(da.from_array(mask, chunks=16), again)
    assert (recorded.first.written, recorded.first.skipped) == (len(lost), 16 - len(lost))
    np.testing.assert_array_equal(recorded.labels.compute(), expected)
    assert_same_partition(expected, reference)


def test_summaries_recorded_without_sizes_give_no_sizes(tmp_path: Path) -> None:
    """A first pass recorded by an earlier version, whose summaries hold no sizes,
    is resumed; the sizes are then left to the write pass."""
    mask = blobs((48, 48), seed=4) > 0
    recording = Recording(tmp_path / "first")
    label_recorded(da.from_array(mask, chunks=16), recording)
    for path in recording.summaries.iterdir():
        summary = pickle.loads(path.read_bytes())
        path.write_bytes(pickle.dumps(dataclasses.replace(summary, sizes=None)))
    recorded = label_recorded(da.from_array(mask, chunks=16), Recording(recording.folder, True))
    assert recorded.first.skipped == 9 and recorded.sizes is None
    assert_same_partition(recorded.labels.compute(), ndimage.label(mask)[0])


def test_a_mask_that_changes_between_passes_is_named_when_labels_are_not_kept(
    tmp_path: Path,
) -> None:
    mask = blobs((48, 48), seed=6) > 0
    calls = {"n": 0}

    def differs_the_second_time(block: np.ndarray, block_id: tuple[int, ...] | None = None):
        if block_id == (2, 1):
            calls["n"] += 1
            if calls["n"] > 1:
                return np.zeros_like(block)
        return block

    source = da.from_array(mask, chunks=16).map_blocks(differs_the_second_time, dtype=bool)
    recorded = label_recorded(source, Recording(tmp_path / "first", keep_labels=False))
    with pytest.raises(NondeterministicInputError, match=r"mask chunk \(2, 1\)"):
        recorded.labels.compute()


@pytest.mark.parametrize("keep", [True, False])
def test_a_failing_chunk_leaves_every_other_chunk_recorded(tmp_path: Path, keep: bool) -> None:
    mask = blobs((48, 48), seed=5) > 0
    broken = {"on": True}

    def fails_in_the_middle(block: np.ndarray, block_id: tuple[int, ...] | None = None):
        if block_id == (1, 2) and broken["on"]:
            raise RuntimeError("this chunk cannot be read")
        return block

    source = da.from_array(mask, chunks=16).map_blocks(fails_in_the_middle, dtype=bool)
    recording = Recording(tmp_path / "first", keep_labels=keep)
    with pytest.raises(ChunkError, match=r"chunk \(1, 2\) \(pixels \[16:32, 32:48\]\)"):
        label_recorded(source, recording)
    assert len(markers(recording)) == 8

    broken["on"] = False
    again = Recording(recording.folder, resume=True, keep_labels=keep)
    recorded = label_recorded(source, again)
    assert (recorded.first.written, recorded.first.skipped) == (1, 8)
    reference, count = ndimage.label(mask)
    assert recorded.num == count
    assert_same_partition(recorded.labels.compute(), reference)


@pytest.mark.parametrize(
    ("shape", "chunks", "halo"),
    [((64, 72), (20, 24), (3, 3)), ((16, 30, 28), (8, 12, 10), (1, 2, 2))],
)
def test_recorded_instances_match_the_reference(
    tmp_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], halo: tuple[int, ...]
) -> None:
    reference, _ = ndimage.label(blobs(shape, seed=11) > 0)
    padded = overlap(
        da.from_array(reference.astype(np.uint32), chunks=chunks),
        dict(enumerate(halo)),
        boundary="reflect",
    )
    labels, num, report, written = stitch_instances_recorded(
        padded, halo, Recording(tmp_path / "first")
    )
    assert num == reference.max()
    assert_same_partition(labels.compute(), reference)
    assert report.fragments == 0 and report.matched == report.seam_pieces > 0
    assert written.written == written.total


def test_irregular_chunks_are_refused_before_any_work(tmp_path: Path) -> None:
    mask = da.from_array(np.ones((30, 30), dtype=bool), chunks=((10, 5, 15), 30))
    with pytest.raises(InputValueError, match="irregular chunks"):
        label_recorded(mask, Recording(tmp_path / "first"))
    assert not (tmp_path / "first" / "local.zarr").exists()
