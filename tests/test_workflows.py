"""Every ready workflow in workflows/ runs in small chunks and reaches the score its README states.

The scores are read from the table in workflows/README.md, so the README and
the test cannot drift apart; a workflow added without a score fails here.
Satellite scenes and the slide have no reference segmentation: they are scored
on the check points annotated by eye in workflows/data/check_points.yaml.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import geopandas
import numpy as np
import pyogrio
import pytest
import rasterio
import tifffile
import yaml
from rasterio.crs import CRS
from rasterio.features import rasterize
from scipy import ndimage
from skimage.filters import threshold_otsu, threshold_triangle
from skimage.morphology import ball

import pipeline
from pipeline.data import sample_path
from pipeline.io._zarr import open_label_array
from pipeline.kernels import PixelClassifier
from pipeline.workflow import RunResult, Workflow
from pipeline.workflow._run import run_spec
from pipeline.workflow._schema import Outputs
from pipeline.workflow._templates import check_templates
from tests.conftest import ROOT, WORKFLOW_DATA, assert_same_partition
from tests.mosaics import composite, nearest

WORKFLOWS = ROOT / "workflows"
CHECK_POINTS = yaml.safe_load((WORKFLOW_DATA / "check_points.yaml").read_text())
LANDSAT = sample_path("L7_ETMs.tif")


def stated_scores() -> dict[str, float]:
    """Workflow file name to the score in its row of the workflows/README.md table."""
    scores = {}
    for line in (WORKFLOWS / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`(\w+\.yaml)`", cells[0])
        if name and len(cells) == 6:
            figure = re.match(r"\d+\.\d+", cells[4])
            if figure:
                scores[name.group(1)] = float(figure.group())
    return scores


# Scores ------------------------------------------------------------------------------


def _at_points(array: da.Array, points: list[list[int]] | np.ndarray) -> np.ndarray:
    rows, columns = np.asarray(points).T
    return np.asarray(array.vindex[rows, columns].compute())


def _on_level(scene: str, points: list[list[int]], shape: tuple[int, ...]) -> np.ndarray:
    """``points``, drawn on the scene's full-resolution image, on its level of ``shape``."""
    full = pipeline.open_image(str(WORKFLOW_DATA / CHECK_POINTS[scene]["image"])).shape
    scale = np.asarray(shape[-2:]) / np.asarray(full[-2:])
    return np.floor(np.asarray(points) * scale).astype(int)


def mask_accuracy(scene: str, positive: str) -> Callable[[RunResult], float]:
    """Share of the scene's check points on which the labels (any object) say
    ``positive`` exactly where the eye did."""

    def score(result: RunResult) -> float:
        assert result.labels is not None
        right = total = 0
        for name, points in CHECK_POINTS[scene]["points"].items():
            found = _at_points(result.labels, _on_level(scene, points, result.labels.shape)) > 0
            right += int((found == (name == positive)).sum())
            total += len(points)
        return right / total

    return score


def class_accuracy(names: Callable[[RunResult], dict[int, str]]) -> Callable[[RunResult], float]:
    """Share of the landsat check points whose class in the class map is named as
    the eye named it; ``names`` gives each class id its land-cover name."""

    def score(result: RunResult) -> float:
        classes = da.from_zarr(open_label_array(result.outputs["classes"]))
        named = names(result)
        right = total = 0
        for name, points in CHECK_POINTS["landsat"]["points"].items():
            found = _at_points(classes, points)
            right += sum(named.get(int(value)) == name for value in found)
            total += len(points)
        return right / total

    return score


def classifier_names(result: RunResult) -> dict[int, str]:
    """The classifier's class ids are those of its training polygons."""
    return {number: name for name, number in CHECK_POINTS["landsat"]["class_ids"].items()}


