"""read_tiff against tifffile's own full reads: a real whole-slide image, a real
z-stack, and pyramidal OME-TIFF / SVS files written with tifffile."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.data import sample_path
from pipeline.errors import InputValueError, ReadError, UnsupportedInputError
from pipeline.io._open import open_image
from pipeline.io._tiff import is_georeferenced, read_tiff
from tests.conftest import WORKFLOW_DATA

SVS = str(WORKFLOW_DATA / "cmu_small_region.svs")  # 2967 x 2220 RGB, JPEG tiles of 240, MPP 0.499
NUCLEI = str(sample_path("nuclei.tif"))  # 60 x 256 x 256 uint16, striped pages, axes QYX
L7 = str(sample_path("L7_ETMs.tif"))


def reference(path: str, level: int = 0) -> np.ndarray:
    """tifffile's full read of ``level`` of the first series, in segpipe axis order."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0].levels[level]
        data, axes = series.asarray(), series.axes
    if axes.endswith("S"):
        return np.moveaxis(data, -1, 0)
    return data.swapaxes(0, 1) if axes == "ZCYX" else data


@pytest.fixture(scope="module")
def ome_pyramid(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray]:
    """A CZYX OME-TIFF with two sub-resolutions in SubIFDs, tiled 64, sizes in um and nm."""
    data = np.random.default_rng(0).integers(0, 60_000, (2, 5, 300, 400), dtype=np.uint16)
    path = str(tmp_path_factory.mktemp("ome") / "pyramid.ome.tif")
    metadata = {
        "axes": "CZYX",
        "PhysicalSizeX": 0.25,
        "PhysicalSizeY": 0.3,
        "PhysicalSizeZ": 1500.0,
        "PhysicalSizeZUnit": "nm",
    }
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(data, subifds=2, tile=(64, 64), compression="zlib", metadata=metadata)
        for step in (2, 4):
            tif.write(data[..., ::step, ::step], subfiletype=1, tile=(64, 64), compression="zlib")
    return path, data


@pytest.fixture(scope="module")
def svs_pyramid(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray]:
    """An Aperio-style file: baseline, thumbnail, two reduced levels, label; MPP 0.25."""
    base = np.random.default_rng(1).integers(0, 255, (700, 520, 3), dtype=np.uint8)
    path = str(tmp_path_factory.mktemp("svs") / "slide.svs")
    header = "Aperio Image Library v12.0.0\r\n"
    tiled: dict[str, Any] = {
        "tile": (128, 128),
        "photometric": "rgb",
        "compression": "zlib",
        "metadata": None,
    }
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, **tiled, description=header + "520x700 (128x128)|AppMag = 20|MPP = 0.25")
        tif.write(base[::8, ::8], photometric="rgb", metadata=None, description=header)
        tif.write(base[::2, ::2], **tiled, description=header)
        tif.write(base[::4, ::4], **tiled, description=header)
        tif.write(base[:50, :60], photometric="rgb", metadata=None, subfiletype=1)
    return path, base


@pytest.mark.parametrize(
    ("bands", "chunks"),
    [(None, None), ([3, 1], 500), ([2], (241, 97)), (None, 10_000)],
)
def test_svs_pixels_equal_tifffile(bands: list[int] | None, chunks: object) -> None:
    image = open_image(SVS, bands=bands, chunks=chunks)  # type: ignore[arg-type]
    expected = reference(SVS)
    if bands is not None:
        expected = expected[[b - 1 for b in bands]]
    assert image.axes == "cyx"
    assert image.shape == expected.shape
    assert image.data.chunks[0] == (expected.shape[0],)
    np.testing.assert_array_equal(image.data.compute(), expected)


def test_svs_metadata() -> None:
    image = read_tiff(SVS, level=None, bands=None, chunks=None)
    assert image.spacing == (0.499, 0.499) and image.units == "um"
    assert image.levels == ((3, 2967, 2220),)  # the sample holds no reduced levels
    assert image.data.chunksize == (3, 240, 240)
    assert image.crs is None and image.transform is None and image.nodata is None
    assert image.source == SVS and image.level == 0


