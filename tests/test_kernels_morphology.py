"""Opening and closing in chunks against scipy on the whole mask, extended by reflection."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from pydantic import ValidationError
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import ball, disk

from pipeline.data import sample_path
from pipeline.errors import InputValueError
from pipeline.kernels._morphology import Closing, Opening, footprint
from pipeline.kernels._threshold import Threshold
from tests.test_kernels_preprocess import run_chunked

LANDSAT = sample_path("L7_ETMs.tif")
NUCLEI = sample_path("nuclei.tif")
CHUNKS_2D = [(1000, 1000), (41, 31), (11, 13), (5, 7)]  # on 120 x 90
CHUNKS_3D = [(1000, 1000, 1000), (7, 13, 11), (10, 20, 30)]  # on 20 x 60 x 60
OPERATIONS = {
    "opening": (Opening, ndimage.binary_opening),
    "closing": (Closing, ndimage.binary_closing),
}


def _band(number: int) -> np.ndarray:
    with rasterio.open(LANDSAT) as src:
        return np.asarray(src.read(number))[:120, :90]


def _nuclei() -> np.ndarray:
    return np.asarray(tifffile.imread(NUCLEI)[20:40, 100:160, 90:150])


def _structure(shape: str, radius: int, ndim: int) -> np.ndarray:
    """skimage's disk / ball, or a full cube: independent of our footprint()."""
    if shape == "cube":
        return np.ones((2 * radius + 1,) * ndim, dtype=bool)
    return (disk if ndim == 2 else ball)(radius).astype(bool)


def _reference(mask: np.ndarray, operation: str, radius: int, shape: str) -> np.ndarray:
    """The operation on the mask extended by reflection (far more than it reaches)."""
    pad = 4 * radius
    padded = np.pad(mask, pad, mode="symmetric")
    done = OPERATIONS[operation][1](padded, structure=_structure(shape, radius, mask.ndim))
    return np.asarray(done[(slice(pad, -pad),) * mask.ndim])


def _run(image: np.ndarray, operation: str, radius: int, shape: str, chunks: tuple) -> None:
    step = OPERATIONS[operation][0](radius=radius, footprint=shape)
    sizes = da.from_array(image, chunks=chunks).chunks
    if any(min(s) < 2 * radius and len(s) > 1 for s in sizes):
        with pytest.raises(InputValueError, match="smaller than the halo"):
            run_chunked(image[None], chunks, [Threshold(method="otsu"), step])
        return
    result, _, mapped = run_chunked(image[None], chunks, [Threshold(method="otsu"), step])
    mask = image > threshold_otsu(image)
    assert mapped.dtype == result.dtype == bool
    np.testing.assert_array_equal(result, _reference(mask, operation, radius, shape))


@pytest.mark.parametrize("chunks", CHUNKS_2D)
@pytest.mark.parametrize(("radius", "shape"), [(1, "ball"), (2, "cube"), (3, "ball")])
@pytest.mark.parametrize("operation", ["opening", "closing"])
def test_2d_equals_scipy_on_the_reflected_mask(
    operation: str, radius: int, shape: str, chunks: tuple[int, int]
) -> None:
    _run(_band(4), operation, radius, shape, chunks)


@pytest.mark.parametrize("chunks", CHUNKS_3D)
@pytest.mark.parametrize(("radius", "shape"), [(1, "cube"), (2, "ball")])
@pytest.mark.parametrize("operation", ["opening", "closing"])
def test_3d_equals_scipy_on_the_reflected_mask(
    operation: str, radius: int, shape: str, chunks: tuple[int, int, int]
) -> None:
    _run(_nuclei(), operation, radius, shape, chunks)


def test_the_reflected_edge_is_not_background() -> None:
    # A band 3 pixels thin along the image edge is 6 thick with its reflection, so a
    # 5 x 5 square fits it: it stays (scipy alone, background outside, removes it).
    mask = np.zeros((12, 12), dtype=bool)
    mask[:3, 3:9] = True
    steps = [Threshold(method="manual", value=0.5), Opening(radius=2, footprint="cube")]
    result, _, _ = run_chunked(mask[None].astype(np.uint8), (6, 6), steps)
    np.testing.assert_array_equal(result, mask)
    assert not ndimage.binary_opening(mask, structure=np.ones((5, 5), dtype=bool)).any()


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
@pytest.mark.parametrize("ndim", [2, 3])
def test_ball_footprint_is_skimage_disk_and_ball(radius: int, ndim: int) -> None:
    np.testing.assert_array_equal(footprint("ball", radius, ndim), _structure("ball", radius, ndim))
    assert footprint("cube", radius, ndim).all()
    assert footprint("cube", radius, ndim).shape == (2 * radius + 1,) * ndim


def test_halo_is_twice_the_radius_and_the_input_a_mask() -> None:
    for step in (Opening(radius=3), Closing(radius=3, footprint="cube")):
        assert step.halo(2) == (6, 6) and step.halo(3) == (6, 6, 6)
        assert step.accepts == ("mask",) and step.output == "mask"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"radius": 0}, "radius\n.*greater than or equal to 1"),
        ({"radius": -2}, "radius"),
        ({}, "radius\n.*Field required"),
        ({"radius": 2, "footprint": "diamond"}, "footprint\n.*'ball' or 'cube'"),
        ({"radius": 1.5}, "radius"),
    ],
)
@pytest.mark.parametrize("operation", ["opening", "closing"])
def test_bad_parameters_fail_at_construction(operation: str, params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OPERATIONS[operation][0](**params)