def kmeans_names(result: RunResult) -> dict[int, str]:
    """Each k-means class takes the land cover of most of the classifier's training
    polygon pixels it holds (the check points play no part); a class in none stays
    unnamed."""
    classes = da.from_zarr(open_label_array(result.outputs["classes"]))
    classifier = Workflow.from_yaml(WORKFLOWS / "landsat_classifier.yaml").spec.steps[0]
    assert isinstance(classifier, PixelClassifier) and isinstance(classifier.polygons, str)
    names = classifier_names(result)
    votes: dict[int, dict[str, int]] = {}
    with rasterio.open(LANDSAT) as scene:  # the polygons' pixels: centres inside them
        shapes = geopandas.read_file(classifier.polygons).to_crs(scene.crs)
        grid = {"out_shape": scene.shape, "transform": scene.transform}
    for number, outline in zip(shapes[classifier.class_field], shapes.geometry, strict=True):
        inside = rasterize([(outline, 1)], all_touched=False, fill=0, dtype="uint8", **grid)
        found, counts = np.unique(_at_points(classes, np.argwhere(inside)), return_counts=True)
        for value, count in zip(found, counts, strict=True):
            tally = votes.setdefault(int(value), {})
            tally[names[number]] = tally.get(names[number], 0) + int(count)
    return {value: max(tally, key=tally.__getitem__) for value, tally in votes.items()}


def dice_with(reference: Path) -> Callable[[RunResult], float]:
    def score(result: RunResult) -> float:
        return pipeline.dice(result.labels, pipeline.open_image(str(reference)).data)

    return score


def f1_with(reference: Path) -> Callable[[RunResult], float]:
    def score(result: RunResult) -> float:
        return pipeline.object_f1(result.labels, pipeline.open_image(str(reference)).data).f1

    return score


# The same processing on the whole image, with scipy / scikit-image ---------------------


def _bands(path: Path) -> np.ndarray:
    with rasterio.open(path) as source:
        return source.read().astype(np.float32)


def _components(mask: np.ndarray, connectivity: int, min_size: int = 1) -> np.ndarray:
    labels, _ = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, connectivity))
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return np.where(keep[labels], labels, 0)


def landsat_water() -> np.ndarray:
    swir = ndimage.gaussian_filter(_bands(LANDSAT)[4], 1.5, mode="reflect")
    return _components(swir <= threshold_otsu(swir), 2)


def landsat_mosaic() -> np.ndarray:
    """The three scenes put together by hand (the two on the grid placed as they are,
    the one in WGS 84 by exact nearest neighbour), band 5 smoothed with its zero fill
    left out (the Gaussian mean of the pixels with data), Otsu of the pixels with data."""
    grid = rasterio.open(LANDSAT)
    layers = []
    for name in ("scene_west.tif", "scene_east.tif", "scene_north_wgs84.tif"):
        values, _ = nearest(
            str(WORKFLOW_DATA / name), grid.crs.to_wkt(), grid.transform, grid.shape
        )
        layers.append((values[4:5], values[4:5] != 0))
    band = composite(layers, 0)[0].astype(np.float32)
    valid = band != 0
    weight = ndimage.gaussian_filter(valid.astype(np.float32), 1.5, mode="reflect")
    mean = ndimage.gaussian_filter(np.where(valid, band, 0), 1.5, mode="reflect")
    near = ndimage.maximum_filter(~valid, size=2 * 6 + 1, mode="reflect")
    swir = np.where(
        near,
        mean / np.where(weight > 0, weight, 1),
        ndimage.gaussian_filter(band, 1.5, mode="reflect"),
    )
    return _components((swir <= threshold_otsu(swir[valid])) & valid, 2)


def rgbn_water() -> np.ndarray:
    _, green, _, nir = _bands(WORKFLOW_DATA / "rgbn.tif")
    ndwi = (green - nir) / (green + nir)
    return _components(ndwi > threshold_triangle(ndwi), 2, min_size=20)


def landsat_vegetation() -> np.ndarray:
    bands = _bands(LANDSAT)
    ndvi = (bands[3] - bands[2]) / (bands[3] + bands[2])
    return _components(ndvi > threshold_otsu(ndvi), 2, min_size=10)


def slide_tissue() -> np.ndarray:
    """The slide's level 2 (tifffile's read of the pyramid), segmented whole."""
    with tifffile.TiffFile(WORKFLOW_DATA / "cmu_small_region_pyramid.svs") as slide:
        rgb = slide.series[0].levels[2].asarray().astype(np.float32)
    luminance = rgb @ np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
    smooth = ndimage.gaussian_filter(luminance, 0.5, mode="reflect")
    tissue = _components(smooth <= threshold_otsu(smooth), 2, min_size=125) > 0
    return _components(ndimage.binary_fill_holes(tissue), 2)


