"""The preview PNG and the HTML run report, on real label outputs of a real run."""

from __future__ import annotations

import base64
import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from PIL import Image as PILImage
from skimage.filters import threshold_otsu

import pipeline
from pipeline.data import sample_path
from pipeline.errors import (
    InputValueError,
    OutputExistsError,
    ReadError,
    UnsupportedInputError,
)
from pipeline.io import open_image, write_cog, write_labels_zarr, write_ome_zarr
from pipeline.report import label_colours, write_preview, write_report

LANDSAT = sample_path("L7_ETMs.tif")
BAND = 4


# --- shared outputs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def band() -> np.ndarray:
    """Band 4 of the bundled Landsat scene, 352 x 349 uint8, read whole (the reference)."""
    with rasterio.open(LANDSAT) as source:
        return source.read(BAND)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, band: np.ndarray) -> dict[str, Any]:
    """Band 4 thresholded at Otsu and labelled by segpipe, written as a label zarr, an
    OME-Zarr (with the band as its image) and a COG; and the labels, computed."""
    folder = tmp_path_factory.mktemp("outputs")
    image = open_image(str(LANDSAT), bands=[BAND], chunks=128)
    labels, _ = pipeline.label(image.data[0] > threshold_otsu(band))
    plain = write_labels_zarr(labels, folder / "labels.zarr")
    ome = write_ome_zarr(labels, image, folder / "labels.ome.zarr")
    with rasterio.open(LANDSAT) as source:
        cog = write_cog(
            plain, folder / "labels.tif", crs=source.crs.to_wkt(), transform=source.transform
        )
    return {"zarr": plain, "ome": ome, "cog": cog, "labels": labels.compute()}


def picture(path: Path) -> np.ndarray:
    with PILImage.open(path) as png:
        return np.asarray(png)


def grey(pixels: np.ndarray) -> np.ndarray:
    """The documented stretch, done here: percentiles 2 and 98 to 0..255, rounded."""
    low, high = np.percentile(pixels.astype(np.float64), [2, 98])
    return np.round(np.clip((pixels - low) / (high - low), 0, 1) * 255)


def coloured(rgb: np.ndarray) -> np.ndarray:
    """Pixels that are not grey."""
    return ~((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2]))


def check_picture(rgb: np.ndarray, ids: np.ndarray, image: np.ndarray) -> None:
    """Colour exactly on the objects; the image's stretched grey, unchanged, elsewhere."""
    assert rgb.shape == (*ids.shape, 3)
    np.testing.assert_array_equal(coloured(rgb), ids != 0)
    background = ids == 0
    expected = grey(image)[background]
    assert np.abs(rgb[background][:, 0] - expected).max() <= 1


# --- preview ------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_size", [1024, 351, 100, 64, 7])
def test_label_zarr_preview_is_every_sth_pixel_over_the_image(
    outputs: dict[str, Any], band: np.ndarray, tmp_path: Path, max_size: int
) -> None:
    image = open_image(str(LANDSAT), bands=[BAND])  # a band subset: read at its own level
    png = write_preview(outputs["zarr"], tmp_path / "p.png", image=image, max_size=max_size)

    step = math.ceil(max(band.shape) / max_size)
    rgb = picture(png)
    assert max(rgb.shape[:2]) <= max_size
    assert rgb.shape[:2] == (math.ceil(352 / step), math.ceil(349 / step))  # aspect kept
    check_picture(rgb, outputs["labels"][::step, ::step], band[::step, ::step])


def test_colours_follow_ids_and_differ_between_objects(
    outputs: dict[str, Any], tmp_path: Path
) -> None:
    rgba = picture(write_preview(outputs["zarr"], tmp_path / "p.png", max_size=176))
    ids = outputs["labels"][::2, ::2]

    assert rgba.shape == (*ids.shape, 4)
    np.testing.assert_array_equal(rgba[..., 3], np.where(ids != 0, 255, 0))  # no image: clear
    # Each object in its id's colour, its outline in a darker shade of it.
    colour = label_colours(ids)
    darker = (colour * 0.6).astype(np.uint8)
    shown = rgba[..., :3]
    assert ((shown == colour).all(-1) | (shown == darker).all(-1))[ids != 0].all()
    present = np.unique(ids[ids != 0])
    assert len(np.unique(label_colours(present), axis=0)) == present.size
    # The two largest objects, as drawn: their most common colours differ.
    sizes = np.bincount(ids.ravel())[present]
    first, second = present[np.argsort(sizes)[-2:]]
    modes = []
    for label in (first, second):
        pixels, counts = np.unique(shown[ids == label], axis=0, return_counts=True)
        modes.append(tuple(pixels[counts.argmax()]))
    assert modes[0] != modes[1]


