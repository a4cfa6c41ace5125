"""Superpixel steps: SLIC on the image's grid, Felzenszwalb on every padded block."""

from __future__ import annotations

import contextlib
import math

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from pydantic import ValidationError
from skimage.segmentation import felzenszwalb, slic
from skimage.util import regular_grid

from pipeline.data import sample_path
from pipeline.errors import InputValueError
from pipeline.kernels import Step
from pipeline.kernels._superpixels import Felzenszwalb, Slic, SlicFit
from pipeline.stitch import SeamReport, stitch_instances
from pipeline.workflow._fuse import check_chunks, fit_steps, map_steps, total_halo
from tests.conftest import WORKFLOW_DATA, assert_same_partition, object_f1


def landsat() -> np.ndarray:
    with rasterio.open(sample_path("L7_ETMs.tif")) as src:
        return np.asarray(src.read())


def nuclei() -> np.ndarray:
    return np.asarray(tifffile.imread(sample_path("nuclei.tif"))[20:40, 60:124, 80:160])[None]


def slide() -> np.ndarray:
    """A 512 x 512 RGB crop of the slide, bands first (512 is a multiple of 16)."""
    crop = tifffile.imread(WORKFLOW_DATA / "cmu_small_region.svs")[1000:1512, 800:1312]
    return np.ascontiguousarray(np.moveaxis(crop, -1, 0))


def nuclei_volume() -> np.ndarray:
    """A 40 x 100 x 100 uint16 crop of the nuclei (a multiple of 5 on every axis)."""
    return np.asarray(tifffile.imread(sample_path("nuclei.tif"))[10:50, 80:180, 60:160])[None]


def padded_blocks(
    values: np.ndarray, chunks: tuple[int, ...], step: Step
) -> tuple[dict[tuple[int, ...], np.ndarray], tuple[int, ...], da.Array]:
    """Each block the fused map returns (chunk plus halo, untrimmed), by grid position."""
    data = da.from_array(values, chunks=(values.shape[0], *chunks))
    halo = total_halo([step], data.ndim - 1)
    check_chunks(data, [step], halo)
    mapped = map_steps(data, [step], fit_steps(data, [step], None), halo)
    blocks = {index: mapped.blocks[index].compute() for index in np.ndindex(mapped.numblocks)}
    return blocks, halo, data


def symmetric_pad(values: np.ndarray, halo: tuple[int, ...]) -> np.ndarray:
    """The image as the map pads it at the border (dask's "reflect" is numpy's "symmetric")."""
    return np.pad(values, [(0, 0), *((h, h) for h in halo)], mode="symmetric")


def bands_last(values: np.ndarray) -> tuple[np.ndarray, int | None]:
    return (values[0], None) if values.shape[0] == 1 else (np.moveaxis(values, 0, -1), -1)


