"""The inputs a schedule sees: files (or zarr folders) matching its pattern, once written."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Found", "matching"]

# Names that writers use while a file is still coming (browsers, rsync, curl, editors).
_IN_TRANSIT = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart", "~")


@dataclass(frozen=True)
class Found:
    """An input on disk: its path, size in bytes and newest modification time."""

    path: Path
    size: int
    modified: float

    def quiet_for(self, now: float) -> float:
        """Seconds since anything in the input last changed."""
        return now - self.modified

    @property
    def fingerprint(self) -> str:
        return f"{self.size}:{self.modified:.6f}"


def matching(pattern: str, skip: frozenset[str] = frozenset()) -> list[Found]:
    """Every input that ``pattern`` matches now, in name order, but those in ``skip``
    (resolved paths: inputs the ledger has, which are not looked into again).

    Hidden names (``.scene.tif``, as rsync writes) and names that writers use
    while a transfer is under way (``.part``, ``.tmp``, ``.crdownload``, ...) are
    left out; a file that vanishes while it is looked at is too. A folder (a
    zarr store) is one input: its size is the sum of its files' sizes and its
    time the newest of theirs.
    """
    found = []
    for name in sorted(glob.glob(pattern, recursive=True)):
        path = Path(name).resolve()
        if path.name.startswith(".") or path.name.lower().endswith(_IN_TRANSIT):
            continue
        if str(path) in skip:
            continue
        try:
            size, modified = _size_and_time(path)
        except FileNotFoundError:
            continue
        found.append(Found(path, size, modified))
    return found


def _size_and_time(path: Path) -> tuple[int, float]:
    stat = path.stat()
    if not path.is_dir():
        return stat.st_size, stat.st_mtime
    size, modified = 0, stat.st_mtime
    for folder, _, files in os.walk(path):
        modified = max(modified, os.stat(folder).st_mtime)
        for file in files:
            inner = os.stat(os.path.join(folder, file))
            size += inner.st_size
            modified = max(modified, inner.st_mtime)
    return size, modified
