"""read_nifti against nibabel's own full reads, transposed to (z, y, x)."""

from __future__ import annotations

import gzip
import pickle
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nibabel.affines import apply_affine

from pipeline.errors import InputValueError, ReadError, UnsupportedInputError
from pipeline.io._image import Image
from pipeline.io._nifti import read_nifti
from pipeline.io._open import open_image
from tests.conftest import WORKFLOW_DATA

CH2BET = WORKFLOW_DATA / "ch2bet.nii.gz"  # 181 x 217 x 181 uint8, 1 mm, RAS


def read(path: str | Path, **kwargs: Any) -> Image:
    options: dict[str, Any] = {"level": None, "bands": None, "chunks": None}
    return read_nifti(str(path), **(options | kwargs))


def load(path: str | Path) -> Any:
    return nibabel.load(str(path))


def reference(path: str | Path) -> np.ndarray:
    """nibabel's full read (scaled as its dataobj scales), axes reversed: (k, j, i[, ...])."""
    return np.asarray(load(path).dataobj).T


def rotation(degrees: Sequence[float]) -> np.ndarray:
    """A proper rotation about x, then y, then z."""
    out = np.eye(3)
    for axis, angle in enumerate(np.radians(degrees)):
        c, s = np.cos(angle), np.sin(angle)
        turn = np.eye(3)
        a, b = [i for i in range(3) if i != axis]
        turn[a, a], turn[a, b], turn[b, a], turn[b, b] = c, -s, s, c
        out = turn @ out
    return out


def oblique_affine(zooms: Sequence[float]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation([10, -25, 40]) @ np.diag(zooms)
    affine[:3, 3] = [-31.5, 12.25, 7.0]
    return affine


def save(path: Path, data: np.ndarray, affine: np.ndarray, **header: Any) -> Path:
    image = nibabel.Nifti1Image(data, affine)
    if "units" in header:
        image.header.set_xyzt_units(xyz=header["units"])
    if "slope" in header:
        image.header.set_slope_inter(header["slope"], header["inter"])
    nibabel.save(image, str(path))
    return path


def random_voxels(shape: Sequence[int], count: int, seed: int = 0) -> np.ndarray:
    """``count`` (i, j, k) voxel indices, the corners among them."""
    rng = np.random.default_rng(seed)
    corners = [[0, 0, 0], [n - 1 for n in shape[:3]]]
    return np.vstack([corners, rng.integers(0, shape[:3], size=(count, 3))])


def assert_affine_matches_nibabel(
    image: Image, nifti_affine: np.ndarray, shape: Sequence[int]
) -> None:
    assert image.affine is not None
    for i, j, k in random_voxels(shape, 8):
        ours = image.affine @ np.array([k, j, i, 1.0])
        np.testing.assert_allclose(ours[:3], apply_affine(nifti_affine, (i, j, k)), atol=1e-9)
        assert ours[3] == 1.0


# --- the real brain --------------------------------------------------------------------------


def test_real_volume_matches_nibabel() -> None:
    image = read(CH2BET)
    assert image.axes == "zyx"
    assert image.shape == (181, 217, 181)
    assert image.dtype == np.uint8
    assert image.data.chunksize == (64, 64, 64)
    assert image.spacing == (1.0, 1.0, 1.0)
    assert image.units == "mm"  # the file says "unknown": NIfTI's default
    assert image.level == 0 and image.levels == ((181, 217, 181),)
    assert image.source == str(CH2BET)
    np.testing.assert_array_equal(image.data.compute(), reference(CH2BET))
    assert_affine_matches_nibabel(image, load(CH2BET).affine, (181, 217, 181))


def test_real_volume_graph_holds_no_pixels() -> None:
    image = read(CH2BET, chunks=32)
    graph = dict(image.data.__dask_graph__())
    assert len(graph) == 6 * 7 * 6 + 1  # one task per chunk, and the volume's stand-in
    size = len(pickle.dumps(graph))
    assert size < 200 * len(graph), size  # a key, a path and slices per task
    assert size < image.data.nbytes // 100
    (volume,) = (v for v in graph.values() if not hasattr(v, "dependencies"))  # not a task
    assert type(volume).__name__ == "_NiftiVolume"
    assert len(pickle.dumps(volume)) < 500


def test_relative_path_is_made_absolute_for_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(WORKFLOW_DATA)
    image = read("ch2bet.nii.gz", chunks=100)
    monkeypatch.chdir(WORKFLOW_DATA.parent)  # a worker's working directory may be anywhere
    np.testing.assert_array_equal(image.data[50:60].compute(), reference(CH2BET)[50:60])


@pytest.mark.cluster
def test_real_volume_on_a_cluster_of_processes(cluster_client: Any) -> None:
    image = open_image(CH2BET, chunks=(50, 80, 100))
    expected = reference(CH2BET)
    computed = cluster_client.compute(image.data).result()
    np.testing.assert_array_equal(computed, expected)
    brain = cluster_client.compute((image.data > 0).sum()).result()
    assert int(brain) == int((expected > 0).sum())


# --- synthetic files -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize(
    "chunks",
    [None, 1, 3, (2, 5, 4), (6, 7, 5), 1000],  # chunks of 1, odd, exact, one chunk for all
)
def test_values_and_spacing_of_a_non_isotropic_volume(
    tmp_path: Path, suffix: str, chunks: Any
) -> None:
    data = np.arange(5 * 7 * 6, dtype=np.float32).reshape(5, 7, 6)  # (i, j, k)
    path = save(tmp_path / f"volume{suffix}", data, np.diag([0.5, 0.8, 2.5, 1.0]))
    image = read(path, chunks=chunks)
    assert image.shape == (6, 7, 5)
    assert image.spacing == (2.5, pytest.approx(0.8), 0.5)
    np.testing.assert_array_equal(image.data.compute(), reference(path))
    np.testing.assert_array_equal(image.data.compute(), data.transpose(2, 1, 0))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_oblique_affine_maps_voxels_like_nibabel(tmp_path: Path, suffix: str) -> None:
    zooms = (0.7, 1.1, 2.0)
    affine = oblique_affine(zooms)
    data = np.random.default_rng(1).integers(0, 1000, size=(9, 8, 7), dtype=np.int32)
    path = save(tmp_path / f"oblique{suffix}", data, affine)
    image = read(path, chunks=4)
    np.testing.assert_allclose(load(path).affine, affine, atol=1e-6)
    assert image.spacing == pytest.approx(zooms[::-1])
    assert_affine_matches_nibabel(image, load(path).affine, data.shape)
    np.testing.assert_array_equal(image.data.compute(), reference(path))