@settings(max_examples=20)
@given(rows=st.integers(50, 1000), cols=st.integers(50, 1000))
def test_asked_chunks_are_honoured_across_tiles(rows: int, cols: int) -> None:
    image = read_tiff(SVS, level=None, bands=[1], chunks=(rows, cols))
    row_chunks, col_chunks = image.data.chunks[1:]
    assert row_chunks[0] == min(rows, 2967) and col_chunks[0] == min(cols, 2220)
    corner = image.data[:, 200:500, 200:500].compute()  # the pixels, across tiles and chunks
    np.testing.assert_array_equal(corner, tifffile.imread(SVS)[200:500, 200:500, 0][None])


@pytest.mark.parametrize("level", range(3))
def test_svs_pyramid_levels_and_scaled_spacing(
    svs_pyramid: tuple[str, np.ndarray], level: int
) -> None:
    path, _ = svs_pyramid
    image = open_image(path, level=level)
    assert image.levels == ((3, 700, 520), (3, 350, 260), (3, 175, 130))
    assert image.spacing == (0.25 * 2**level, 0.25 * 2**level) and image.units == "um"
    np.testing.assert_array_equal(image.data.compute(), reference(path, level))


@pytest.mark.parametrize("chunks", [None, (1, 256, 256), (7, 50, 300), 1000])
def test_real_z_stack(chunks: object) -> None:
    image = open_image(NUCLEI, chunks=chunks)  # type: ignore[arg-type]
    assert image.axes == "zyx" and image.levels == ((60, 256, 256),)
    assert image.spacing is None and image.units is None  # the file does not say
    np.testing.assert_array_equal(image.data.compute(), reference(NUCLEI))


def test_z_stack_default_chunks_and_bands_refused() -> None:
    assert read_tiff(NUCLEI, level=None, bands=None, chunks=None).data.chunksize == (60, 256, 256)
    with pytest.raises(InputValueError, match=r"nuclei\.tif: bands given, .* has no channels"):
        open_image(NUCLEI, bands=[1])


@pytest.mark.parametrize(("level", "bands"), [(0, None), (1, [2]), (2, [2, 1])])
def test_ome_pyramid(
    ome_pyramid: tuple[str, np.ndarray], level: int, bands: list[int] | None
) -> None:
    path, data = ome_pyramid
    image = open_image(path, level=level, bands=bands)
    step = 2**level
    expected = data[:, :, ::step, ::step]
    if bands is not None:
        expected = expected[[b - 1 for b in bands]]
    assert image.axes == "czyx"
    assert image.levels == ((2, 5, 300, 400), (2, 5, 150, 200), (2, 5, 75, 100))
    assert image.spacing == pytest.approx((1.5, 0.3 * step, 0.25 * step))
    assert image.units == "um"
    assert image.data.chunksize[2:] == (64, 64)
    np.testing.assert_array_equal(image.data.compute(), expected)


def test_ome_zcyx_is_transposed(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 100, (4, 2, 40, 50), dtype=np.uint8)
    path = str(tmp_path / "zc.ome.tif")
    tifffile.imwrite(path, data, metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5})
    image = open_image(path, bands=[2])
    assert image.axes == "czyx" and image.spacing is None  # PhysicalSizeY/Z missing
    np.testing.assert_array_equal(image.data.compute(), data.swapaxes(0, 1)[[1]])


@pytest.mark.parametrize(
    ("shape", "options", "axes"),
    [
        ((130, 70), {"tile": (32, 32)}, "yx"),
        ((3, 50, 60), {"photometric": "rgb", "planarconfig": "separate"}, "cyx"),
        ((70, 90, 3), {"photometric": "rgb", "tile": (16, 32)}, "cyx"),
    ],
)
def test_plain_tiffs(tmp_path: Path, shape: tuple[int, ...], options: dict, axes: str) -> None:
    data = np.random.default_rng(3).integers(0, 255, shape, dtype=np.uint8)
    path = str(tmp_path / "plain.tif")
    tifffile.imwrite(path, data, **options)
    image = open_image(path, chunks=33)
    assert image.axes == axes
    np.testing.assert_array_equal(image.data.compute(), reference(path))
    assert image.data.chunksize[-2:] == (33, 33)  # as asked, across tiles