def brain_mask() -> np.ndarray:
    volume = pipeline.open_image(str(WORKFLOW_DATA / "ch2.nii.gz")).data.compute()
    smooth = ndimage.gaussian_filter(volume.astype(np.float32), 1.0, mode="reflect")
    head = smooth[(smooth >= 0.5) & (smooth <= 255)]
    mask = (smooth > threshold_otsu(head)) & (smooth >= 0.5)
    opened = ndimage.binary_opening(np.pad(mask, 6, mode="symmetric"), ball(3))[6:-6, 6:-6, 6:-6]
    labels = _components(opened, 1)
    largest = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(largest).astype(np.uint8)


@dataclass(frozen=True)
class Case:
    """How a workflow is tested: its chunks here (small, so that chunk seams cross
    objects), its score, and the whole-image result it must equal, if exact."""

    chunks: int | list[int]
    score: Callable[[RunResult], float]
    whole_image: Callable[[], np.ndarray] | None = None


CASES = {
    "landsat_water.yaml": Case(100, mask_accuracy("landsat", "water"), landsat_water),
    "landsat_mosaic.yaml": Case(100, mask_accuracy("landsat", "water"), landsat_mosaic),
    "inbox_water.yaml": Case(100, mask_accuracy("landsat", "water")),
    "rgbn_water.yaml": Case(64, mask_accuracy("rgbn", "water"), rgbn_water),
    "landsat_vegetation.yaml": Case(
        100, mask_accuracy("landsat", "vegetation"), landsat_vegetation
    ),
    "landsat_landcover.yaml": Case(100, class_accuracy(kmeans_names)),
    "landsat_classifier.yaml": Case(100, class_accuracy(classifier_names)),
    "slide_tissue.yaml": Case(240, mask_accuracy("slide", "tissue"), slide_tissue),
    "brain_mask.yaml": Case([64, 112, 96], dice_with(WORKFLOW_DATA / "ch2bet.nii.gz"), brain_mask),
    "nuclei_3d.yaml": Case([60, 128, 256], f1_with(WORKFLOW_DATA / "nuclei_label.tif")),
}


@pytest.mark.parametrize("name", sorted(path.name for path in WORKFLOWS.glob("*.yaml")))
def test_workflow_reaches_the_score_its_readme_states(name: str, tmp_path: Path) -> None:
    stated = stated_scores()
    if name not in CASES or name not in stated:
        pytest.fail(
            f"workflows/{name} has no score: give it a Case in tests/test_workflows.py and "
            "a row with its score in the table of workflows/README.md"
        )
    case = CASES[name]
    flow = Workflow.from_yaml(WORKFLOWS / name)  # validated in full
    if flow.templated:  # a scheduled workflow: run as the schedule would, on one new input
        check_templates(flow.spec, name, pattern=True)
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        flow = flow.for_input(shutil.copy(LANDSAT, inbox / "scene.tif"))
    outputs = {kind: str(tmp_path / Path(path).name) for kind, path in flow.output_paths().items()}
    spec = flow.spec.model_copy(update={"chunks": case.chunks, "output": Outputs(**outputs)})
    with dask.config.set(scheduler="threads"):
        result = run_spec(spec, flow.base)
        assert result.labels is not None
        assert result.labels.numblocks != (1,) * result.labels.ndim  # seams were crossed
        assert case.score(result) >= stated[name]
        if "polygons" in result.outputs:  # in the scene's CRS (the mosaic's grid's)
            epsg = CRS.from_wkt(spec.source.open(flow.base, None).crs).to_epsg()
            polygons = pyogrio.read_dataframe(result.outputs["polygons"])
            assert len(polygons) == result.num and polygons.crs.to_epsg() == epsg
        if case.whole_image is not None:
            assert_same_partition(result.labels.compute(), case.whole_image())


def test_every_workflow_in_the_readme_exists() -> None:
    assert sorted(stated_scores()) == sorted(path.name for path in WORKFLOWS.glob("*.yaml"))
