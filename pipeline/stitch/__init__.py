"""Labels made global: per-chunk labelling stitched across seams into one label map."""

from ._instances import SeamReport, stitch_instances
from ._label import label

__all__ = ["SeamReport", "label", "stitch_instances"]
