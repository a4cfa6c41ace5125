"""Small real sample images bundled with segpipe (see README.md here for licences)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["sample_path"]

_SAMPLES = ("L7_ETMs.tif", "nuclei.tif")


def sample_path(name: str) -> Path:
    """Path of a bundled sample image.

    Examples
    --------
    >>> sample_path("nuclei.tif").name
    'nuclei.tif'
    """
    if name not in _SAMPLES:
        raise FileNotFoundError(
            f"no bundled sample named {name!r}; the samples are: {', '.join(_SAMPLES)}"
        )
    return Path(str(files(__package__) / name))
