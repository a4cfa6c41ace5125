"""The write pass's digests: object sizes and preview pixels kept as chunks are written,
checked against numpy on the whole label map and against write_preview reading it back."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import zarr
from PIL import Image as PILImage
from scipy import ndimage
from skimage.measure import label as sk_label

import pipeline
from pipeline.data import sample_path
from pipeline.io._chunks import store_chunks
from pipeline.io._zarr import open_label_array
from pipeline.measure._sizes import SizeCounts, chunk_sizes, combine_sizes, component_sizes
from pipeline.report._preview import preview_pixels
from pipeline.workflow import Workflow
from pipeline.workflow._digest import LabelDigest
from tests.test_answers import read_page


def blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return smooth > np.quantile(smooth, 0.6 if len(shape) == 2 else 0.85)


def truth(labels: np.ndarray) -> SizeCounts:
    sizes = np.bincount(labels.ravel())[1:]
    return SizeCounts.of(sizes[sizes > 0])


def digest_blocks(labels: np.ndarray, chunks: tuple[int, ...], connected: bool) -> SizeCounts:
    array = da.from_array(labels, chunks=chunks)
    parts = []
    for index in np.ndindex(*array.numblocks):
        parts.append(chunk_sizes(np.asarray(array.blocks[index]), connected=connected))
    return combine_sizes(parts)


def assert_same(found: SizeCounts, expected: SizeCounts) -> None:
    np.testing.assert_array_equal(found.pixels, expected.pixels)
    np.testing.assert_array_equal(found.objects, expected.objects)


@pytest.mark.parametrize(
    ("shape", "chunks", "connectivity"),
    [
        ((300, 420), (64, 100), 1),
        ((300, 420), (37, 300), 2),
        ((40, 70, 90), (13, 30, 40), 3),
        ((40, 70, 90), (40, 70, 90), 1),
    ],
)
def test_sizes_of_connected_objects_equal_bincount(
    shape: tuple[int, ...], chunks: tuple[int, ...], connectivity: int
) -> None:
    labels = sk_label(blobs(shape, seed=len(shape) + connectivity), connectivity=connectivity)
    found = digest_blocks(labels, chunks, connected=True)
    assert_same(found, truth(labels))
    assert found.count == labels.max() > 50


@pytest.mark.parametrize("given_mask", [False, True])
def test_a_chunks_own_component_sizes_equal_bincount(given_mask: bool) -> None:
    mask = blobs((300, 420), seed=5)
    for index in np.ndindex(3, 4):
        block = mask[index[0] * 100 : (index[0] + 1) * 100, index[1] * 105 : (index[1] + 1) * 105]
        labels = sk_label(block, connectivity=2).astype(np.uint32)
        count = int(labels.max())
        found = component_sizes(labels, count, block if given_mask else None)
        every = np.bincount(labels.ravel(), minlength=count + 1)
        rim = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        on_face = np.setdiff1d(np.unique(rim), [0])
        inside = np.setdiff1d(np.arange(1, count + 1), on_face)
        assert count > 0 and inside.size > 0
        assert_same(found.whole, SizeCounts.of(every[inside]))
        np.testing.assert_array_equal(found.ids, on_face)
        np.testing.assert_array_equal(found.pixels, every[on_face])


def test_only_objects_on_chunk_faces_travel_as_ids() -> None:
    labels = sk_label(blobs((512, 512), seed=3))
    array = da.from_array(labels, chunks=128)
    parts = [chunk_sizes(np.asarray(b), connected=True) for b in array.blocks.ravel()]
    pieces = sum(part.ids.size for part in parts)
    whole = sum(part.whole.count for part in parts)
    assert whole + len(np.unique(np.concatenate([p.ids for p in parts]))) == labels.max()
    assert pieces < labels.max() / 2  # most objects cross no chunk face


def test_disconnected_objects_are_summed_when_not_assumed_connected() -> None:
    labels = np.zeros((60, 60), dtype=np.uint32)
    labels[5:9, 5:9] = 7  # one id in two chunks, on no face of either
    labels[40:45, 40:44] = 7
    labels[20:22, 40:50] = 3
    found = digest_blocks(labels, (30, 30), connected=False)
    assert_same(found, SizeCounts.of([16 + 20, 20]))


def test_digests_of_chunks_written_without_one_are_made_from_the_chunk(tmp_path: Path) -> None:
    labels = sk_label(blobs((250, 330), seed=5)).astype(np.uint32)
    data = da.from_array(labels, chunks=(64, 80))
    path, done = tmp_path / "l.zarr", tmp_path / "l.zarr.done"
    zarr.create_array(path, shape=labels.shape, chunks=(64, 80), dtype=np.uint32)
    store_chunks(data, path, done)  # markers without digests, as an earlier version wrote
    for marker in sorted(done.iterdir())[::2]:
        marker.unlink()  # these chunks are written again, with their digests
    digest = LabelDigest(preview_pixels(labels.shape, max_size=100), connected=True)
    written = store_chunks(data, path, done, digest=digest)
    assert written.skipped == 20 - written.written > 0
    assert sum(1 for m in done.iterdir() if m.stat().st_size) == written.written
    ids, sizes = digest.assemble(written.digests, np.dtype(np.uint32))
    assert_same(sizes, truth(labels))
    np.testing.assert_array_equal(ids, labels[::4, ::4])


def landsat_mosaic(path: Path, shape: tuple[int, int]) -> Path:
    """Band 5 of the Landsat scene mirrored and tiled to ``shape``, as a uint8 zarr."""
    with rasterio.open(sample_path("L7_ETMs.tif")) as source:
        band = source.read(5)
    tile = np.block([[band, band[:, ::-1]], [band[::-1], band[::-1, ::-1]]])
    reps = (-(-shape[0] // tile.shape[0]), -(-shape[1] // tile.shape[1]))
    zarr.create_array(path, data=np.tile(tile, reps)[: shape[0], : shape[1]], chunks=(512, 512))
    return path


def report_value(page_text: list[str], name: str) -> str:
    return page_text[page_text.index(name) + 1]


@pytest.mark.parametrize("kind", ["label", "post-processed", "instances"])
def test_a_runs_preview_and_sizes_equal_what_reading_the_labels_back_gives(
    tmp_path: Path, kind: str
) -> None:
    """Sizes come from the first pass (label), from the write pass when a step
    changed the labels after stitching (post-processed), or from the write pass
    with every id travelling (instances, which may be disconnected)."""
    source = landsat_mosaic(tmp_path / "mosaic.zarr", (1500, 2300))
    steps: list = [{"threshold": {"foreground": "below"}}, {"label": {"connectivity": 2}}]
    if kind == "post-processed":
        steps.append({"remove_small": {"min_size": 5}})
    if kind == "instances":
        steps = [{"threshold": {"foreground": "below"}}, {"watershed": {"min_distance": 3}}]
    result = Workflow(
        source=str(source),
        steps=steps,
        output={"labels": str(tmp_path / "l.zarr"), "preview": str(tmp_path / "p.png")},
        chunks=400,
    ).run()
    labels = open_label_array(tmp_path / "l.zarr")[...]
    reference = pipeline.write_preview(
        tmp_path / "l.zarr", tmp_path / "reread.png", image=pipeline.open_image(str(source))
    )
    with PILImage.open(tmp_path / "p.png") as ours, PILImage.open(reference) as theirs:
        assert ours.size == theirs.size == (767, 500)  # every third pixel
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    sizes = np.bincount(labels.ravel())[1:]
    sizes = sizes[sizes > 0]
    assert sizes.size == result.num > 100
    text = [t.strip() for t in read_page(result.outputs["report"]).text if t.strip()]
    for name, value in [
        ("smallest", sizes.min()),
        ("median", float(np.median(sizes))),
        ("mean", float(sizes.mean())),
        ("largest", sizes.max()),
    ]:
        assert report_value(text, name) == f"{value:,.6g}"
    assert "object sizes" not in result.record["timings_s"]


def test_a_3d_runs_preview_shows_the_middle_plane_as_read_back(tmp_path: Path) -> None:
    nuclei = sample_path("nuclei.tif")
    result = Workflow(
        source=str(nuclei),
        steps=[{"gaussian": {"sigma": 1.0}}, {"threshold": {}}, {"label": {"connectivity": 3}}],
        output={"labels": str(tmp_path / "n.zarr"), "preview": str(tmp_path / "n.png")},
        chunks=[16, 100, 90],
    ).run()
    reference = pipeline.write_preview(
        result.outputs["labels"], tmp_path / "reread.png", image=pipeline.open_image(str(nuclei))
    )
    with PILImage.open(tmp_path / "n.png") as ours, PILImage.open(reference) as theirs:
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
