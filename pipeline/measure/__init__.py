"""Measuring objects: per-object tables of a chunked label image.

:func:`regionprops` gives ``skimage.measure.regionprops_table`` of the whole
image (label, area, bounding box, centroid, intensity statistics per band),
plus physical areas and world centroids, computed chunk by chunk from
per-object partial sums merged by label.
"""

from ._inputs import PROPERTIES
from ._table import regionprops

__all__ = ["PROPERTIES", "regionprops"]
