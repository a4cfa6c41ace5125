"""Labels made global: per-chunk labelling stitched across seams into one label map."""

from ._label import label

__all__ = ["label"]