def test_colours_are_the_same_in_every_preview() -> None:
    ids = np.array([[0, 1, 2], [300, 2**40, 1]])
    once, again = label_colours(ids), label_colours(ids[::-1].copy())[::-1]
    np.testing.assert_array_equal(once, again)
    assert (once[0, 0] == 0).all() and len({tuple(c) for c in once[ids != 0]}) == 4


def _corrupt_level(array: Path) -> int:
    """Overwrite every chunk of a zarr v2 array with bytes no codec decodes."""
    chunks = [p for p in array.rglob("*") if p.is_file() and not p.name.startswith(".")]
    for chunk in chunks:
        chunk.write_bytes(b"not a chunk")
    return len(chunks)


def test_ome_zarr_preview_reads_level_1_not_level_0(
    outputs: dict[str, Any], band: np.ndarray, tmp_path: Path
) -> None:
    group = Path(shutil.copytree(outputs["ome"], tmp_path / "copy.ome.zarr"))
    assert _corrupt_level(group / "0") and _corrupt_level(group / "labels" / "labels" / "0")

    # The group's own image is drawn: level 1 keeps every 2nd pixel, a step of 2 on it.
    png = write_preview(group, tmp_path / "p.png", max_size=100)
    rgb = picture(png)
    assert rgb.shape[:2] == (88, 88)
    check_picture(rgb, outputs["labels"][::4, ::4], band[::4, ::4])
    with PILImage.open(png) as written:
        about = json.loads(written.text["segpipe"])
    assert (about["labels_level"], about["image_level"], about["step"]) == (1, 1, 2)

    # The control: a preview that must read level 0 fails on the corrupted chunks.
    with pytest.raises(RuntimeError, match="blosc"):
        write_preview(group, tmp_path / "full.png", max_size=1024)
    assert not (tmp_path / "full.png").exists()


def test_ome_zarr_label_image_path_is_read_alone(outputs: dict[str, Any], tmp_path: Path) -> None:
    label_image = outputs["ome"] / "labels" / "labels"
    rgba = picture(write_preview(label_image, tmp_path / "p.png", max_size=100))
    np.testing.assert_array_equal(rgba[..., 3] != 0, outputs["labels"][::4, ::4] != 0)


