"""read_zarr against zarr's own full reads: plain v2/v3 arrays, OME-Zarr 0.4/0.5, URLs."""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import zarr
from affine import Affine
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InputValueError, ReadError, UnsupportedInputError
from pipeline.io._image import Image
from pipeline.io._open import open_image
from pipeline.io._zarr import read_zarr

WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'
)


def read(path: str | Path, **kwargs: Any) -> Image:
    options: dict[str, Any] = {"level": None, "bands": None, "chunks": None}
    return read_zarr(str(path), **(options | kwargs))


def ramp(shape: Sequence[int], dtype: Any = np.uint16) -> np.ndarray:
    """Every voxel a different value (modulo the dtype), so a misplaced chunk shows."""
    return (np.arange(int(np.prod(shape))) % 60000).astype(dtype).reshape(shape)


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A fresh memory:// location, emptied after the test."""
    root = f"/segpipe-test-{uuid.uuid4().hex}"
    yield f"memory://{root}/image.zarr"
    memory = fsspec.filesystem("memory")
    if memory.exists(root):
        memory.rm(root, recursive=True)


# --- plain arrays, one base of cases for both zarr formats -------------------------------------


class PlainArrayCases:
    zarr_format: int

    def write(
        self,
        path: str | Path,
        data: np.ndarray,
        chunks: Sequence[int],
        attributes: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> zarr.Array:
        array = zarr.create_array(
            str(path),
            shape=data.shape,
            chunks=tuple(chunks),
            dtype=data.dtype,
            zarr_format=self.zarr_format,  # type: ignore[arg-type]
            attributes=attributes or {},
            **kwargs,
        )
        array[...] = data
        return array

    @pytest.mark.parametrize(
        ("shape", "chunks", "axes"),
        [
            ((13, 17), (4, 5), "yx"),
            ((7, 13, 17), (3, 4, 5), "zyx"),
            ((2, 7, 13, 17), (1, 3, 4, 5), "czyx"),
            ((5, 6), (5, 6), "yx"),  # one chunk the size of the image
        ],
    )
    def test_values_axes_and_stored_chunks(
        self, tmp_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], axes: str
    ) -> None:
        path = tmp_path / "image.zarr"
        self.write(path, ramp(shape), chunks)
        image = read(path)
        assert image.axes == axes
        assert image.level == 0 and image.levels == (shape,)
        assert image.source == str(path)
        expected_chunks = tuple(
            shape[0] if a == "c" else c for a, c in zip(axes, chunks, strict=True)
        )
        assert image.data.chunksize == expected_chunks
        np.testing.assert_array_equal(image.data.compute(), zarr.open_array(path)[...])
        assert image.crs is image.transform is image.nodata is image.spacing is None

    def test_georeference_attributes(self, tmp_path: Path) -> None:
        path = tmp_path / "dem.zarr"
        six = [10.0, 0.0, 500000.0, 0.0, -10.0, 4100000.0]
        attributes = {"crs": WKT, "transform": six, "nodata": -9999, "units": "m"}
        self.write(path, ramp((6, 9), np.float32), (4, 4), attributes)
        image = read(path)
        assert image.crs == WKT
        assert image.transform == Affine(*six)
        assert image.transform @ (1, 2) == (500010.0, 4099980.0)
        assert image.nodata == -9999.0
        assert image.units == "m"

    def test_segpipe_label_attributes(self, tmp_path: Path) -> None:
        # What write_labels_zarr records about a volume: axes, spacing, units, affine.
        path = tmp_path / "labels.zarr"
        affine = [[0.0, 0.0, 2.0, -90.0], [0.0, 1.5, 0.0, -120.0], [1.0, 0.0, 0.0, -70.0]]
        affine.append([0.0, 0.0, 0.0, 1.0])
        attributes = {"axes": "zyx", "spacing": [1.0, 1.5, 2.0], "units": "mm", "affine": affine}
        self.write(path, ramp((4, 5, 6), np.uint32), (2, 2, 2), attributes)
        image = read(path)
        assert image.axes == "zyx"
        assert image.spacing == (1.0, 1.5, 2.0)
        assert image.units == "mm"
        assert image.affine is not None
        np.testing.assert_array_equal(image.affine, affine)

    def test_axes_attribute_names_a_band_axis(self, tmp_path: Path) -> None:
        path = tmp_path / "rgb.zarr"
        data = ramp((3, 10, 12), np.uint8)
        self.write(path, data, (1, 4, 4), {"axes": "cyx"})
        image = read(path, bands=[3, 1])
        assert image.axes == "cyx"
        assert image.data.chunks[0] == (2,)
        np.testing.assert_array_equal(image.data.compute(), data[[2, 0]])

    @pytest.mark.parametrize(
        ("chunks", "expected"),
        [
            (None, (3, 4, 5)),
            (1, (1, 1, 1)),  # smaller than a stored chunk: as asked
            (4, (4, 4, 4)),  # cutting stored chunks: as asked
            ((5, 9, 11), (5, 9, 11)),  # one per axis, odd sizes
            ((7, 9, 11), (7, 9, 11)),  # the whole first axis
            ((3, 8, 10), (3, 8, 10)),  # multiples of the stored chunks
            (1000, (7, 13, 17)),  # larger than the image: the whole image
        ],
    )
    def test_chunks_are_as_asked(
        self, tmp_path: Path, chunks: Any, expected: tuple[int, ...]
    ) -> None:
        path = tmp_path / "image.zarr"
        data = ramp((7, 13, 17))
        self.write(path, data, (3, 4, 5))
        image = read(path, chunks=chunks)
        assert image.data.chunksize == expected
        np.testing.assert_array_equal(image.data.compute(), data)

    def test_file_url(self, tmp_path: Path) -> None:
        path = tmp_path / "image.zarr"
        data = ramp((9, 11))
        self.write(path, data, (4, 4))
        url = path.as_uri()
        assert url.startswith("file:///")
        image = open_image(url)
        assert image.source == url
        np.testing.assert_array_equal(image.data.compute(), data)

    def test_memory_url(self, memory_url: str) -> None:
        data = ramp((3, 9, 11), np.float32)
        self.write(memory_url, data, (2, 4, 4))
        image = open_image(memory_url, chunks=(1, 5, 5))
        assert image.axes == "zyx"
        assert image.data.chunksize == (1, 5, 5)
        np.testing.assert_array_equal(image.data.compute(), data)

    def test_graph_holds_no_pixels(self, tmp_path: Path) -> None:
        path = tmp_path / "big.zarr"
        data = ramp((512, 512))
        self.write(path, data, (64, 64))
        image = read(path)
        graph = dict(image.data.__dask_graph__())
        assert len(pickle.dumps(graph)) < data.nbytes // 20
        np.testing.assert_array_equal(
            image.data[100:200, 300:400].compute(), data[100:200, 300:400]
        )

    def test_relative_path_is_made_absolute_for_workers(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        data = ramp((6, 7))
        self.write(tmp_path / "image.zarr", data, (4, 4))
        monkeypatch.chdir(tmp_path)
        image = read("image.zarr")
        assert image.source == "image.zarr"
        monkeypatch.chdir(tmp_path.parent)  # a worker's working directory may be anywhere
        np.testing.assert_array_equal(image.data.compute(), data)

    def test_level_beyond_zero_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "image.zarr"
        self.write(path, ramp((4, 4)), (2, 2))
        assert open_image(path, level=0).level == 0
        with pytest.raises(InputValueError, match=r"image\.zarr: level 1 does not exist"):
            open_image(path, level=1)

    def test_non_numeric_dtype_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "complex.zarr"
        self.write(path, np.zeros((4, 4), np.complex64), (2, 2))
        with pytest.raises(UnsupportedInputError, match="complex64 is not supported"):
            open_image(path)


class TestPlainArrayV2(PlainArrayCases):
    zarr_format = 2

    def test_xarray_dimension_names(self, tmp_path: Path) -> None:
        path = tmp_path / "xarray.zarr"
        data = ramp((2, 5, 6))
        self.write(path, data, (1, 5, 6), {"_ARRAY_DIMENSIONS": ["band", "y", "x"]})
        image = read(path, bands=[2])
        assert image.axes == "cyx"
        np.testing.assert_array_equal(image.data.compute(), data[1:])

    def test_big_endian_reads_in_native_byte_order(self, tmp_path: Path) -> None:
        path = tmp_path / "big.zarr"
        data = ramp((5, 6)).astype(">u2")
        self.write(path, data, (2, 4))
        assert zarr.open_array(path).dtype == np.dtype(">u2")
        image = read(path)
        assert image.dtype.isnative
        computed = image.data.compute()
        assert computed.dtype == np.dtype("=u2")
        np.testing.assert_array_equal(computed, data)


class TestPlainArrayV3(PlainArrayCases):
    zarr_format = 3

    def test_dimension_names(self, tmp_path: Path) -> None:
        path = tmp_path / "named.zarr"
        data = ramp((2, 5, 6))
        self.write(path, data, (1, 2, 3), dimension_names=("c", "y", "x"))
        image = read(path)
        assert image.axes == "cyx"
        np.testing.assert_array_equal(image.data.compute(), data)

    def test_dimension_names_in_another_order_are_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "named.zarr"
        self.write(path, ramp((5, 6, 3)), (5, 6, 3), dimension_names=("y", "x", "c"))
        with pytest.raises(UnsupportedInputError, match=r"'yxc'.*dimension_names"):
            read(path)

    def test_sharded_array_reads_at_any_chunks(self, tmp_path: Path) -> None:
        path = tmp_path / "sharded.zarr"
        data = ramp((20, 24))
        self.write(path, data, (5, 6), shards=(10, 12))
        assert read(path).data.chunksize == (5, 6)  # the inner chunks by default
        image = read(path, chunks=7)  # across inner chunks and shards
        assert image.data.chunksize == (7, 7)
        np.testing.assert_array_equal(image.data.compute(), data)


# --- OME-Zarr images, one base of cases for NGFF 0.4 and 0.5 -------------------------------------

MICROMETER_AXES = [
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]
TIME_AXIS = {"name": "t", "type": "time", "unit": "second"}


class OmeZarrCases:
    version: str
    zarr_format: int

    def write(
        self,
        path: str | Path,
        levels: Sequence[np.ndarray],
        axes: list[dict[str, Any]],
        scales: Sequence[Sequence[float]],
        chunks: Sequence[int],
        overall_scale: Sequence[float] | None = None,
    ) -> None:
        """An OME-Zarr image written by hand after the NGFF spec of ``self.version``."""
        group = zarr.open_group(str(path), mode="w", zarr_format=self.zarr_format)  # type: ignore[arg-type]
        multiscale: dict[str, Any] = {
            "name": "test image",
            "axes": axes,
            "datasets": [
                {"path": f"s{i}", "coordinateTransformations": [{"type": "scale", "scale": s}]}
                for i, s in enumerate(scales)
            ],
            "type": "mean",
        }
        if overall_scale is not None:
            multiscale["coordinateTransformations"] = [{"type": "scale", "scale": overall_scale}]
        if self.version == "0.4":
            # NGFF 0.4: zarr v2, "multiscales" in the group's .zattrs, "/" chunk keys.
            multiscale["version"] = "0.4"
            group.attrs["multiscales"] = [multiscale]
            options: dict[str, Any] = {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
        else:
            # NGFF 0.5: zarr v3, everything under "ome" in zarr.json, named dimensions.
            group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
            options = {"dimension_names": [axis["name"] for axis in axes]}
        for i, level in enumerate(levels):
            array = group.create_array(
                f"s{i}", shape=level.shape, chunks=tuple(chunks), dtype=level.dtype, **options
            )
            array[...] = level

    def pyramid(self, tmp_path: Path, *, time: bool = False) -> tuple[Path, list[np.ndarray]]:
        full = ramp((3, 6, 21, 26))
        levels = [full, full[:, :, ::2, ::2]]
        scales = [[1.0, 2.0, 0.5, 0.5], [1.0, 2.0, 1.0, 1.0]]
        axes = MICROMETER_AXES
        if time:
            levels = [level[np.newaxis] for level in levels]
            scales = [[60.0, *s] for s in scales]
            axes = [TIME_AXIS, *axes]
        path = tmp_path / "image.ome.zarr"
        self.write(path, levels, axes, scales, (1,) * time + (1, 3, 8, 8))
        return path, levels

    def test_version_is_where_the_spec_puts_it(self, tmp_path: Path) -> None:
        path, _ = self.pyramid(tmp_path)
        if self.version == "0.4":
            assert json.loads((path / ".zattrs").read_text())["multiscales"][0]["version"] == "0.4"
        else:
            metadata = json.loads((path / "zarr.json").read_text())
            assert metadata["attributes"]["ome"]["version"] == "0.5"

    @pytest.mark.parametrize("time", [False, True])
    @pytest.mark.parametrize("level", [None, 0, 1])
    def test_levels(self, tmp_path: Path, level: int | None, time: bool) -> None:
        path, levels = self.pyramid(tmp_path, time=time)
        image = read(path, level=level)
        index = level or 0
        reference = np.asarray(zarr.open_array(str(path / f"s{index}"))[...])
        np.testing.assert_array_equal(reference, levels[index])
        if time:
            reference = reference[0]
        assert image.axes == "czyx"
        assert image.level == index
        assert image.levels == ((3, 6, 21, 26), (3, 6, 11, 13))
        assert image.spacing == [(2.0, 0.5, 0.5), (2.0, 1.0, 1.0)][index]
        assert image.units == "um"
        assert image.data.chunksize == (3, 3, 8, 8)
        np.testing.assert_array_equal(image.data.compute(), reference)

    def test_bands_and_chunks_on_a_level(self, tmp_path: Path) -> None:
        path, levels = self.pyramid(tmp_path, time=True)
        image = open_image(path, level=1, bands=[3, 1], chunks=(2, 9, 100))
        assert image.data.chunks[0] == (2,)
        assert image.data.chunksize == (2, 2, 9, 13)
        np.testing.assert_array_equal(image.data.compute(), levels[1][0][[2, 0]])

    def test_two_dimensional_image_and_overall_scale(self, tmp_path: Path) -> None:
        path = tmp_path / "slide.zarr"
        axes = [{"name": n, "type": "space", "unit": "millimeter"} for n in "yx"]
        full = ramp((40, 30), np.uint8)
        self.write(
            path,
            [full, full[::2, ::2]],
            axes,
            [[1, 1], [2, 2]],
            (16, 16),
            overall_scale=[0.25, 0.5],
        )
        image = read(path, level=1)
        assert image.axes == "yx"
        assert image.spacing == (0.5, 1.0)
        assert image.units == "mm"
        np.testing.assert_array_equal(image.data.compute(), full[::2, ::2])

    def test_memory_url(self, memory_url: str) -> None:
        full = ramp((3, 6, 21, 26))
        self.write(memory_url, [full], MICROMETER_AXES, [[1, 2, 0.5, 0.5]], (1, 3, 8, 8))
        image = read(memory_url, bands=[2])
        assert image.spacing == (2.0, 0.5, 0.5)
        np.testing.assert_array_equal(image.data.compute(), full[1:2])

    def test_level_out_of_range(self, tmp_path: Path) -> None:
        path, _ = self.pyramid(tmp_path)
        with pytest.raises(
            InputValueError, match=r"image\.ome\.zarr: level 2 does not exist.*0 to 1"
        ):
            open_image(path, level=2)

    def test_band_out_of_range(self, tmp_path: Path) -> None:
        path, _ = self.pyramid(tmp_path)
        with pytest.raises(
            InputValueError, match=r"image\.ome\.zarr: band 4 is out of range.*1 to 3"
        ):
            open_image(path, bands=[1, 4])

    def test_several_time_points_are_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "movie.zarr"
        self.write(
            path, [ramp((2, 5, 6))], [TIME_AXIS, *MICROMETER_AXES[2:]], [[1, 1, 1]], (1, 5, 6)
        )
        with pytest.raises(UnsupportedInputError, match="2 time points"):
            open_image(path)

    def test_spatial_axes_in_different_units_are_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "mixed.zarr"
        axes = [
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "millimeter"},
        ]
        self.write(path, [ramp((4, 5))], axes, [[1, 1]], (4, 5))
        with pytest.raises(UnsupportedInputError, match=r"mixed\.zarr: .*different units"):
            open_image(path)

    def test_missing_dataset_is_a_read_error(self, tmp_path: Path) -> None:
        path, _ = self.pyramid(tmp_path)
        group = zarr.open_group(str(path), mode="r+")
        attributes: dict[str, Any] = dict(group.attrs.asdict())
        multiscales = (
            attributes["ome"]["multiscales"] if "ome" in attributes else attributes["multiscales"]
        )
        multiscales[0]["datasets"][1]["path"] = "gone"
        group.attrs.update(attributes)
        with pytest.raises(ReadError, match=r"datasets\[1\] path 'gone' is not an array"):
            open_image(path)


class TestOmeZarr04(OmeZarrCases):
    version = "0.4"
    zarr_format = 2


class TestOmeZarr05(OmeZarrCases):
    version = "0.5"
    zarr_format = 3


# --- chunks as asked, for shapes one would not think of -------------------------------------


@given(
    shape=st.lists(st.integers(1, 12), min_size=2, max_size=3),
    data=st.data(),
)
def test_any_chunks_are_as_asked(shape: list[int], data: st.DataObject) -> None:
    stored = [data.draw(st.integers(1, n), label="stored") for n in shape]
    wanted = [data.draw(st.integers(1, 14), label="chunks") for _ in shape]
    values = ramp(shape)
    url = f"memory:///segpipe-hypothesis-{uuid.uuid4().hex}/image.zarr"
    try:
        array = zarr.create_array(url, shape=tuple(shape), chunks=tuple(stored), dtype=values.dtype)
        array[...] = values
        image = read(url, chunks=wanted)
        for sizes, want, n in zip(image.data.chunks, wanted, shape, strict=True):
            assert sizes[0] == min(want, n) and sum(sizes) == n
        np.testing.assert_array_equal(image.data.compute(), values)
    finally:
        fsspec.filesystem("memory").rm(
            url.removeprefix("memory://").rsplit("/", 1)[0], recursive=True
        )


# --- bad input, through open_image ----------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match=r"nothing\.zarr: no such file or folder; check the path"):
        open_image(tmp_path / "nothing.zarr")


def test_missing_url(memory_url: str) -> None:
    with pytest.raises(ReadError, match=rf"{memory_url}: no zarr array or group there"):
        open_image(memory_url)


def test_group_that_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "collection.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("first", shape=(2, 2), dtype="u1")
    group.create_array("second", shape=(2, 2), dtype="u1")
    with pytest.raises(
        UnsupportedInputError,
        match=r"collection\.zarr: a zarr group without OME-Zarr 'multiscales'.*first, second",
    ):
        open_image(path)


def test_unreadable_metadata(tmp_path: Path) -> None:
    path = tmp_path / "broken.zarr"
    path.mkdir()
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(ReadError, match=r"broken\.zarr: cannot be read as zarr"):
        open_image(path)


def test_bands_without_a_band_axis(tmp_path: Path) -> None:
    path = tmp_path / "gray.zarr"
    zarr.create_array(str(path), shape=(4, 4), dtype="u1")
    with pytest.raises(
        InputValueError, match=r"gray\.zarr: bands \[1\] given.*'yx'.*leave bands out"
    ):
        open_image(path, bands=[1])


@pytest.mark.parametrize("chunks", [0, (4, 4, 4), "64"])
def test_bad_chunks(tmp_path: Path, chunks: Any) -> None:
    path = tmp_path / "gray.zarr"
    zarr.create_array(str(path), shape=(4, 4), dtype="u1")
    with pytest.raises(InputValueError, match=r"gray\.zarr: chunks must be a positive integer"):
        open_image(path, chunks=chunks)


@pytest.mark.parametrize(
    ("attributes", "error", "match"),
    [
        ({"axes": "xy"}, UnsupportedInputError, "axes 'xy'.*'yx', 'cyx', 'zyx' or 'czyx'"),
        ({"axes": "zyx"}, UnsupportedInputError, "axes 'zyx'.*shape \\(4, 4\\)"),
        ({"transform": [1, 2, 3]}, ReadError, "transform must be a list of 6 numbers"),
        ({"crs": 4326}, ReadError, "crs must be a WKT string"),
        ({"nodata": "none"}, ReadError, "nodata must be a number"),
        ({"spacing": [1.0]}, ReadError, "spacing must be a list of 2 numbers"),
        ({"affine": [[1, 0], [0, 1]]}, ReadError, "affine must be a 4 x 4 matrix"),
    ],
)
def test_bad_attributes(
    tmp_path: Path, attributes: dict[str, Any], error: type[Exception], match: str
) -> None:
    path = tmp_path / "odd.zarr"
    zarr.create_array(str(path), shape=(4, 4), dtype="u1", attributes=attributes)
    with pytest.raises(error, match=rf"odd\.zarr: .*{match}"):
        open_image(path)


# --- a real cluster ----------------------------------------------------------------------------


@pytest.mark.cluster
def test_reads_on_a_cluster_of_processes(tmp_path: Path, cluster_client: Any) -> None:
    path = tmp_path / "image.ome.zarr"
    full = ramp((2, 9, 40, 50))
    TestOmeZarr05().write(path, [full], MICROMETER_AXES, [[1, 1, 1, 1]], (1, 4, 16, 16))
    image = open_image(path, chunks=(5, 20, 20))
    computed = cluster_client.compute(image.data).result()
    np.testing.assert_array_equal(computed, full)
    assert int(cluster_client.compute(image.data.sum()).result()) == int(full.sum())
