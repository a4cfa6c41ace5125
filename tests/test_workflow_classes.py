"""Class workflows: the class map output and every object's class (panoptic labels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage
from sklearn.metrics import pairwise_distances_argmin

import pipeline
from pipeline.data import sample_path
from pipeline.io._zarr import open_label_array
from pipeline.workflow import WorkflowError
from tests.conftest import assert_same_partition

LANDSAT = sample_path("L7_ETMs.tif")


def test_kmeans_classes_and_panoptic_labels_on_a_cluster(
    tmp_path: Path, cluster_client: object
) -> None:
    flow = pipeline.Workflow(
        source=str(LANDSAT),
        steps=[{"kmeans": {"k": 4, "sample": 20_000}}, {"label": {"connectivity": 2}}],
        output={"labels": str(tmp_path / "objects.zarr"), "classes": str(tmp_path / "cover.zarr")},
        chunks=64,
    )
    result = flow.run(client=cluster_client)
    with rasterio.open(LANDSAT) as src:
        pixels = src.read().reshape(6, -1).T.astype(np.float64)
    (centroids,) = [v for k, v in result.record["fitted"].items() if k.startswith("kmeans")]
    reference = pairwise_distances_argmin(pixels, np.asarray(centroids)).reshape(352, 349) + 1
    classes = open_label_array(tmp_path / "cover.zarr")[:]
    assert classes.dtype == np.uint8
    np.testing.assert_array_equal(classes, reference)

    labels = result.labels.compute()
    expected = np.zeros(reference.shape, dtype=np.int64)
    for value in range(1, 5):  # components of each class, as labelling by value makes
        part, _ = ndimage.label(reference == value, structure=np.ones((3, 3)))
        expected[part > 0] = part[part > 0] + expected.max()
    assert_same_partition(labels, expected)

    attributes = open_label_array(tmp_path / "objects.zarr").attrs
    object_classes = np.asarray(attributes["object_classes"])
    assert object_classes.size == result.num
    np.testing.assert_array_equal(object_classes[labels[labels > 0] - 1], classes[labels > 0])
    per_class = json.loads((tmp_path / "objects.run.json").read_text())["objects_per_class"]
    assert {int(c): n for c, n in per_class.items()} == {
        c: int((object_classes == c).sum()) for c in range(1, 5)
    }


def test_a_class_map_output_needs_a_class_step() -> None:
    with pytest.raises(WorkflowError, match="output classes is the class map of a class step"):
        pipeline.Workflow(
            source="a.tif",
            steps=["threshold", "label"],
            output={"labels": "o.zarr", "classes": "c.zarr"},
        )
