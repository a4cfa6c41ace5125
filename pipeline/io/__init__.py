"""Readers and writers, one module per format family."""

from ._zarr import write_labels_zarr

__all__ = ["write_labels_zarr"]
