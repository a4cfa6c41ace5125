"""What a run leaves behind about itself: inputs, parameters, versions, timings."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..io._image import Image
from ..kernels import Grid

_DEPENDENCIES = (
    "segpipe",
    "dask",
    "distributed",
    "numpy",
    "scipy",
    "scikit-image",
    "zarr",
    "connected-components-3d",
    "rasterio",
    "tifffile",
    "nibabel",
)


def versions() -> dict[str, str]:
    """Versions of segpipe and the libraries that shaped its results."""
    found = {"python": platform.python_version()}
    for name in _DEPENDENCIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def georeference(image: Image) -> dict[str, Any]:
    """The image's place in the world, as JSON-ready label-output attributes."""
    attrs: dict[str, Any] = {"axes": image.spatial_axes}
    if image.crs is not None:
        attrs["crs"] = image.crs
    if image.transform is not None:
        attrs["transform"] = list(image.transform)[:6]
    if image.spacing is not None:
        attrs["spacing"] = list(image.spacing)
    if image.units is not None:
        attrs["units"] = image.units
    if image.affine is not None:
        attrs["affine"] = image.affine.tolist()
    return attrs


def grid_of(image: Image) -> Grid:
    """The image's spatial grid, for steps whose parameters are in world terms."""
    shape = tuple(
        int(size) for size, axis in zip(image.shape, image.axes, strict=True) if axis != "c"
    )
    return Grid(
        shape=shape,
        spacing=image.spacing,
        units=image.units,
        crs=image.crs,
        transform=image.transform,
        source=image.source,
    )


class Timer:
    """Wall time per stage, in the order the stages ran."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(time.perf_counter() - start, 3)
