"""A workflow's answers: object table, polygons, preview and report, from real runs."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
from PIL import Image as PILImage
from rasterio.crs import CRS
from skimage.measure import regionprops_table

import pipeline
from pipeline.data import sample_path
from pipeline.io._zarr import open_label_array
from pipeline.workflow import Workflow, WorkflowError
from tests.conftest import run_segpipe

LANDSAT = sample_path("L7_ETMs.tif")
STEPS = [{"expression": {"expression": "(b4 - b3) / (b4 + b3)"}}, {"threshold": {}}, "label"]


class _Text(HTMLParser):
    """The visible text and the links of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name == "href" and value]


def read_page(path: Path) -> _Text:
    page = _Text()
    page.feed(path.read_text())
    return page


@pytest.fixture(scope="module")
def answered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pipeline.RunResult]:
    folder = tmp_path_factory.mktemp("answers")
    flow = Workflow(
        source=str(LANDSAT),
        steps=STEPS,
        output={
            "labels": str(folder / "veg.zarr"),
            "table": str(folder / "veg.parquet"),
            "polygons": str(folder / "veg.gpkg"),
            "preview": str(folder / "veg.png"),
        },
        chunks=96,
    )
    return folder, flow.run()


def test_the_table_is_regionprops_of_the_whole_label_map(
    answered: tuple[Path, pipeline.RunResult],
) -> None:
    folder, result = answered
    labels = open_label_array(folder / "veg.zarr")[...]
    image = pipeline.open_image(str(LANDSAT))
    bands = np.moveaxis(image.data.compute(), 0, -1)
    names = ["label", "area", "bbox", "centroid", "intensity_mean", "intensity_std"]
    reference = regionprops_table(labels, bands, properties=names)
    table = pd.read_parquet(folder / "veg.parquet")
    assert len(table) == result.num == labels.max()
    for column, values in reference.items():
        np.testing.assert_allclose(table[column].to_numpy(), values, rtol=1e-9)
    centre = image.transform @ (table["centroid-1"] + 0.5, table["centroid-0"] + 0.5)
    np.testing.assert_allclose(table["centroid_x"], centre[0])
    np.testing.assert_allclose(table["centroid_y"], centre[1])


def test_polygons_cover_the_objects_in_the_images_crs(
    answered: tuple[Path, pipeline.RunResult],
) -> None:
    folder, result = answered
    features = pyogrio.read_dataframe(folder / "veg.gpkg")
    image = pipeline.open_image(str(LANDSAT))
    assert len(features) == result.num
    assert features.crs.to_epsg() == CRS.from_wkt(image.crs).to_epsg()
    assert features.geometry.is_valid.all()
    pixel = abs(image.transform.a * image.transform.e)
    sizes = np.bincount(open_label_array(folder / "veg.zarr")[...].ravel())
    by_label = features.set_index("label").sort_index()
    np.testing.assert_allclose(by_label.geometry.area, sizes[1:] * pixel, rtol=1e-6)
    assert "intensity_mean-0" in features.columns  # the table is joined on


def test_the_preview_and_the_report_show_the_run(
    answered: tuple[Path, pipeline.RunResult],
) -> None:
    folder, result = answered
    with PILImage.open(folder / "veg.png") as png:
        assert max(png.size) <= 1024
    page = read_page(folder / "veg.report.html")
    text = " ".join(page.text)
    assert f"{result.num:,}" in text
    for stage in result.record["timings_s"]:
        assert stage in text
    assert {"veg.zarr", "veg.parquet", "veg.gpkg", "veg.png"} <= {
        link.rstrip("/") for link in page.links
    }
    record = json.loads((folder / "veg.run.json").read_text())
    assert record["outputs"]["table"] == str(folder / "veg.parquet")
    assert result.outputs["report"] == folder / "veg.report.html"


def test_a_table_only_run_leaves_no_scratch(tmp_path: Path) -> None:
    result = Workflow(
        source=str(LANDSAT), steps=STEPS, output={"table": str(tmp_path / "t.csv")}, chunks=128
    ).run()
    table = pd.read_csv(tmp_path / "t.csv")
    assert len(table) == result.num > 0 and result.labels is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "t.csv",
        "t.dask-performance.html",  # run on the embedded cluster
        "t.report.html",
        "t.run.json",
    ]


def test_a_cluster_run_links_dasks_performance_report(tmp_path: Path, cluster_client) -> None:
    result = Workflow(
        source=str(LANDSAT), steps=STEPS, output=str(tmp_path / "l.zarr"), chunks=128
    ).run(client=cluster_client)
    performance = result.outputs["performance"]
    assert performance == tmp_path / "l.dask-performance.html"
    assert "bokeh" in performance.read_text().lower()
    assert performance.name in read_page(result.outputs["report"]).links


def test_unknown_answer_formats_are_refused_before_running(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match=r"polygons.*\.gpkg, \.geojson"):
        Workflow(source=str(LANDSAT), steps=STEPS, output={"polygons": str(tmp_path / "p.shp")})
    assert not list(tmp_path.iterdir())


def test_the_preview_command(tmp_path: Path, answered: tuple[Path, pipeline.RunResult]) -> None:
    folder, _ = answered
    png = tmp_path / "p.png"
    done = run_segpipe("preview", str(folder / "veg.zarr"), "-o", str(png), "--max-size", "200")
    assert done.returncode == 0, done.stderr
    with PILImage.open(png) as image:
        assert max(image.size) <= 200 and image.mode == "RGB"  # drawn over the run's source
    again = run_segpipe("preview", str(folder / "veg.zarr"), "-o", str(png))
    assert again.returncode == 1 and "already exists" in again.stderr
