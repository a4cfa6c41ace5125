"""grayscale: bands combined per pixel, the same in every chunking."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rasterio
from skimage.color import rgb2gray

import pipeline
from pipeline.kernels import Grayscale
from pipeline.workflow._fuse import fit_steps, map_steps
from tests.conftest import DATA


def _run(step: Grayscale, image: np.ndarray, chunks: object) -> np.ndarray:
    data = da.from_array(image, chunks=chunks)
    states = fit_steps(data, [step], None)
    return map_steps(data, [step], states, (0, 0)).compute()


@pytest.mark.parametrize("chunks", [(3, 373, 485), (3, 50, 77)])
def test_rgb_luminance_equals_skimage(chunks: tuple) -> None:
    with rasterio.open(DATA / "rmnp-rgb.tif") as src:
        rgb = src.read()
    gray = _run(Grayscale(), rgb, chunks)
    assert gray.shape == (1, *rgb.shape[1:]) and gray.dtype == np.float32
    expected = rgb2gray(np.moveaxis(rgb, 0, -1)) * 255  # skimage rescales uint8 to 0..1
    np.testing.assert_allclose(gray[0], expected, rtol=1e-5, atol=1e-3)


def test_weights_and_mean() -> None:
    bands = np.random.default_rng(1).integers(0, 200, (4, 30, 40)).astype(np.uint8)
    np.testing.assert_allclose(
        _run(Grayscale(), bands, (4, 7, 9))[0], bands.mean(axis=0), rtol=1e-6
    )
    weights = [0.5, 0.0, 2.0, -1.0]
    expected = np.tensordot(np.asarray(weights), bands.astype(np.float64), axes=1)
    got = _run(Grayscale(weights=weights), bands, (4, 30, 13))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_weights_must_match_the_bands() -> None:
    data = da.zeros((4, 8, 8), chunks=4)
    with pytest.raises(pipeline.InputValueError, match="3 weights for an image of 4 bands"):
        Grayscale(weights=[1, 1, 1]).fit(data, None)
