"""Looking at a run: a preview PNG of the labels and an HTML report of the run.

:func:`write_preview` draws labels over their image from a coarse pyramid
level; :func:`write_report` turns a run record into one self-contained HTML
page.
"""

from ._colours import label_colours
from ._html import write_report
from ._preview import write_preview

__all__ = ["label_colours", "write_preview", "write_report"]
