"""segpipe: segment images too big for one machine, on a Dask cluster.

The import package is ``pipeline``; the distribution and the command are ``segpipe``.
"""

from importlib.metadata import PackageNotFoundError, version

from . import measure
from .errors import (
    InputValueError,
    NondeterministicInputError,
    OutputExistsError,
    PipelineError,
    ReadError,
    UnsupportedInputError,
)
from .io import Image, open_image, write_polygons
from .kernels import Length, Size, step
from .measure import ObjectScores, dice, object_f1, regionprops
from .report import write_preview, write_report
from .stitch import SeamReport, label, stitch_instances
from .workflow import RunResult, Workflow, WorkflowError

try:
    __version__ = version("segpipe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Image",
    "InputValueError",
    "Length",
    "NondeterministicInputError",
    "ObjectScores",
    "OutputExistsError",
    "PipelineError",
    "ReadError",
    "RunResult",
    "SeamReport",
    "Size",
    "UnsupportedInputError",
    "Workflow",
    "WorkflowError",
    "__version__",
    "dice",
    "label",
    "measure",
    "object_f1",
    "open_image",
    "regionprops",
    "step",
    "stitch_instances",
    "write_polygons",
    "write_preview",
    "write_report",
]
