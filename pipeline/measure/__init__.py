"""Measuring objects: per-object tables of a chunked label image, and scores.

:func:`regionprops` gives ``skimage.measure.regionprops_table`` of the whole
image (label, area, bounding box, centroid, intensity statistics per band),
plus physical areas and world centroids, computed chunk by chunk from
per-object partial sums merged by label.

:func:`dice` and :func:`object_f1` score a segmentation against a reference
(the overlap of the foregrounds; objects matched one to one by IoU), chunk by
chunk as well.
"""

from ._inputs import PROPERTIES
from ._scores import ObjectScores, dice, object_f1
from ._table import regionprops

__all__ = ["PROPERTIES", "ObjectScores", "dice", "object_f1", "regionprops"]
