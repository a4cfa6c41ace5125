"""write_report: a run record as one self-contained HTML page.

Each section is built by :mod:`._sections` from the record; every string
taken from the record is escaped on its way into the page (:mod:`._markup`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ..io._staging import check_output, staged
from ..measure._sizes import SizeCounts
from . import _sections as sections
from ._markup import mapping
from ._page import page

__all__ = ["write_report"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_report(
    record: Mapping[str, Any],
    path: str | Path,
    *,
    preview: str | Path | None = None,
    performance: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the run ``record`` as one self-contained HTML page at ``path``.

    The page needs nothing else: its style is inline, its figures are inline
    SVG, the preview is embedded as a base64 PNG, and its security policy
    forbids scripts and network requests. It shows the source (path, shape,
    dtype, chunks, halo), the steps and the workflow as run (YAML), the fitted
    values, the time of each stage with a bar, the object count (per class
    when recorded) and a histogram of object sizes in log-spaced bins (when
    the record holds ``object_sizes``), how the seams were stitched, the
    chunks of each pass, the outputs as links relative to the page, the
    preview, the link to Dask's performance report, the versions, and the
    whole record as JSON. Keys missing from the record are shown as not
    recorded. Every string from the record is HTML-escaped.

    Parameters
    ----------
    record
        A run record (``RunResult.record``, or the ``.run.json`` file's
        contents): ``workflow``, ``steps``, ``fitted``, ``source``,
        ``chunks``, ``halo``, ``objects``, ``seams``, ``versions``,
        ``started``, ``finished``, ``timings_s``, ``first_pass``,
        ``chunks_written``, and optionally ``objects_per_class``, ``outputs``
        (kind to path; relative paths are taken from the current folder) and
        ``object_sizes``: pixels per object, or how many objects have each
        size as ``{"pixels": [...], "objects": [...]}``.
    path
        The HTML file to write (``.html`` or ``.htm``).
    preview
        A PNG (from :func:`write_preview`) to embed.
    performance
        The HTML file ``distributed.performance_report(filename=...)`` wrote:
        linked relative to the page, not copied in (it is large).
    overwrite
        Replace an existing ``path``.

    Returns
    -------
    Path
        ``path``, written completely or not at all (staged, then moved).

    Raises
    ------
    UnsupportedInputError
        ``record`` is not a mapping.
    InputValueError
        ``path`` does not end in ``.html``; ``preview`` is not a PNG;
        ``object_sizes`` are not whole numbers of 0 or more.
    ReadError
        ``preview`` or ``performance`` does not exist.
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> record = {"objects": 3, "timings_s": {"open": 0.5, "fit": 1.5}}
    >>> page = write_report(record, folder / "run.html")
    >>> "open" in page.read_text() and "<svg" not in page.read_text()
    True
    >>> shutil.rmtree(folder)
    """
    if not isinstance(record, Mapping):
        raise UnsupportedInputError(
            f"record must be a run record mapping (RunResult.record); got {type(record).__name__}"
        )
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        raise InputValueError(f"report {target} must be an HTML file: give a name ending in .html")
    check_output(target, overwrite=overwrite)
    folder = target.resolve().parent
    png = _read_png(preview) if preview is not None else None
    performance_path = _existing(performance, "performance report") if performance else None
    sizes = _sizes(record.get("object_sizes"))

    source = mapping(record.get("source"))
    title = f"segpipe run: {Path(str(source.get('path', 'unknown source'))).name}"
    parts = [
        sections.summary(record, source),
        sections.preview(png),
        sections.inputs(record, source),
        sections.workflow(record),
        sections.timings(record),
        sections.objects(record, sizes),
        sections.seams(record.get("seams")),
        sections.outputs(record.get("outputs"), folder),
        sections.performance(performance_path, folder),
        sections.versions(record.get("versions")),
        sections.raw(record),
    ]
    text = page(title, sections.subtitle(record), "\n".join(parts))
    with staged(target, overwrite=overwrite) as staging:
        staging.write_text(text, encoding="utf-8")
    return target


# --- arguments ---------------------------------------------------------------------------------


def _existing(path: str | Path, what: str) -> Path:
    found = Path(path)
    if not found.is_file():
        raise ReadError(f"{what} {found}: no such file; check the path")
    return found


def _read_png(path: str | Path) -> bytes:
    data = _existing(path, "preview").read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise InputValueError(f"preview {path} is not a PNG file; give the PNG write_preview wrote")
    return data


def _sizes(value: Any) -> SizeCounts | None:
    """``object_sizes`` of the record: one size per object, or a distribution
    ``{"pixels": [...], "objects": [...]}`` (how many objects have each size)."""
    if value is None:
        return None
    if isinstance(value, SizeCounts):
        return value
    distribution = isinstance(value, Mapping)
    try:
        if distribution:
            pixels = np.asarray(value["pixels"], dtype=np.float64).ravel()
            objects = np.asarray(value["objects"], dtype=np.float64).ravel()
        else:
            pixels = np.asarray(value, dtype=np.float64).ravel()
            objects = np.ones_like(pixels)
    except (KeyError, TypeError, ValueError) as err:
        raise InputValueError(
            "record object_sizes must be numbers, one pixel count per object, or "
            f'{{"pixels": [...], "objects": [...]}}; got {type(err).__name__}: {err}'
        ) from None
    for name, numbers in (("pixels", pixels), ("objects", objects)):
        if not np.isfinite(numbers).all() or (numbers < 0).any() or (numbers % 1).any():
            raise InputValueError(f"record object_sizes {name} must be whole numbers of 0 or more")
    if pixels.shape != objects.shape:
        raise InputValueError(
            f"record object_sizes has {pixels.size} pixels and {objects.size} objects; "
            "give one count of objects per size"
        )
    counts = SizeCounts.merged([SizeCounts(pixels.astype(np.int64), objects.astype(np.int64))])
    keep = counts.objects > 0
    return SizeCounts(counts.pixels[keep], counts.objects[keep])
