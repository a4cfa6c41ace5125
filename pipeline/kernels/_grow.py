"""Region growing from seeds: a flood fill that crosses chunk seams exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import dask
import dask.array as da
import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from .._batches import compute_batched, reduce_blocks
from ..errors import InputValueError
from ._annotations import VectorAnnotated
from ._base import Grid, Step, register, resolve_path
from ._postprocess import keep_only
from ._reductions import value_range, widest


@register
class RegionGrow(VectorAnnotated):
    """Grow regions from seeds through pixels whose value is close to the seeds'.

    The region of a seed is every pixel joined to it (through the ``label``
    step's connectivity) by pixels with values in ``[low, high]``: the seeds'
    value range widened by ``tolerance`` on both sides, or given as ``low`` and
    ``high``. With one seed point this is
    ``skimage.segmentation.flood(image, seed, tolerance=tolerance)`` on the whole
    image. The band is fitted once (the seeds' values are read from the image
    the steps before made); the step makes the band's mask, ``label`` stitches
    it exactly, and only the objects holding a seed are kept, so a region
    grows across any number of chunks.

    Parameters
    ----------
    seeds
        Seed points in pixel coordinates, ``[[row, col], ...]`` (or
        ``[[plane, row, col], ...]`` in 3D); or the path of a vector file
        (GeoPackage, GeoJSON, Shapefile, GeoParquet) of 2D point or polygon
        features, read once the image is opened (:meth:`on_grid`) and
        reprojected to its CRS: a point seeds the pixel that holds it, a
        polygon every pixel whose centre is inside it (see
        :func:`pipeline.io._vectors.read_annotations`).
    seed_mask
        Or a raster on the image's grid whose non-zero pixels are seeds (a
        relative path is taken from the workflow file's folder).
    tolerance
        How far from the seeds' values a pixel may be (>= 0).
    low, high
        Or the band itself.

    Examples
    --------
    >>> RegionGrow(seeds=[[10, 20]], tolerance=5).describe()
    'region_grow(seeds=[[10, 20]], seed_mask=None, tolerance=5.0, low=None, high=None)'
    """

    name = "region_grow"
    output = "mask"

    seeds: list[list[int]] | str | None = Field(default=None, min_length=1)
    seed_mask: str | None = None
    tolerance: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    low: float | None = Field(default=None, allow_inf_nan=False)
    high: float | None = Field(default=None, allow_inf_nan=False)

    @field_validator("seeds", "seed_mask")
    @classmethod
    def _from_the_workflow_folder(cls, value: Any, info: ValidationInfo) -> Any:
        return str(resolve_path(value, info)) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_of_each(self) -> RegionGrow:
        if (self.seeds is None) == (self.seed_mask is None):
            raise ValueError(
                "give seeds (points, or a vector file) or seed_mask (a raster), one of them"
            )
        banded = self.low is not None or self.high is not None
        if banded == (self.tolerance is not None) or (banded and None in (self.low, self.high)):
            raise ValueError("give tolerance, or both low and high")
        if banded and self.low > self.high:  # type: ignore[operator]
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if isinstance(self.seeds, list) and len({len(point) for point in self.seeds}) != 1:
            raise ValueError("seeds must all have the same number of coordinates")
        return self

    def on_grid(self, grid: Grid) -> Step:
        """The step in pixels of ``grid``; a vector file of seeds is read there (its
        errors are raised now, before any work on the image)."""
        step = super().on_grid(grid)
        if not isinstance(self.seeds, str):
            return step
        return cast(RegionGrow, step)._read_vectors(grid, self.seeds, "any", None)

    def fit(self, data: da.Array, valid: da.Array | None) -> tuple[float, float]:
        """The band ``(low, high)``: from the seeds' values, or as given."""
        if data.shape[0] != 1:
            raise InputValueError(
                f"{self.name} grows through one band; the image has {data.shape[0]}: choose one "
                "with source: {path: ..., bands: [n]} or a grayscale step before it"
            )
        self._seed_points(data.shape[1:])  # checked even when the band is given
        if self.low is not None and self.high is not None:
            return float(self.low), float(self.high)
        values = self._seed_values(data[0])
        tolerance = float(self.tolerance or 0.0)
        return float(values.min()) - tolerance, float(values.max()) + tolerance

    def apply(self, block: np.ndarray, state: tuple[float, float]) -> np.ndarray:
        low, high = state
        values = block[0]
        return (values >= low) & (values <= high)

    def select(self, labels: da.Array, num: int, state: Any) -> tuple[da.Array, int]:
        """Keep the objects that hold a seed."""
        keep = np.zeros(num + 1, dtype=bool)
        if self.seeds is not None:
            points = self._seed_points(labels.shape)
            keep[labels.vindex[tuple(points.T)].compute()] = True
        else:
            seeds = self._seed_raster(labels.shape)
            found = compute_batched(
                [
                    dask.delayed(_seeded_ids, pure=True)(a, b)
                    for a, b in zip(
                        labels.to_delayed().ravel(),
                        seeds.rechunk(labels.chunks).to_delayed().ravel(),
                        strict=True,
                    )
                ]
            )
            keep[np.concatenate(found)] = True
        return keep_only(labels, keep)

    def _seed_points(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.seeds is None:
            return np.empty((0, len(shape)), dtype=np.int64)
        if isinstance(self.seeds, str):  # checked on the grid when read
            return self._vector_pixels(self.seeds)[0]
        points = np.asarray(self.seeds, dtype=np.int64)
        if points.shape[1] != len(shape):
            raise InputValueError(
                f"{self.name}: seeds have {points.shape[1]} coordinates; the image is "
                f"{len(shape)}D: give [{', '.join('zyx'[-len(shape) :])}] per seed"
            )
        outside = ((points < 0) | (points >= np.asarray(shape))).any(axis=1)
        if outside.any():
            raise InputValueError(
                f"{self.name}: seed {points[outside][0].tolist()} lies outside the image of "
                f"shape {tuple(shape)}"
            )
        return points

    def _seed_raster(self, shape: tuple[int, ...]) -> da.Array:
        from ..io import open_image

        raster = open_image(str(self.seed_mask))
        data = raster.data if not raster.axes.startswith("c") else raster.data[0]
        if data.shape != tuple(shape):
            raise InputValueError(
                f"{Path(str(self.seed_mask))}: the seed mask has shape {data.shape}, the image "
                f"{tuple(shape)}: make the seed mask on the image's grid"
            )
        return data != 0

    def _seed_values(self, image: da.Array) -> np.ndarray:
        if self.seeds is not None:
            points = self._seed_points(image.shape)
            return np.asarray(image.vindex[tuple(points.T)].compute(), dtype=np.float64)
        seeds = self._seed_raster(image.shape).rechunk(image.chunks)
        found = reduce_blocks(value_range, [image.astype(np.float64), seeds], widest)
        if found is None:
            raise InputValueError(
                f"{self.seed_mask}: the seed mask has no seed (no non-zero pixel)"
            )
        return np.array(found[:2])


def _seeded_ids(labels: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    return np.unique(labels[seeds])
