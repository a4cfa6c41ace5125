"""pipeline.measure.regionprops equals skimage.measure.regionprops_table on the whole array.

Real images: the 6-band Landsat GeoTIFF (objects: band 4 above its Otsu
threshold, every band as intensities) and the 3D nuclei stack, over several
chunkings each, some with objects across four chunks or more. The world
coordinates are checked against rasterio's own pixel-to-map functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
import tifffile
from affine import Affine
from dask.callbacks import Callback
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import xy
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.measure import regionprops_table

import pipeline
from pipeline.data import sample_path
from pipeline.errors import InputValueError, UnsupportedInputError
from pipeline.measure import PROPERTIES, regionprops

SKIMAGE = [
    "label",
    "area",
    "bbox",
    "centroid",
    "intensity_mean",
    "intensity_min",
    "intensity_max",
    "intensity_std",
]
NUCLEI_SPACING = (0.29, 0.26, 0.26)  # um, z y x (pipeline/data/README.md)


@pytest.fixture(autouse=True)
def _threads() -> Iterator[None]:
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture(scope="module")
def landsat() -> pipeline.Image:
    return pipeline.open_image(sample_path("L7_ETMs.tif"))


@pytest.fixture(scope="module")
def landsat_labels(landsat: pipeline.Image) -> np.ndarray:
    """Band 4 (near infrared) above 80 (its 90th percentile is 83), 4-connected."""
    labels, count = ndimage.label(landsat.data[3].compute() > 80)
    assert count > 100
    return labels


@pytest.fixture(scope="module")
def landsat_reference(landsat: pipeline.Image, landsat_labels: np.ndarray) -> dict[str, Any]:
    bands_last = np.moveaxis(landsat.data.compute(), 0, -1)
    return regionprops_table(landsat_labels, bands_last, properties=SKIMAGE)


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    return tifffile.imread(sample_path("nuclei.tif"))


@pytest.fixture(scope="module")
def nuclei_labels(nuclei: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(nuclei > threshold_otsu(nuclei))
    assert count > 100
    return labels


@pytest.fixture(scope="module")
def nuclei_reference(nuclei: np.ndarray, nuclei_labels: np.ndarray) -> dict[str, Any]:
    return regionprops_table(nuclei_labels, nuclei, properties=SKIMAGE)


def assert_same_table(table: pd.DataFrame, reference: dict[str, Any]) -> None:
    """Every reference column, in order: integers exactly, floats to 1e-12."""
    assert list(table.columns[: len(reference)]) == list(reference)
    assert len(table) == len(reference["label"])
    for name, expected in reference.items():
        ours = table[name].to_numpy()
        if name == "area" or expected.dtype.kind in "iu":  # skimage's area is a float count
            assert ours.dtype.kind in "iu", name
            np.testing.assert_array_equal(ours, expected, err_msg=name)
        else:
            assert ours.dtype == np.float64, name
            np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=0, err_msg=name)


def objects_across(reference: dict[str, Any], chunks: tuple[int, ...]) -> int:
    """Objects whose bounding box meets at least two chunks along the last two axes
    (so at least four chunks)."""
    ndim = len(chunks)
    across = np.ones(len(reference["label"]), bool)
    for axis in (ndim - 2, ndim - 1):
        first = reference[f"bbox-{axis}"] // chunks[axis]
        last = (reference[f"bbox-{axis + ndim}"] - 1) // chunks[axis]
        across &= last > first
    return int(across.sum())


def exploding(shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any) -> da.Array:
    """A dask array that fails if any chunk of it is ever computed."""

    def fail(block: np.ndarray) -> np.ndarray:
        raise AssertionError("a chunk was computed")

    return da.zeros(shape, chunks=chunks, dtype=dtype).map_blocks(fail, dtype=dtype)


@pytest.mark.parametrize("chunks", [(352, 349), (37, 53), (100, 100), (16, 16), (1, 349), (352, 7)])
def test_landsat_equals_skimage(
    landsat: pipeline.Image,
    landsat_labels: np.ndarray,
    landsat_reference: dict[str, Any],
    chunks: tuple[int, int],
) -> None:
    if chunks in [(37, 53), (100, 100), (16, 16)]:
        assert objects_across(landsat_reference, chunks) > 0
    table = regionprops(da.from_array(landsat_labels, chunks=chunks), landsat.data)
    assert_same_table(table, landsat_reference)
    assert "intensity_std-5" in table.columns
    assert table["label"].is_monotonic_increasing


@pytest.mark.parametrize("image_chunks", [(6, 352, 349), (2, 50, 60), (1, 352, 349)])
def test_image_chunks_need_not_match(
    landsat: pipeline.Image,
    landsat_labels: np.ndarray,
    landsat_reference: dict[str, Any],
    image_chunks: tuple[int, ...],
) -> None:
    labels = da.from_array(landsat_labels, chunks=(37, 53))
    table = regionprops(labels, landsat.data.rechunk(image_chunks))
    assert_same_table(table, landsat_reference)


@pytest.mark.parametrize(
    "chunks", [(60, 256, 256), (17, 37, 53), (30, 128, 128), (7, 64, 100), (60, 256, 1)]
)
def test_nuclei_equals_skimage(
    nuclei: np.ndarray,
    nuclei_labels: np.ndarray,
    nuclei_reference: dict[str, Any],
    chunks: tuple[int, int, int],
) -> None:
    if chunks in [(17, 37, 53), (7, 64, 100)]:
        assert objects_across(nuclei_reference, chunks) > 0
    labels = da.from_array(nuclei_labels, chunks=chunks)
    table = regionprops(labels, da.from_array(nuclei, chunks=(20, 64, 64)))
    assert_same_table(table, nuclei_reference)
    assert "intensity_mean" in table.columns  # one band, no band axis: no suffix


def test_batches_of_two_chunks(
    landsat: pipeline.Image, landsat_labels: np.ndarray, landsat_reference: dict[str, Any]
) -> None:
    class Graphs(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def _start(self, dsk: Any) -> None:
            self.count += 1

    labels = da.from_array(landsat_labels, chunks=(37, 53))  # 10 x 7 chunks
    with dask.config.set({"segpipe.batch-size": 2}), Graphs() as graphs:
        table = regionprops(labels, landsat.data)
    assert graphs.count == 35
    assert_same_table(table, landsat_reference)


def test_world_centroid_is_the_map_position_of_the_pixel_centre(
    landsat: pipeline.Image, landsat_labels: np.ndarray
) -> None:
    table = regionprops(
        da.from_array(landsat_labels, chunks=(37, 53)),
        transform=landsat.transform,
        crs=landsat.crs,
        units=landsat.units,
    )
    largest = int(np.argmax(np.bincount(landsat_labels.ravel())[1:])) + 1
    rows, cols = np.nonzero(landsat_labels == largest)
    row, col = rows.mean(), cols.mean()
    found = table.set_index("label").loc[largest]

    x, y = landsat.transform @ (col + 0.5, row + 0.5)
    np.testing.assert_allclose([found["centroid_x"], found["centroid_y"]], [x, y], rtol=1e-14)
    (rx,), (ry,) = xy(landsat.transform, [row], [col], offset="center")
    np.testing.assert_allclose([found["centroid_x"], found["centroid_y"]], [rx, ry], rtol=1e-14)

    pixel = 28.49999999927454**2  # the file's pixel size, in m
    np.testing.assert_allclose(found["area_physical"], rows.size * pixel, rtol=1e-14)
    assert table.attrs["crs"] == landsat.crs
    assert table.attrs["units"] == "m"
    assert table.attrs["area_units"] == "m^2"
    assert table.attrs["transform"] == list(landsat.transform)[:6]


def test_physical_units_equal_skimage_with_spacing(
    nuclei_labels: np.ndarray, nuclei_reference: dict[str, Any]
) -> None:
    table = regionprops(
        da.from_array(nuclei_labels, chunks=(17, 37, 53)), spacing=NUCLEI_SPACING, units="um"
    )
    scaled = regionprops_table(
        nuclei_labels, properties=["area", "centroid"], spacing=NUCLEI_SPACING
    )
    np.testing.assert_allclose(table["area_physical"], scaled["area"], rtol=1e-13)
    for axis in range(3):
        np.testing.assert_allclose(
            table[f"centroid_physical-{axis}"], scaled[f"centroid-{axis}"], rtol=1e-12
        )
    assert "centroid_x" not in table.columns  # no affine: no world centroid
    assert table.attrs["area_units"] == "um^3"
    assert table.attrs["spacing"] == list(NUCLEI_SPACING)


def test_volume_affine_gives_world_centroids(
    nuclei_labels: np.ndarray, nuclei_reference: dict[str, Any]
) -> None:
    # voxel (z, y, x) -> world (x, y, z): x along the image's x, y flipped, z along z
    affine = np.array(
        [
            [0.0, 0.0, 0.26, -30.0],
            [0.0, -0.26, 0.0, 40.0],
            [0.29, 0.0, 0.0, 5.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    table = regionprops(
        da.from_array(nuclei_labels, chunks=(30, 128, 128)),
        properties=["centroid_world", "area_physical"],
        affine=affine,
        units="mm",
    )
    assert list(table.columns) == [
        "label",
        "centroid_x",
        "centroid_y",
        "centroid_z",
        "area_physical",
    ]
    z, y, x = (nuclei_reference[f"centroid-{axis}"] for axis in range(3))
    np.testing.assert_allclose(table["centroid_x"], 0.26 * x - 30.0, rtol=1e-13)
    np.testing.assert_allclose(table["centroid_y"], -0.26 * y + 40.0, rtol=1e-13)
    np.testing.assert_allclose(table["centroid_z"], 0.29 * z + 5.0, rtol=1e-13)
    volume = nuclei_reference["area"] * 0.26 * 0.26 * 0.29
    np.testing.assert_allclose(table["area_physical"], volume, rtol=1e-13)


def test_a_subset_of_properties_reads_only_what_it_needs(landsat_labels: np.ndarray) -> None:
    labels = da.from_array(landsat_labels, chunks=(100, 100))
    never_read = exploding((6, *landsat_labels.shape), (6, 100, 100), np.uint8)
    table = regionprops(labels, never_read, properties=["centroid", "area"])
    assert list(table.columns) == ["label", "centroid-0", "centroid-1", "area"]
    reference = regionprops_table(landsat_labels, properties=["label", "centroid", "area"])
    assert_same_table(table, reference)


def test_properties_default_to_what_the_arguments_allow(landsat_labels: np.ndarray) -> None:
    plain = regionprops(landsat_labels)
    assert list(plain.columns) == [
        "label",
        "area",
        *(f"bbox-{i}" for i in range(4)),
        "centroid-0",
        "centroid-1",
    ]
    banded = regionprops(landsat_labels, landsat_labels[None].astype(np.uint8))
    assert "intensity_mean-0" in banded.columns  # a band axis, as skimage's channel axis
    reference = regionprops_table(
        landsat_labels, landsat_labels[..., None].astype(np.uint8), properties=SKIMAGE
    )
    assert_same_table(banded, reference)


def test_a_bad_property_name_fails_before_computing() -> None:
    labels = exploding((40, 50), (10, 10), np.int32)
    with pytest.raises(InputValueError, match=r"'perimeter'.*valid ones are: label, area"):
        regionprops(labels, properties=["area", "perimeter"])
    with pytest.raises(InputValueError, match="list of names"):
        regionprops(labels, properties="area")


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((40, 51), r"shape \(40, 51\); expected the shape of labels \(40, 50\)"),
        ((40, 50, 3), r"bands are last.*np\.moveaxis"),
        ((0, 40, 50), "no bands"),
    ],
)
def test_an_image_of_another_shape_fails_before_computing(
    shape: tuple[int, ...], message: str
) -> None:
    labels = exploding((40, 50), (10, 10), np.int32)
    image = exploding(shape, (10,) * len(shape), np.float32)
    with pytest.raises(InputValueError, match=message):
        regionprops(labels, image)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"properties": ["intensity_mean"]}, InputValueError, "needs an intensity image"),
        ({"properties": ["centroid_world"]}, InputValueError, "transform=... or affine="),
        ({"properties": ["centroid_physical"]}, InputValueError, "spacing="),
        ({"spacing": (1.0, 2.0, 3.0)}, InputValueError, "one pixel size per axis"),
        ({"spacing": (1.0, 0.0)}, InputValueError, "positive"),
        ({"transform": Affine(1, 0, 0, 0, 0, 0)}, InputValueError, "invertible"),
        ({"transform": (1, 2, 3)}, InputValueError, "affine.Affine"),
        ({"affine": np.eye(4)}, InputValueError, "3 x 3"),
        ({"transform": Affine.identity(), "affine": np.eye(3)}, InputValueError, "not both"),
        ({"crs": "EPSG:4326"}, InputValueError, "without transform"),
        ({"units": 3}, InputValueError, "units must be a string"),
    ],
)
def test_bad_arguments_fail_before_computing(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    labels = exploding((40, 50), (10, 10), np.int32)
    with pytest.raises(error, match=message):
        regionprops(labels, **kwargs)


def test_bad_arrays_fail_before_computing() -> None:
    with pytest.raises(UnsupportedInputError, match="expected an integer type"):
        regionprops(exploding((40, 50), (10, 10), np.float32))
    with pytest.raises(UnsupportedInputError, match="dask or numpy array"):
        regionprops([[1, 2], [3, 4]])
    with pytest.raises(InputValueError, match="2D or 3D"):
        regionprops(exploding((4, 40, 50, 2), (1, 10, 10, 2), np.int32))
    with pytest.raises(UnsupportedInputError, match="image has dtype complex"):
        regionprops(np.ones((4, 5), int), np.ones((4, 5), complex))
    with pytest.raises(InputValueError, match="transform is for 2D"):
        regionprops(np.ones((2, 4, 5), int), transform=Affine.identity())


def test_an_empty_label_image_gives_an_empty_table(landsat: pipeline.Image) -> None:
    labels = da.zeros(landsat.data.shape[1:], chunks=(100, 100), dtype=np.uint32)
    table = regionprops(labels, landsat.data, transform=landsat.transform, crs=landsat.crs)
    full = regionprops(
        np.ones(landsat.data.shape[1:], np.uint32),
        landsat.data.compute(),
        transform=landsat.transform,
        crs=landsat.crs,
    )
    assert len(table) == 0
    assert list(table.columns) == list(full.columns)
    assert (table.dtypes == full.dtypes).all()


def test_the_table_and_its_attrs_survive_parquet(
    landsat: pipeline.Image, landsat_labels: np.ndarray, tmp_path: Path
) -> None:
    table = regionprops(
        da.from_array(landsat_labels, chunks=(100, 100)),
        landsat.data,
        transform=landsat.transform,
        crs=landsat.crs,
        spacing=landsat.spacing,
        units=landsat.units,
    )
    assert set(PROPERTIES) - {"centroid_world", "centroid_physical", "area_physical"} <= {
        column.split("-")[0] for column in table.columns
    }
    table.to_parquet(tmp_path / "objects.parquet")
    back = pd.read_parquet(tmp_path / "objects.parquet")
    pd.testing.assert_frame_equal(back, table)
    assert back.attrs == table.attrs
    assert back.attrs["provenance"]["function"] == "pipeline.measure.regionprops"


@st.composite
def _label_images(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(1, 12), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, size)) for size in shape)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # few ids, so objects are scattered over chunks; negatives are background, as in skimage
    labels = rng.integers(-2, draw(st.integers(1, 6)), shape).astype(np.int16)
    values = rng.normal(draw(st.floats(-1e3, 1e3)), draw(st.floats(0.0, 10.0)), (2, *shape))
    return labels, values, chunks


@settings(max_examples=60)
@given(_label_images())
def test_any_shape_and_chunking(case: tuple[np.ndarray, np.ndarray, tuple[int, ...]]) -> None:
    labels, values, chunks = case
    table = regionprops(da.from_array(labels, chunks=chunks), da.from_array(values))
    if not (labels > 0).any():
        assert len(table) == 0
        return
    reference = regionprops_table(labels, np.moveaxis(values, 0, -1), properties=SKIMAGE)
    assert list(table.columns) == list(reference)
    for name, expected in reference.items():
        # np.std and np.mean on random floats: rounding of a few ulps either way
        atol = 1e-9 if name.startswith("intensity_std") else 0
        np.testing.assert_allclose(table[name], expected, rtol=1e-9, atol=atol, err_msg=name)


@pytest.mark.cluster
def test_on_a_two_process_cluster(
    cluster_client: object,
    landsat: pipeline.Image,
    landsat_labels: np.ndarray,
    landsat_reference: dict[str, Any],
) -> None:
    labels = da.from_array(landsat_labels, chunks=(37, 53))
    table = regionprops(labels, landsat.data)
    assert_same_table(table, landsat_reference)
