"""Outputs that appear complete or not at all: written under a hidden name, then moved.

Every writer builds its output (a file or a folder) under a staging name next
to the target, in the same folder and so on the same file system, and renames
it into place only once it is complete::

    out.tif                          <- absent, or the previous output, until the end
    .out.tif.partial-1a2b3c4d        <- the output while it is written
    .out.tif.partial-1a2b3c4d.tmp    <- scratch files named after it (removed too)

A failure anywhere removes the staging output and every scratch file named
after it, and leaves an existing target untouched.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputExistsError

__all__ = ["check_output", "move_into_place", "staged"]


def check_output(path: str | Path, *, overwrite: bool) -> Path:
    """The target ``path``, refused if it exists and ``overwrite`` is False.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> check_output("does-not-exist.tif", overwrite=False).name
    'does-not-exist.tif'
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"output {target} already exists; choose another path or pass overwrite=True "
            "(--overwrite on the command line) to replace it"
        )
    return target


@contextmanager
def staged(path: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a staging path next to ``path``; move it into place when the block ends.

    The caller writes its whole output (a file or a folder) at the yielded
    path, and may put scratch files next to it under names that start with the
    staging name. When the block ends without an exception, the output replaces
    ``path`` (only with ``overwrite=True`` if ``path`` exists by then); in every
    case the staging path and its scratch files are removed afterwards. Missing
    parent folders of ``path`` are created, as zarr does for its stores.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False, checked both on entry and
        before the move.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with staged(folder / "out.txt", overwrite=False) as staging:
    ...     _ = staging.write_text("done")
    >>> sorted(p.name for p in folder.iterdir())
    ['out.txt']
    >>> shutil.rmtree(folder)
    """
    target = check_output(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _hidden_sibling(target, "partial")
    try:
        yield staging
        move_into_place(staging, target, overwrite=overwrite)
    finally:
        _remove_with_scratch(staging)


def _hidden_sibling(target: Path, kind: str) -> Path:
    """A new hidden name next to ``target``: ``.<name>.<kind>-<8 hex digits>``."""
    return target.with_name(f".{target.name}.{kind}-{uuid.uuid4().hex[:8]}")


def move_into_place(staging: Path, target: Path, *, overwrite: bool) -> None:
    """Put the finished ``staging`` output at ``target`` (replacing it only with
    ``overwrite``)."""
    if not staging.exists():
        raise FileNotFoundError(f"the writer left nothing at its staging path {staging}")
    if not (target.exists() or target.is_symlink()):
        staging.rename(target)
        return
    check_output(target, overwrite=overwrite)  # it may have appeared while we wrote
    if staging.is_file() and target.is_file():
        os.replace(staging, target)  # atomic: readers see the old file or the new one
        return
    # A folder cannot be swapped atomically: move the old one aside, put the new
    # one in place, then delete the old one (put it back if the swap failed).
    old = _hidden_sibling(target, "replaced")
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    _remove(old)


def _remove_with_scratch(staging: Path) -> None:
    """Remove ``staging`` and every file or folder next to it whose name starts with it."""
    _remove(staging)
    with os.scandir(staging.parent) as entries:
        scratch = [Path(e.path) for e in entries if e.name.startswith(staging.name)]
    for path in scratch:
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
