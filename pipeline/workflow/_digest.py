"""What the write pass keeps of every label chunk, so the report reads none of them again.

As each chunk of the label map is written, its digest is kept with it:

- its pixels that the preview shows (the rows and columns
  :func:`~pipeline.report._preview.preview_pixels` picks, of the middle plane
  in 3D), a few hundred ids at most;
- its objects' sizes, sorted into objects whole in the chunk (a short size
  distribution) and pieces of objects that may reach beyond it (see
  :mod:`pipeline.measure._sizes`).

After the write, the digests are assembled on the client into the preview's
ids and the size distribution of the whole map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..measure._sizes import ChunkSizes, SizeCounts, chunk_sizes, combine_sizes
from ..report._preview import PreviewPixels

Index = tuple[int, ...]


@dataclass(frozen=True)
class ChunkDigest:
    """One chunk's preview pixels (``None`` when the preview shows none) and sizes."""

    start: Index
    tile: np.ndarray | None
    sizes: ChunkSizes | None


@dataclass(frozen=True)
class LabelDigest:
    """The digest of each chunk of a label map, and their assembly.

    Attributes
    ----------
    pixels
        The label pixels the preview shows.
    connected
        Every object is connected (true of connected components, not
        guaranteed of instances), so objects on no chunk face are whole.
    sizes
        Count the objects' sizes (not needed when the first pass counted them).
    """

    pixels: PreviewPixels
    connected: bool
    sizes: bool = True

    def __call__(self, block: np.ndarray, start: Index) -> ChunkDigest:
        sizes = chunk_sizes(block, connected=self.connected) if self.sizes else None
        return ChunkDigest(start, self._tile(block, start), sizes)

    def assemble(
        self, digests: dict[Index, Any], dtype: np.dtype, known: SizeCounts | None = None
    ) -> tuple[np.ndarray, SizeCounts]:
        """The preview's ids and the size distribution of the whole map (``known``,
        when the digests counted no sizes)."""
        rows, columns = self.pixels.rows, self.pixels.columns
        ids = np.zeros((rows.size, columns.size), dtype=dtype)
        for digest in digests.values():
            if digest.tile is not None:
                top = int(np.searchsorted(rows, digest.start[-2]))
                left = int(np.searchsorted(columns, digest.start[-1]))
                height, width = digest.tile.shape
                ids[top : top + height, left : left + width] = digest.tile
        if not self.sizes:
            if known is None:
                raise ValueError("a digest that counts no sizes needs the known sizes")
            return ids, known
        return ids, combine_sizes(digest.sizes for digest in digests.values())

    def _tile(self, block: np.ndarray, start: Index) -> np.ndarray | None:
        plane = self.pixels.plane
        if plane is not None:
            if not start[0] <= plane < start[0] + block.shape[0]:
                return None
            block = block[plane - start[0]]
        rows = _within(self.pixels.rows, start[-2], block.shape[-2])
        columns = _within(self.pixels.columns, start[-1], block.shape[-1])
        if not rows.size or not columns.size:
            return None
        return block[np.ix_(rows, columns)]


def _within(positions: np.ndarray, start: int, extent: int) -> np.ndarray:
    """The ``positions`` inside ``[start, start + extent)``, counted from ``start``."""
    inside = positions[(positions >= start) & (positions < start + extent)]
    return inside - start
