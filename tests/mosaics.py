"""References for mosaics, computed without segpipe: scenes put on a grid by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import rasterio


def composite(layers: list[tuple[np.ndarray, np.ndarray]], fill: Any) -> np.ndarray:
    """The first valid pixel of ``(values, valid)`` layers, band by band."""
    out = np.full(layers[0][0].shape, fill, dtype=layers[0][0].dtype)
    missing = np.ones(out.shape, dtype=bool)
    for values, valid in layers:
        take = valid & missing
        out[take] = values[take]
        missing &= ~valid
    return out


def nearest(path: str, crs: str, transform: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """The scene on the grid by nearest neighbour, computed exactly with pyproj: each
    pixel centre projected into the scene, the scene pixel holding it (GDAL's rule);
    and where that pixel exists and holds data."""
    from pyproj import Transformer

    with rasterio.open(path) as src:
        values, inverse = src.read(), ~src.transform
        to_scene = Transformer.from_crs(crs, src.crs.to_wkt(), always_xy=True)
        rows, cols = np.mgrid[: shape[0], : shape[1]] + 0.5
        x, y = to_scene.transform(
            transform.c + cols * transform.a, transform.f + rows * transform.e
        )
        col = np.floor(inverse.a * x + inverse.b * y + inverse.c).astype(int)
        row = np.floor(inverse.d * x + inverse.e * y + inverse.f).astype(int)
        inside = (col >= 0) & (col < src.width) & (row >= 0) & (row < src.height)
        out = np.zeros((src.count, *shape), src.dtypes[0])
        out[:, inside] = values[:, row[inside], col[inside]]
        valid = np.broadcast_to(inside, out.shape)
        if src.nodata is not None:
            valid = valid & (out != src.nodata)
    return out, valid
