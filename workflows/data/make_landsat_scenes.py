"""Build the three scenes of landsat_mosaic.yaml from ``L7_ETMs.tif``.

Real mosaics are made of scenes that overlap, that carry a zero fill along
their edges which no tag declares, and that do not all come in one CRS. These
three are cut from the Landsat 7 sample (all six bands, 64 x 64 tiles) to be
like that:

- ``scene_west.tif``: columns 0-209, every row, with a zero wedge along its
  east edge (no nodata tag);
- ``scene_east.tif``: columns 150-348, rows 40-351, with a zero wedge along its
  west edge (no nodata tag);
- ``scene_north_wgs84.tif``: rows 5-129, columns 100-339, reprojected to WGS 84
  (EPSG:4326) with nearest neighbour, outside its footprint 0 (tagged nodata).

Together they cover the sample's whole grid but for a corner of about 1,200
pixels in the north-east. Run from the repository's root::

    python workflows/data/make_landsat_scenes.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import array_bounds
from rasterio.warp import Resampling, calculate_default_transform, reproject

HERE = Path(__file__).parent
SCENE = HERE.parent.parent / "pipeline" / "data" / "L7_ETMs.tif"


def cut(rows: tuple[int, int], cols: tuple[int, int]) -> tuple[np.ndarray, Affine, dict]:
    """The sample's pixels of ``rows`` x ``cols`` (ends excluded), their transform and
    the profile to write them with."""
    with rasterio.open(SCENE) as src:
        data = src.read()[:, rows[0] : rows[1], cols[0] : cols[1]]
        transform = src.transform @ Affine.translation(cols[0], rows[0])
        profile = {**src.profile, "tiled": True, "blockxsize": 64, "blockysize": 64}
    return data, transform, profile


def wedge(data: np.ndarray, *, east: bool) -> np.ndarray:
    """Zero fill in a wedge along the east (or west) edge, 12 to 56 pixels wide."""
    height, width = data.shape[1:]
    row, col = np.mgrid[:height, :width]
    reach = 12 + row // 8
    filled = col >= width - reach if east else col < reach
    out = data.copy()
    out[:, filled] = 0
    return out


def write(name: str, data: np.ndarray, profile: dict) -> None:
    profile = {**profile, "width": data.shape[2], "height": data.shape[1]}
    with rasterio.open(HERE / name, "w", **profile) as dst:
        dst.write(data)
    print(f"{HERE / name}: {data.shape[1]} x {data.shape[2]}, {profile['crs']}")


def main() -> None:
    data, transform, profile = cut((0, 352), (0, 210))
    write("scene_west.tif", wedge(data, east=True), {**profile, "transform": transform})
    data, transform, profile = cut((40, 352), (150, 349))
    write("scene_east.tif", wedge(data, east=False), {**profile, "transform": transform})

    data, transform, profile = cut((5, 130), (100, 340))
    target = CRS.from_epsg(4326)
    bounds = array_bounds(data.shape[1], data.shape[2], transform)
    warped_transform, width, height = calculate_default_transform(
        profile["crs"], target, data.shape[2], data.shape[1], *bounds
    )
    warped = np.zeros((data.shape[0], height, width), data.dtype)
    reproject(
        data,
        warped,
        src_transform=transform,
        src_crs=profile["crs"],
        dst_transform=warped_transform,
        dst_crs=target,
        resampling=Resampling.nearest,
        dst_nodata=0,
    )
    write(
        "scene_north_wgs84.tif",
        warped,
        {**profile, "crs": target, "transform": warped_transform, "nodata": 0},
    )


if __name__ == "__main__":
    main()