def test_scaled_int16_reads_as_nibabel_scales_it(tmp_path: Path) -> None:
    stored = np.arange(-60, 60, dtype=np.int16).reshape(4, 5, 6)
    path = save(tmp_path / "scaled.nii.gz", stored, np.eye(4), slope=0.25, inter=-3.0)
    image = read(path, chunks=(3, 2, 3))
    expected = reference(path)
    assert image.dtype == expected.dtype and image.dtype.kind == "f"
    np.testing.assert_array_equal(image.data.compute(), expected)
    np.testing.assert_allclose(image.data.compute(), stored.T * 0.25 - 3.0)


def test_four_dimensional_file_has_channels(tmp_path: Path) -> None:
    data = np.arange(5 * 6 * 7 * 3, dtype=np.uint16).reshape(5, 6, 7, 3)  # (i, j, k, t)
    path = save(tmp_path / "channels.nii.gz", data, np.diag([1.0, 1.5, 2.0, 1.0]))
    image = read(path, chunks=4)
    assert image.axes == "czyx"
    assert image.shape == (3, 7, 6, 5)
    assert image.levels == ((3, 7, 6, 5),)
    assert image.data.chunksize == (3, 4, 4, 4)
    assert image.spacing == (2.0, 1.5, 1.0)
    np.testing.assert_array_equal(image.data.compute(), reference(path))
    assert_affine_matches_nibabel(image, load(path).affine, data.shape)


@pytest.mark.parametrize("bands", [[2], [3, 1], [1, 2, 3]])
def test_bands_select_channels(tmp_path: Path, bands: list[int]) -> None:
    data = np.arange(4 * 5 * 6 * 3, dtype=np.int16).reshape(4, 5, 6, 3)
    path = save(tmp_path / "channels.nii", data, np.eye(4))
    image = open_image(path, bands=bands)
    assert image.data.chunks[0] == (len(bands),)
    expected = reference(path)[[b - 1 for b in bands]]
    np.testing.assert_array_equal(image.data.compute(), expected)


@pytest.mark.parametrize(
    ("units", "name", "to_mm"), [("mm", "mm", 1.0), ("micron", "um", 1e-3), ("meter", "m", 1e3)]
)
def test_units_and_affine_in_millimetres(
    tmp_path: Path, units: str, name: str, to_mm: float
) -> None:
    affine = oblique_affine((3.0, 4.0, 5.0))
    path = save(tmp_path / "units.nii", np.zeros((3, 4, 5), np.uint8), affine, units=units)
    image = read(path)
    assert image.units == name
    assert image.spacing == pytest.approx((5.0, 4.0, 3.0))  # in the file's unit
    assert image.affine is not None
    for i, j, k in random_voxels((3, 4, 5), 4):
        world = image.affine @ np.array([k, j, i, 1.0])
        np.testing.assert_allclose(world[:3], apply_affine(affine, (i, j, k)) * to_mm, atol=1e-6)


