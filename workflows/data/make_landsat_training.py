"""Build landsat_training.gpkg: the training areas of landsat_classifier.yaml as map polygons.

The seven rectangles were drawn by eye on ``L7_ETMs.tif`` as the pixels from
row ``r0`` to ``r1`` and column ``c0`` to ``c1`` (both ends included). Each is
written as the outline of those pixels (their outer edges), turned into map
coordinates with the scene's transform and reprojected to WGS 84 (EPSG:4326),
as a GIS would save areas drawn over the scene: the workflow reprojects them
back to the scene's CRS (EPSG:31985) and annotates the pixels whose centre
lies inside, the same pixels. Fields: ``class`` (1 water, 2 vegetation,
3 other) and ``name``.

Run from the repository's root::

    python workflows/data/make_landsat_training.py
"""

from __future__ import annotations

from pathlib import Path

import geopandas
import rasterio
import shapely

HERE = Path(__file__).parent
SCENE = HERE.parent.parent / "pipeline" / "data" / "L7_ETMs.tif"
TARGET = HERE / "landsat_training.gpkg"
CLASSES = {1: "water", 2: "vegetation", 3: "other"}
# (class, first row, last row, first column, last column), pixels from 0
RECTANGLES = [
    (1, 290, 310, 240, 270),  # open sea
    (1, 160, 190, 315, 335),  # turbid water near the coast
    (2, 40, 65, 25, 50),  # forest and woodland
    (2, 178, 198, 6, 24),
    (2, 188, 200, 200, 218),
    (3, 195, 225, 255, 280),  # built-up areas
    (3, 260, 290, 100, 140),
]


def main() -> None:
    with rasterio.open(SCENE) as scene:
        transform, crs = scene.transform, scene.crs
    outlines = []
    for _, row0, row1, col0, col1 in RECTANGLES:
        corners = [(col0, row0), (col1 + 1, row0), (col1 + 1, row1 + 1), (col0, row1 + 1)]
        outlines.append(shapely.Polygon([transform @ corner for corner in corners]))
    frame = geopandas.GeoDataFrame(
        {
            "class": [cls for cls, *_ in RECTANGLES],
            "name": [CLASSES[cls] for cls, *_ in RECTANGLES],
        },
        geometry=outlines,
        crs=crs.to_wkt(),
    ).to_crs("EPSG:4326")
    TARGET.unlink(missing_ok=True)
    frame.to_file(TARGET, driver="GPKG", layer="training")
    print(f"{TARGET}: {len(frame)} polygons in {frame.crs}")


if __name__ == "__main__":
    main()