def skimage_slic(values: np.ndarray, step: Slic) -> np.ndarray:
    """scikit-image's slic on the whole image, padded by reflection at its end to a
    multiple of the grid step S (no padding when it is one), then cut back."""
    size = step.grid_step(values.ndim - 1)
    widths = [(0, 0), *((0, -n % size) for n in values.shape[1:])]
    image, channel_axis = bands_last(np.pad(values, widths, mode="symmetric"))
    labels = slic(
        image,
        n_segments=math.prod(-(-n // size) for n in values.shape[1:]),
        compactness=step.compactness,
        sigma=step.sigma,
        convert2lab=False,
        start_label=1,
        channel_axis=channel_axis,
    )
    return np.asarray(labels[tuple(slice(0, n) for n in values.shape[1:])])


def stitched_slic(
    values: np.ndarray, chunks: tuple[int, ...], step: Slic | Felzenszwalb
) -> tuple[np.ndarray, SeamReport]:
    """The chunked result as a workflow makes it: the fused map, then the stitcher."""
    data = da.from_array(values, chunks=(values.shape[0], *chunks))
    halo = total_halo([step], data.ndim - 1)
    check_chunks(data, [step], halo)
    padded = map_steps(data, [step], fit_steps(data, [step], None), halo)
    labels, num, report = stitch_instances(padded, halo)
    result = labels.compute()
    assert num == len(np.unique(result)) and result.min() == 1
    return result, report


# --- one chunk over the whole image: exactly scikit-image on the image ----------------------


@pytest.mark.parametrize(
    ("bands", "step"),
    [
        (slice(None), Slic()),
        (slice(3, 4), Slic(segment_size=150, compactness=0.05, sigma=1.0)),
        (None, Slic(segment_size=125, compactness=0.2)),
    ],
    ids=["6-band", "1-band-sigma", "3d"],
)
def test_slic_on_one_chunk_equals_skimage_on_the_image(bands: slice | None, step: Slic) -> None:
    """The halo is left out (ids 0), and the image, 352 x 349 here, is padded by
    reflection at its end to a multiple of S (360 x 360 for S = 20)."""
    values = nuclei() if bands is None else landsat()[bands]
    blocks, halo, _ = padded_blocks(values, values.shape[1:], step)
    (block,) = blocks.values()
    core = tuple(slice(h, -h) for h in halo)
    assert block.shape == symmetric_pad(values, halo).shape[1:]
    np.testing.assert_array_equal(block[core], skimage_slic(values, step))
    outside = np.ones(block.shape, dtype=bool)
    outside[core] = False
    assert not block[outside].any()
    sizes = np.bincount(block[core].ravel())[1:]
    assert block[core].min() == 1 and 0.5 < sizes.mean() / step.segment_size < 2


@pytest.mark.parametrize(
    ("bands", "step"),
    [
        (slice(None), Felzenszwalb(scale=100)),
        (slice(0, 3), Felzenszwalb(scale=20, sigma=0.5, min_size=50, halo=5)),
        (slice(4, 5), Felzenszwalb()),
    ],
    ids=["6-band", "3-band", "1-band"],
)
def test_felzenszwalb_on_one_chunk_equals_skimage_plus_one(
    bands: slice, step: Felzenszwalb
) -> None:
    values = landsat()[bands]
    blocks, halo, _ = padded_blocks(values, values.shape[1:], step)
    (block,) = blocks.values()
    image, channel_axis = bands_last(symmetric_pad(values, halo))
    # scikit-image warns of more than 3 bands; the step knows and keeps quiet.
    many = pytest.warns(RuntimeWarning, match="third dimension of 6")
    with many if values.shape[0] > 3 else contextlib.nullcontext():
        expected = felzenszwalb(
            image,
            scale=step.scale,
            sigma=step.sigma,
            min_size=step.min_size,
            channel_axis=channel_axis,
        )
    np.testing.assert_array_equal(block, expected + 1)
    assert block.min() == 1


# --- any chunking: every padded block is an instance map ---------------------------------------


@pytest.mark.parametrize("chunks", [(352, 349), (64, 100), (41, 35), (120, 25)])
@pytest.mark.parametrize(
    "step", [Slic(segment_size=64), Felzenszwalb(scale=50, halo=12)], ids=["slic", "felzenszwalb"]
)
def test_every_padded_block_is_an_instance_map_2d(chunks: tuple[int, int], step: Step) -> None:
    """Felzenszwalb labels the whole padded block; slic labels every pixel of the image
    in it but for a margin narrower than S at the block's edges (0), and nothing
    outside the image."""
    values = landsat()
    blocks, halo, data = padded_blocks(values, chunks, step)
    for index, block in blocks.items():
        sizes = [data.chunks[axis + 1][i] for axis, i in enumerate(index)]
        assert block.shape == tuple(size + 2 * h for size, h in zip(sizes, halo, strict=True))
        assert block.dtype.kind in "iu"
        if isinstance(step, Felzenszwalb):
            assert block.min() >= 1
            continue
        inner, image = np.zeros(block.shape, bool), np.zeros(block.shape, bool)
        inner[8:-8, 8:-8] = True  # S = 8
        origin = [
            int(np.sum(data.chunks[axis + 1][:i])) - h
            for axis, (i, h) in enumerate(zip(index, halo, strict=True))
        ]
        image[
            tuple(slice(max(0, -o), n - o) for o, n in zip(origin, values.shape[1:], strict=True))
        ] = True
        assert block[inner & image].min() >= 1
        assert not block[~image].any()
    raw = step.apply(values[:, :50, :60], step.fit(data, None))
    assert raw.shape == (50, 60) and raw.dtype.kind in "iu" and raw.min() == 1


# --- slic's grid is the image's, whatever the chunks ------------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
def test_skimage_puts_the_same_grid_on_every_region_of_whole_cells(ndim: int) -> None:
    """What the step relies on: for a region whose sides are multiples of S and
    ``n_segments`` its number of S-cells, scikit-image's grid has step S and the
    same first centre g whatever the region's shape (S // 2 in 2D, where the step is
    a square root; in 3D its cube root of S ** 3 falls just short of S for S >= 4,
    so g = (S - 1) // 2 there)."""
    rng = np.random.default_rng(0)
    for size in range(1, 41):
        expected = size // 2 if ndim == 2 or size < 4 else (size - 1) // 2
        for _ in range(6):
            cells = rng.integers(1, 7, ndim)
            shape = tuple(int(c) * size for c in cells)
            grid = regular_grid((1,) * (3 - ndim) + shape, int(np.prod(cells)))[3 - ndim :]
            assert all((s.step or 1) == size for s in grid), (size, shape, grid)
            assert all((s.start or 0) == expected for s in grid), (size, shape, grid)


@pytest.mark.parametrize(
    ("shape", "chunks", "segment_size"),
    [
        ((104, 120), (40, 48), 64),
        ((104, 120), (104, 30), 64),
        ((100, 90), (50, 45), 64),  # not multiples of S = 8: the last cells are cut
        ((30, 42, 48), (15, 22, 17), 27),
    ],
)
def test_a_flat_image_gets_the_whole_image_tiles_in_every_chunking(
    shape: tuple[int, ...], chunks: tuple[int, ...], segment_size: int
) -> None:
    """With nothing to follow, SLIC's superpixels are its grid's cells: the stitched
    result is exactly the whole image's tiling, which needs one grid for all blocks."""
    values = np.full((1, *shape), 7, dtype=np.uint8)
    step = Slic(segment_size=segment_size)
    labels, report = stitched_slic(values, chunks, step)
    reference = skimage_slic(values, step)
    assert reference.max() == math.prod(-(-n // step.grid_step(len(shape))) for n in shape)
    assert_same_partition(labels, reference)
    assert report.fragments == 0 and report.matched == report.seam_pieces > 0


@pytest.mark.parametrize("chunks", [(128, 128), (200, 300), (140, 180)])
def test_slic_on_the_slide_matches_the_whole_image(chunks: tuple[int, int]) -> None:
    """RGB, S = 16, default halo 3 * S = 48; (200, 300) and (140, 180) cut it unevenly."""
    values = slide()
    step = Slic(segment_size=256)  # the default compactness, 1
    assert step.halo(2) == (48, 48)
    labels, report = stitched_slic(values, chunks, step)
    assert object_f1(labels, skimage_slic(values, step)) >= 0.98
    assert report.matched > 20 * report.fragments


@pytest.mark.parametrize("chunks", [(20, 50, 50), (20, 40, 64)])
def test_slic_on_3d_nuclei_matches_the_whole_image(chunks: tuple[int, int, int]) -> None:
    """uint16, S = 5 (125 voxels), halo 3 * S = 15; a low compactness, so that
    superpixels follow the nuclei and cross the seams."""
    values = nuclei_volume()
    step = Slic(segment_size=125, compactness=0.1)
    assert step.halo(3) == (15, 15, 15)
    labels, report = stitched_slic(values, chunks, step)
    assert object_f1(labels, skimage_slic(values, step)) >= 0.98
    assert report.seam_pieces > 0


# --- slic weighs colour on the whole image's range, not each block's ---------------------------


def test_slic_fit_is_the_range_of_the_valid_pixels() -> None:
    values = landsat()
    valid = np.ones(values.shape[1:], dtype=bool)
    valid[:50] = False
    values[:, :50] = 255  # nodata fill
    data = da.from_array(values, chunks=(6, 64, 64))
    assert Slic().fit(data, None) == SlicFit(255 - values.min(), (352, 349))
    kept = values[:, valid]
    assert Slic().fit(data, da.from_array(valid, chunks=64)).span == kept.max() - kept.min()
    assert Slic().fit(data, da.from_array(np.zeros_like(valid), chunks=64)).span == 0.0


def test_slic_undoes_the_stretch_of_a_low_contrast_block() -> None:
    """A block with a quarter of the image's contrast is not stretched to full contrast.

    scikit-image rescales every block to [0, 1]; with the image's range as the
    fit, the block is segmented as its colours stand in the whole image: like
    the full-contrast block with 4 times the compactness.
    """
    block = landsat()[:, :84, :91].astype(np.float64)  # multiples of S = 7
    span = float(block.max() - block.min())
    step = Slic(segment_size=50)
    got = step.apply(block / 4, SlicFit(span, (84, 91)))
    expected = slic(
        np.moveaxis(block, 0, -1),
        n_segments=12 * 13,
        compactness=step.compactness * 4,
        convert2lab=False,
        start_label=1,
        channel_axis=-1,
    )
    np.testing.assert_array_equal(got, expected)
    stretched = step.apply(block / 4, SlicFit(span / 4, (84, 91)))  # the block's own range
    assert not np.array_equal(stretched, got)
    np.testing.assert_array_equal(step.apply(block / 4, None), stretched)


# --- halos and parameters -----------------------------------------------------------------


def test_halos() -> None:
    assert Slic().grid_step(2) == 20 and Slic().halo(2) == (60, 60)  # 3 * S
    assert Slic(segment_size=400).halo(3) == (21, 21, 21)  # S = round(7.37) = 7
    assert Slic(segment_size=1).halo(3) == (3, 3, 3)
    assert Slic(halo=7).halo(3) == (7, 7, 7)
    with pytest.raises(InputValueError, match=r"halo of 19 is narrower than the grid step 20"):
        Slic(halo=19).halo(2)
    assert Felzenszwalb().halo(2) == (16, 16)
    assert Felzenszwalb(halo=0).halo(2) == (0, 0)
    assert Slic(halo=3).describe() == ("slic(halo=3, segment_size=400, compactness=1.0, sigma=0.0)")


def test_felzenszwalb_refuses_volumes_before_the_map() -> None:
    with pytest.raises(
        InputValueError,
        match=r"felzenszwalb\(halo=None, scale=1\.0.* 2D images only; the image is 3D",
    ):
        total_halo([Felzenszwalb()], 3)


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (Slic, {"segment_size": 0}, "segment_size"),
        (Slic, {"compactness": 0}, "compactness"),
        (Slic, {"compactness": float("inf")}, "compactness"),
        (Slic, {"sigma": -1}, "sigma"),
        (Slic, {"halo": -2}, "halo"),
        (Slic, {"n_segments": 10}, "n_segments"),
        (Felzenszwalb, {"scale": 0}, "scale"),
        (Felzenszwalb, {"sigma": -0.5}, "sigma"),
        (Felzenszwalb, {"min_size": -1}, "min_size"),
        (Felzenszwalb, {"halo": 1.5}, "halo"),
    ],
)
def test_bad_parameters_are_refused_when_the_step_is_made(
    cls: type[Step], params: dict, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        cls(**params)


@pytest.mark.parametrize("chunks", [(128, 128), (200, 300)])
def test_felzenszwalb_on_the_slide_matches_the_whole_image(chunks: tuple[int, int]) -> None:
    values = slide()
    step = Felzenszwalb()
    (halo, _) = step.halo(2)
    # Like every step, it sees the image's edges extended by reflection.
    padded = np.pad(np.moveaxis(values, 0, -1), [(halo, halo), (halo, halo), (0, 0)], "symmetric")
    reference = felzenszwalb(padded, scale=step.scale, sigma=step.sigma, min_size=step.min_size)
    labels, report = stitched_slic(values, chunks, step)
    assert object_f1(labels, reference[halo:-halo, halo:-halo] + 1) >= 0.98
    assert report.matched > 20 * report.fragments
