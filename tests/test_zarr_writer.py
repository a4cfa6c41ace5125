"""Label outputs appear complete or not at all, and are never replaced silently."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import pipeline
from pipeline.io import write_labels_zarr
from pipeline.io._zarr import open_label_array


def test_round_trip_with_attributes(tmp_path: Path) -> None:
    labels = da.from_array(np.arange(35, dtype=np.uint32).reshape(5, 7), chunks=(2, 3))
    path = write_labels_zarr(labels, tmp_path / "labels.zarr", attributes={"source": "x.tif"})
    written = open_label_array(path)
    np.testing.assert_array_equal(written[...], labels.compute())
    assert written.chunks == (2, 3)
    assert written.attrs["source"] == "x.tif"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.zarr"]


def test_existing_output_is_kept_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "labels.zarr"
    write_labels_zarr(da.ones((4, 4), dtype=np.uint32, chunks=2), target)
    with pytest.raises(pipeline.OutputExistsError, match="overwrite=True"):
        write_labels_zarr(da.zeros((4, 4), dtype=np.uint32, chunks=2), target)
    np.testing.assert_array_equal(open_label_array(target)[...], 1)

    write_labels_zarr(da.full((4, 4), 7, dtype=np.uint32, chunks=2), target, overwrite=True)
    np.testing.assert_array_equal(open_label_array(target)[...], 7)


def test_a_failing_computation_leaves_no_output(tmp_path: Path) -> None:
    def fail(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("kernel crashed")

    labels = da.zeros((4, 4), dtype=np.uint32, chunks=2).map_blocks(fail, dtype=np.uint32)
    with pytest.raises(RuntimeError, match="kernel crashed"):
        write_labels_zarr(labels, tmp_path / "labels.zarr")
    assert list(tmp_path.iterdir()) == []