@pytest.fixture
def windows_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pyramid level of every GeoTIFF window read while the test runs."""
    from pipeline.io import _geotiff

    levels: list[int] = []
    read = _geotiff._read_window

    def spy(*, block_info: Any, **kwargs: Any) -> np.ndarray:  # dask looks for block_info
        levels.append(kwargs["level"])
        return read(block_info=block_info, **kwargs)

    monkeypatch.setattr(_geotiff, "_read_window", spy)
    return levels


def test_cog_preview_reads_an_overview(
    outputs: dict[str, Any], tmp_path: Path, windows_read: list[int]
) -> None:
    png = write_preview(outputs["cog"], tmp_path / "p.png", max_size=100)

    assert set(windows_read) == {1}  # the first overview (176 x 174), never full resolution
    with rasterio.open(outputs["cog"], overview_level=0) as overview:
        ids = overview.read(1)[::2, ::2]
    rgba = picture(png)
    assert max(rgba.shape[:2]) <= 100
    np.testing.assert_array_equal(rgba[..., 3] != 0, ids != 0)


def test_image_path_is_read_at_the_coarsest_level_under_the_labels(
    outputs: dict[str, Any], tmp_path: Path, windows_read: list[int]
) -> None:
    png = write_preview(
        outputs["zarr"], tmp_path / "p.png", image=LANDSAT, bands=[BAND], max_size=100
    )

    assert set(windows_read) == {2}  # overview 2 (88 x 88): one pixel per preview pixel
    with rasterio.open(LANDSAT, overview_level=1) as overview:
        image = overview.read(BAND)
    check_picture(picture(png), outputs["labels"][::4, ::4], image)


def test_rgb_image_of_three_bands(outputs: dict[str, Any], tmp_path: Path) -> None:
    png = write_preview(
        outputs["zarr"], tmp_path / "p.png", image=LANDSAT, bands=[3, 2, 1], max_size=100
    )
    rgb = picture(png)
    background = outputs["labels"][::4, ::4] == 0
    with rasterio.open(LANDSAT, overview_level=1) as overview:
        bands = overview.read([3, 2, 1])
    for channel in range(3):
        expected = grey(bands[channel])[background]
        assert np.abs(rgb[..., channel][background] - expected).max() <= 1


def test_3d_labels_show_their_middle_plane(tmp_path: Path) -> None:
    nuclei = tifffile.imread(sample_path("nuclei.tif"))
    labels, _ = pipeline.label(
        da.from_array(nuclei > threshold_otsu(nuclei), chunks=(30, 128, 128))
    )
    image = open_image(str(sample_path("nuclei.tif")))

    png = write_preview(labels, tmp_path / "p.png", image=image, max_size=100)

    ids = labels[30, ::3, ::3].compute()
    check_picture(picture(png), ids, nuclei[30, ::3, ::3])


def test_preview_refuses_to_replace_a_file(outputs: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "p.png"
    target.write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_preview(outputs["zarr"], target, max_size=64)
    assert target.read_bytes() == b"mine"
    write_preview(outputs["zarr"], target, max_size=64, overwrite=True)
    assert picture(target).shape == (59, 59, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]  # no staging left


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"path": "p.jpg"}, InputValueError, r"\.png"),
        ({"max_size": 0}, InputValueError, "max_size"),
        ({"max_size": True}, InputValueError, "max_size"),
        ({"bands": [1]}, InputValueError, "bands"),
        ({"image": 3}, UnsupportedInputError, "image"),
        ({"labels": np.zeros((4, 4), np.float32)}, UnsupportedInputError, "integer"),
        ({"labels": [[1]]}, UnsupportedInputError, "labels"),
        ({"labels": np.zeros((1, 2, 3, 4), np.uint8)}, InputValueError, "2D"),
        ({"image": np.zeros((352, 100), np.uint8)}, UnsupportedInputError, "image"),
        ({"labels": "missing.zarr"}, ReadError, "missing"),
    ],
)
def test_preview_argument_errors(
    outputs: dict[str, Any],
    tmp_path: Path,
    arguments: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    call = {"labels": outputs["zarr"], "path": "p.png", **arguments}
    labels, path = call.pop("labels"), tmp_path / call.pop("path")
    if isinstance(labels, str):
        labels = tmp_path / labels
    with pytest.raises(error, match=match):
        write_preview(labels, path, **call)
    assert not path.exists()


def test_preview_refuses_an_image_that_does_not_fit(
    outputs: dict[str, Any], tmp_path: Path
) -> None:
    other = open_image(np.zeros((352, 100), np.uint8))
    with pytest.raises(InputValueError, match="proportions"):
        write_preview(outputs["zarr"], tmp_path / "p.png", image=other)
    volume = open_image(np.zeros((3, 352, 349), np.uint8), axes="zyx")
    with pytest.raises(InputValueError, match="z axis"):
        write_preview(outputs["zarr"], tmp_path / "p.png", image=volume)


# --- report -------------------------------------------------------------------------------------


class Page(HTMLParser):
    """What a browser would show of a page: its text, tags, images and links."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.links: list[dict[str, str | None]] = []
        self.titles: list[str] = []  # of SVG bars
        self._in_title = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "a":
            self.links.append(dict(attrs))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title:
            self.titles.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, local_cluster: Any) -> dict[str, Any]:
    """A real run on a cluster of processes, under Dask's performance report; its
    record with outputs and object sizes added, and a preview of its labels."""
    from distributed import Client, performance_report

    folder = tmp_path_factory.mktemp("run")
    flow = pipeline.Workflow(
        source={"path": str(LANDSAT), "bands": [5]},
        steps=[{"threshold": {"method": "otsu"}}, "label"],
        output=str(folder / "out" / "labels.zarr"),
        chunks=128,
    )
    (folder / "dask").mkdir()
    performance = folder / "dask" / "performance.html"
    with Client(local_cluster) as client, performance_report(filename=str(performance)):
        result = flow.run(client)
    record = dict(result.record)
    record["outputs"] = {kind: str(path) for kind, path in result.outputs.items()}
    record["object_sizes"] = np.bincount(result.labels.compute().ravel())[1:]
    preview = write_preview(result.outputs["labels"], folder / "out" / "preview.png", max_size=200)
    return {"folder": folder, "record": record, "preview": preview, "performance": performance}


