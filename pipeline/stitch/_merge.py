"""Union-find over the seam graph: from chunk counts and seam pairs to final ids.

Provisional ids are ``offset[chunk] + local`` with ``offset`` the exclusive
cumulative sum of the chunk counts (chunks in C order of the chunk grid), so they
depend only on the data and the chunk grid. Connected components of the seam
graph (which grows with the chunks' surface, not their volume) give every merged
object one representative, its smallest provisional id. Final ids number the
representatives consecutively in the order of their provisional ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from ._local import ChunkIds

Index = tuple[int, ...]


@dataclass(frozen=True)
class RemapPlan:
    """Everything the second pass needs, per chunk, to give objects their final ids.

    Attributes
    ----------
    counts
        Objects found in each chunk (an array over the chunk grid).
    base
        ``final id = base + local id`` for a local id with no merged id below it
        in the same chunk.
    away
        For chunks holding ids merged into another chunk's object: the sorted
        local ids and the final ids they take.
    num
        Number of objects in the whole image.
    """

    counts: np.ndarray
    base: np.ndarray
    away: dict[Index, tuple[np.ndarray, np.ndarray]]
    num: int

    @property
    def dtype(self) -> np.dtype:
        """uint32 when every id fits, else uint64: chosen from the counts."""
        return np.dtype(np.uint32 if self.num <= np.iinfo(np.uint32).max else np.uint64)

    def chunk(self, index: Index) -> ChunkIds:
        """The id mapping of the chunk at grid position ``index``."""
        return ChunkIds(
            count=int(self.counts[index]),
            base=int(self.base[index]),
            away=self.away.get(index),
            dtype=self.dtype,
        )


def plan_remap(counts: np.ndarray, seams: list[tuple[Index, Index, np.ndarray]]) -> RemapPlan:
    """Merge objects across seams.

    Parameters
    ----------
    counts
        Objects per chunk, shaped like the chunk grid.
    seams
        ``(chunk a, chunk b, pairs)``: ``pairs[:, 0]`` are local ids in ``a`` that
        touch the local ids ``pairs[:, 1]`` in ``b``.
    """
    grid = counts.shape
    flat_counts = counts.ravel().astype(np.int64)
    upper = np.cumsum(flat_counts)
    offsets = (upper - flat_counts).reshape(grid)
    total = int(upper[-1]) if upper.size else 0

    away, away_final = _merged_away(offsets, seams)
    base = offsets - np.searchsorted(away, offsets, side="right")

    by_chunk: dict[Index, tuple[np.ndarray, np.ndarray]] = {}
    if away.size:
        chunk_of = np.searchsorted(upper, away, side="left")
        starts = np.flatnonzero(np.r_[True, chunk_of[1:] != chunk_of[:-1]])
        for start, stop in zip(starts, np.r_[starts[1:], away.size], strict=True):
            flat = int(chunk_of[start])
            index = tuple(int(i) for i in np.unravel_index(flat, grid))
            local = away[start:stop] - offsets[index]
            by_chunk[index] = (local, away_final[start:stop])
    return RemapPlan(counts=counts, base=base, away=by_chunk, num=total - int(away.size))


def _merged_away(
    offsets: np.ndarray, seams: list[tuple[Index, Index, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted provisional ids that are not their object's representative, and the
    final ids of their representatives."""
    if not seams:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a = np.concatenate([offsets[i] + p[:, 0].astype(np.int64) for i, _, p in seams])
    b = np.concatenate([offsets[j] + p[:, 1].astype(np.int64) for _, j, p in seams])
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    edges = sparse.coo_matrix(
        (np.ones(a.size, dtype=np.int8), (inverse[: a.size], inverse[a.size :])),
        shape=(nodes.size, nodes.size),
    )
    _, component = csgraph.connected_components(edges, directed=False)
    # nodes are sorted, so a component's first node is its smallest id.
    _, first = np.unique(component, return_index=True)
    root = nodes[first][component]
    is_away = nodes != root
    away, away_root = nodes[is_away], root[is_away]
    return away, away_root - np.searchsorted(away, away_root, side="left")