def test_graph_holds_no_pixels_and_one_task_per_chunk() -> None:
    image = read_tiff(SVS, level=None, bands=None, chunks=None)
    graph = dict(image.data.__dask_graph__())
    assert len(graph) == image.data.npartitions == 13 * 10
    assert len(cloudpickle.dumps(graph)) < os.path.getsize(SVS) / 20


@pytest.mark.cluster
def test_reads_on_a_cluster_of_processes(
    cluster_client: object, ome_pyramid: tuple[str, np.ndarray]
) -> None:
    image = open_image(SVS, bands=[2, 3], chunks=480)
    np.testing.assert_array_equal(image.data.compute(), reference(SVS)[1:])
    path, data = ome_pyramid
    np.testing.assert_array_equal(open_image(path, level=1).data.compute(), data[..., ::2, ::2])


def test_is_georeferenced(tmp_path: Path) -> None:
    assert is_georeferenced(L7) and is_georeferenced(str(WORKFLOW_DATA / "rgbn.tif"))
    assert not is_georeferenced(SVS) and not is_georeferenced(NUCLEI)
    path = str(tmp_path / "tiepoint.tif")
    tiepoint: list[Any] = [(33922, 12, 6, (0, 0, 0, 500000.0, 4600000.0, 0.0), False)]
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), extratags=tiepoint)
    assert not is_georeferenced(path)  # a tiepoint alone does not place the pixels
    scale = [(33550, 12, 3, (10.0, 10.0, 0.0), False)]
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), extratags=tiepoint + scale)
    assert is_georeferenced(path)


def test_unsupported_axes(tmp_path: Path) -> None:
    path = str(tmp_path / "time.ome.tif")
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), metadata={"axes": "TYX"})
    with pytest.raises(UnsupportedInputError, match=r"time\.ome\.tif: image axes 'TYX'"):
        open_image(path)


def test_complex_pixels_are_unsupported(tmp_path: Path) -> None:
    path = str(tmp_path / "complex.tif")
    tifffile.imwrite(path, np.zeros((8, 8), np.complex64))
    with pytest.raises(UnsupportedInputError, match=r"complex\.tif: pixel type complex64"):
        open_image(path)


def test_missing_file() -> None:
    with pytest.raises(ReadError, match=r"slide\.svs: no such file"):
        open_image("/nowhere/slide.svs")
    with pytest.raises(ReadError, match=r"slide\.svs: no such file"):
        read_tiff("/nowhere/slide.svs", level=None, bands=None, chunks=None)


def test_truncated_tiles_fail_at_open(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.ones((500, 300, 3), np.uint8), tile=(128, 128), photometric="rgb")
    os.truncate(path, os.path.getsize(path) // 2)
    with pytest.raises(ReadError, match=r"cut\.tif: the file is truncated.*download it again"):
        open_image(str(path))


def test_truncated_stack_fails_instead_of_losing_pages(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    shutil.copyfile(NUCLEI, path)
    os.truncate(path, os.path.getsize(path) // 2)  # tifffile alone reads page 0 as the image
    with pytest.raises(ReadError, match=r"cut\.tif: the file is truncated or damaged"):
        open_image(str(path))


def test_truncated_svs_fails_at_open(tmp_path: Path) -> None:
    path = tmp_path / "cut.svs"
    shutil.copyfile(SVS, path)
    os.truncate(path, 1_000_000)  # the directories of this file follow its tiles
    with pytest.raises(ReadError, match=r"cut\.svs: cannot be read as a TIFF.*download it again"):
        open_image(str(path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bands": [4]}, r"cmu_small_region\.svs: band 4 is out of range; it has bands 1 to 3"),
        ({"level": 1}, r"cmu_small_region\.svs: level 1 does not exist; it has levels 0 to 0"),
        ({"chunks": -5}, r"cmu_small_region\.svs: chunks must be a positive integer"),
        ({"chunks": (1, 2, 3)}, r"cmu_small_region\.svs: chunks must be .* \(2 for 'cyx'\)"),
    ],
)
def test_bad_arguments_name_the_file_and_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(InputValueError, match=message):
        open_image(SVS, **kwargs)