def test_big_endian_file_reads_in_native_byte_order(tmp_path: Path) -> None:
    data = np.arange(-30, 30, dtype=np.int16).reshape(3, 4, 5)
    header = nibabel.Nifti1Header(endianness=">")
    header.set_data_dtype(np.int16)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4), header), str(tmp_path / "big.nii"))
    expected = reference(tmp_path / "big.nii")
    assert expected.dtype == np.dtype(">i2")
    image = read(tmp_path / "big.nii", chunks=2)
    assert image.dtype == np.dtype("=i2") and image.dtype.isnative
    computed = image.data.compute()
    assert computed.dtype.isnative
    np.testing.assert_array_equal(computed, expected)
    np.testing.assert_array_equal(computed, data.T)


def test_file_url(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = save(tmp_path / "a volume.nii.gz", data, np.eye(4))
    image = open_image(path.as_uri())
    np.testing.assert_array_equal(image.data.compute(), data.T)


def test_file_is_read_when_chunks_are_computed(tmp_path: Path) -> None:
    path = save(tmp_path / "late.nii", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    image = read(path)
    path.unlink()
    with pytest.raises(FileNotFoundError):
        image.data.compute()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
    chunks=st.tuples(st.integers(1, 10), st.integers(1, 10), st.integers(1, 10)),
    gz=st.booleans(),
)
def test_any_shape_and_chunks(
    tmp_path: Path, shape: tuple[int, int, int], chunks: tuple[int, int, int], gz: bool
) -> None:
    data = np.random.default_rng(sum(shape)).integers(0, 255, size=shape, dtype=np.uint8)
    path = tmp_path / f"{uuid.uuid4().hex}.nii{'.gz' if gz else ''}"
    save(path, data, np.eye(4))
    image = read(path, chunks=chunks)
    assert image.data.chunksize == tuple(
        min(c, n) for c, n in zip(chunks, shape[::-1], strict=True)
    )
    np.testing.assert_array_equal(image.data.compute(), data.T)


# --- bad input, through open_image ----------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match=r"absent\.nii\.gz: no such file or folder; check the path"):
        open_image(tmp_path / "absent.nii.gz")


def test_not_a_nifti_file(tmp_path: Path) -> None:
    path = tmp_path / "text.nii.gz"
    path.write_bytes(gzip.compress(b"this is no NIfTI header" * 20))
    with pytest.raises(ReadError, match=r"text\.nii\.gz: cannot be read as NIfTI"):
        open_image(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = save(tmp_path / "cut.nii", np.ones((20, 20, 20), np.int16), np.eye(4))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ReadError, match=r"cut\.nii: the file is truncated: 5000 bytes"):
        open_image(path)


def test_level_beyond_zero(tmp_path: Path) -> None:
    path = save(tmp_path / "volume.nii", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    assert open_image(path, level=0).level == 0
    with pytest.raises(InputValueError, match=r"volume\.nii: level 1 does not exist"):
        open_image(path, level=1)


def test_bands_of_a_3d_volume(tmp_path: Path) -> None:
    path = save(tmp_path / "volume.nii", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    with pytest.raises(InputValueError, match=r"volume\.nii: bands \[1\] given.*leave bands out"):
        open_image(path, bands=[1])


def test_band_out_of_range(tmp_path: Path) -> None:
    path = save(tmp_path / "four.nii", np.zeros((2, 2, 2, 3), np.uint8), np.eye(4))
    with pytest.raises(InputValueError, match=r"four\.nii: band 4 is out of range.*1 to 3"):
        open_image(path, bands=[4])


@pytest.mark.parametrize("chunks", [0, (4, 4), -2])
def test_bad_chunks(tmp_path: Path, chunks: Any) -> None:
    path = save(tmp_path / "volume.nii", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    with pytest.raises(InputValueError, match=r"volume\.nii: chunks must be a positive integer"):
        open_image(path, chunks=chunks)


@pytest.mark.parametrize("shape", [(4, 5), (2, 2, 2, 2, 2)])
def test_unsupported_dimensions(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = save(tmp_path / "odd.nii", np.zeros(shape, np.uint8), np.eye(4))
    with pytest.raises(UnsupportedInputError, match=rf"odd\.nii: a {len(shape)}D NIfTI"):
        open_image(path)


def test_complex_volume(tmp_path: Path) -> None:
    path = save(tmp_path / "complex.nii", np.zeros((2, 2, 2), np.complex64), np.eye(4))
    with pytest.raises(UnsupportedInputError, match=r"complex\.nii: NIfTI dtype complex64"):
        open_image(path)


def test_remote_url() -> None:
    with pytest.raises(UnsupportedInputError, match="local files only; copy it"):
        open_image("https://example.org/brain.nii.gz")
