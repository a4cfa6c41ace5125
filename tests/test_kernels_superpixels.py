"""Superpixel steps: scikit-image's SLIC and Felzenszwalb on every padded block."""

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

from pipeline.data import sample_path
from pipeline.errors import InputValueError
from pipeline.kernels import Step
from pipeline.kernels._superpixels import Felzenszwalb, Slic
from pipeline.workflow._fuse import check_chunks, fit_steps, map_steps, total_halo


def landsat() -> np.ndarray:
    with rasterio.open(sample_path("L7_ETMs.tif")) as src:
        return np.asarray(src.read())


def nuclei() -> np.ndarray:
    return np.asarray(tifffile.imread(sample_path("nuclei.tif"))[20:40, 60:124, 80:160])[None]


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


# --- one chunk over the whole image: exactly scikit-image on the padded image ------------------


@pytest.mark.parametrize(
    ("bands", "step"),
    [
        (slice(None), Slic()),
        (slice(3, 4), Slic(segment_size=150, compactness=0.05, sigma=1.0)),
        (None, Slic(segment_size=125, compactness=0.2)),
    ],
    ids=["6-band", "1-band-sigma", "3d"],
)
def test_slic_on_one_chunk_equals_skimage_on_the_padded_image(
    bands: slice | None, step: Slic
) -> None:
    values = nuclei() if bands is None else landsat()[bands]
    blocks, halo, _ = padded_blocks(values, values.shape[1:], step)
    (block,) = blocks.values()
    padded = symmetric_pad(values, halo)
    image, channel_axis = bands_last(padded)
    expected = slic(
        image,
        n_segments=round(math.prod(padded.shape[1:]) / step.segment_size),
        compactness=step.compactness,
        sigma=step.sigma,
        convert2lab=False,
        start_label=1,
        channel_axis=channel_axis,
    )
    assert block.shape == padded.shape[1:]
    np.testing.assert_array_equal(block, expected)
    sizes = np.bincount(block.ravel())[1:]
    assert block.min() == 1 and 0.5 < sizes.mean() / step.segment_size < 2


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


@pytest.mark.parametrize("chunks", [(352, 349), (64, 100), (37, 33), (120, 25)])
@pytest.mark.parametrize(
    "step", [Slic(segment_size=64), Felzenszwalb(scale=50, halo=12)], ids=["slic", "felzenszwalb"]
)
def test_every_padded_block_is_an_instance_map_2d(chunks: tuple[int, int], step: Step) -> None:
    values = landsat()
    blocks, halo, data = padded_blocks(values, chunks, step)
    for index, block in blocks.items():
        sizes = [data.chunks[axis + 1][i] for axis, i in enumerate(index)]
        assert block.shape == tuple(size + 2 * h for size, h in zip(sizes, halo, strict=True))
        assert block.dtype.kind in "iu" and block.min() >= 1
    raw = step.apply(values[:, :50, :60], step.fit(data, None))
    assert raw.shape == (50, 60) and raw.dtype.kind in "iu" and raw.min() == 1


@pytest.mark.parametrize("chunks", [(20, 64, 80), (10, 32, 20), (10, 22, 40)])
def test_slic_3d_blocks_keep_the_superpixel_size(chunks: tuple[int, int, int]) -> None:
    """n_segments follows each block's size, so superpixels are as large in every chunking."""
    step = Slic(segment_size=125, compactness=0.2)
    assert step.halo(3) == (10, 10, 10)
    blocks, _, _ = padded_blocks(nuclei(), chunks, step)
    for block in blocks.values():
        assert block.min() >= 1
        mean_size = block.size / np.unique(block).size
        assert 0.5 < mean_size / step.segment_size < 2


# --- slic weighs colour on the whole image's range, not each block's ---------------------------


def test_slic_fit_is_the_range_of_the_valid_pixels() -> None:
    values = landsat()
    valid = np.ones(values.shape[1:], dtype=bool)
    valid[:50] = False
    values[:, :50] = 255  # nodata fill
    data = da.from_array(values, chunks=(6, 64, 64))
    assert Slic().fit(data, None) == 255 - values.min()
    kept = values[:, valid]
    assert Slic().fit(data, da.from_array(valid, chunks=64)) == kept.max() - kept.min()
    assert Slic().fit(data, da.from_array(np.zeros_like(valid), chunks=64)) == 0.0


def test_slic_undoes_the_stretch_of_a_low_contrast_block() -> None:
    """A block with a quarter of the image's contrast is not stretched to full contrast.

    scikit-image rescales every block to [0, 1]; with the image's range as the
    fit, the block is segmented as its colours stand in the whole image: like
    the full-contrast block with 4 times the compactness.
    """
    block = landsat()[:, :80, :90].astype(np.float64)
    span = float(block.max() - block.min())
    step = Slic(segment_size=50)
    got = step.apply(block / 4, span)
    expected = slic(
        np.moveaxis(block, 0, -1),
        n_segments=round(80 * 90 / 50),
        compactness=step.compactness * 4,
        convert2lab=False,
        start_label=1,
        channel_axis=-1,
    )
    np.testing.assert_array_equal(got, expected)
    stretched = step.apply(block / 4, span / 4)  # as if the block were the whole image
    assert not np.array_equal(stretched, got)


# --- halos and parameters -----------------------------------------------------------------


def test_halos() -> None:
    assert Slic().halo(2) == (40, 40)  # two superpixel widths: 2 * sqrt(400)
    assert Slic(segment_size=400).halo(3) == (15, 15, 15)  # 2 * 400 ** (1 / 3) = 14.7
    assert Slic(halo=7).halo(3) == (7, 7, 7)
    assert Felzenszwalb().halo(2) == (16, 16)
    assert Felzenszwalb(halo=0).halo(2) == (0, 0)
    assert Slic(halo=3).describe() == ("slic(halo=3, segment_size=400, compactness=0.1, sigma=0.0)")


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
