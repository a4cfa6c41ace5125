"""Readers and writers, one module per format family."""

from ._cog import write_cog
from ._image import Image
from ._ome_zarr import write_ome_zarr
from ._open import open_image
from ._polygons import label_polygons, write_polygons
from ._tables import write_table
from ._zarr import write_labels_zarr

__all__ = [
    "Image",
    "label_polygons",
    "open_image",
    "write_cog",
    "write_labels_zarr",
    "write_ome_zarr",
    "write_polygons",
    "write_table",
]
