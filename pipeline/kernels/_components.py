"""Connected components: the step that turns a mask into stitched instance labels."""

from __future__ import annotations

from pydantic import Field

from ._base import Step, register


@register
class Label(Step):
    """Label connected foreground regions, stitched exactly across chunk seams.

    Not a per-chunk map: the workflow hands the mask to ``pipeline.label``,
    whose result equals whole-image labelling for any chunking.
    """

    name = "label"
    output = "labels"
    accepts = ("mask", "classes")

    connectivity: int = Field(default=1, ge=1, le=3, description="1 = faces only")