@pytest.mark.cluster
def test_report_of_a_real_run(run: dict[str, Any]) -> None:
    record, folder = run["record"], run["folder"]
    path = write_report(
        record,
        folder / "reports" / "run.html",
        preview=run["preview"],
        performance=run["performance"],
    )
    page = Page(path.read_text(encoding="utf-8"))
    words = page.words

    assert f"{record['objects']:,} objects" in words
    for stage in record["timings_s"]:
        assert stage in words
    for package, version in record["versions"].items():
        assert package in words and version in words
    assert record["seams"]["method"] in words
    for value in (*record["source"]["shape"], record["source"]["dtype"], record["source"]["path"]):
        assert str(value) in words
    for step in record["steps"]:
        assert step in words
    # The preview, embedded: the very PNG written.
    (image,) = page.images
    assert image["src"] is not None and image["src"].startswith("data:image/png;base64,")
    assert base64.b64decode(image["src"].split(",", 1)[1]) == run["preview"].read_bytes()
    # Links relative to the page: the performance report and the outputs.
    hrefs = {link["href"] for link in page.links}
    assert "../dask/performance.html" in hrefs
    assert str(run["performance"]) in words  # and where it is
    assert "../out/labels.zarr/" in hrefs
    for href in hrefs:
        assert href is not None and (path.parent / href).exists()
    # The size histogram: its bars hold every object once.
    counts = [int(t.split(": ")[1].split()[0].replace(",", "")) for t in page.titles[1:]]
    assert sum(counts) == record["objects"] == len(record["object_sizes"])
    # Self-contained: nothing to fetch, nothing to run.
    assert "script" not in page.tags and "link" not in page.tags
    assert all(not (i.get("src") or "").startswith("http") for i in page.images)


@pytest.mark.cluster
def test_report_without_sizes_outputs_or_preview(run: dict[str, Any], tmp_path: Path) -> None:
    record = {k: v for k, v in run["record"].items() if k not in ("object_sizes", "outputs")}
    page = Page(write_report(record, tmp_path / "r.html").read_text())
    assert "Object sizes were not recorded" in page.words
    assert "No Dask performance report was given" in page.words
    assert not page.images and "svg" not in page.tags


def test_report_escapes_every_record_string(tmp_path: Path) -> None:
    attack = "<script>alert('x')</script>"
    record = {
        "source": {"path": f"/data/{attack}.tif", "shape": [1, 2, 3], "dtype": "uint8"},
        "steps": [f"threshold(value={attack})"],
        "fitted": {attack: attack},
        "seams": {"method": attack},
        "versions": {attack: "1.0"},
        "timings_s": {attack: 1.5},
        "objects_per_class": {attack: 3},
        "outputs": {attack: str(tmp_path / f"{attack}.zarr")},
        "workflow": {"note": attack},
        "objects": 3,
        "object_sizes": [1, 10, 100],
    }
    html = write_report(record, tmp_path / "r.html").read_text()
    page = Page(html)
    assert "script" not in page.tags
    assert attack in page.words  # shown as text
    assert "<script" not in html


def test_report_explains_an_instance_stitch(tmp_path: Path) -> None:
    seams = {
        "method": "instances matched by IoU",
        "seam_pieces": 40,
        "matched": 30,
        "fragments": 10,
        "merged_objects": 15,
        "iou_threshold": 0.5,
    }
    words = Page(write_report({"seams": seams}, tmp_path / "r.html").read_text()).words
    assert "Method: instances matched by IoU" in words
    for figure in ("seam_pieces 40", "matched 30", "fragments 10", "merged_objects 15"):
        assert figure in words
    assert "matched share 75.0%" in words and "halo was wide enough" in words


def test_report_of_an_empty_record_says_what_is_missing(tmp_path: Path) -> None:
    page = Page(write_report({}, tmp_path / "r.html").read_text())
    assert "Timings not recorded" in page.words and "Versions not recorded" in page.words


def test_report_refuses_to_replace_a_file(tmp_path: Path) -> None:
    target = tmp_path / "r.html"
    target.write_text("mine")
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_report({"objects": 1}, target)
    assert target.read_text() == "mine"
    write_report({"objects": 1}, target, overwrite=True)
    assert "segpipe run" in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"record": [1]}, UnsupportedInputError, "mapping"),
        ({"path": "r.txt"}, InputValueError, "html"),
        ({"preview": "missing.png"}, ReadError, "missing.png"),
        ({"preview": "fake.png"}, InputValueError, "not a PNG"),
        ({"performance": "missing.html"}, ReadError, "missing.html"),
        ({"record": {"object_sizes": ["a"]}}, InputValueError, "object_sizes"),
    ],
)
def test_report_argument_errors(
    tmp_path: Path, arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    (tmp_path / "fake.png").write_text("not a png")
    call: dict[str, Any] = {"record": {}, "path": "r.html", **arguments}
    record, path = call.pop("record"), tmp_path / call.pop("path")
    for key in ("preview", "performance"):
        if key in call:
            call[key] = tmp_path / call[key]
    with pytest.raises(error, match=match):
        write_report(record, path, **call)
    assert not path.exists()
