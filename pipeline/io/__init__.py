"""Readers and writers, one module per format family."""

from ._cog import write_cog
from ._image import Image
from ._ome_zarr import write_ome_zarr
from ._open import open_image
from ._zarr import write_labels_zarr

__all__ = ["Image", "open_image", "write_cog", "write_labels_zarr", "write_ome_zarr"]
