"""Which pixels count as neighbours: ``structure`` / ``connectivity`` resolved once.

Pure geometry: no dask and no I/O.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from ..errors import InputValueError

# cc3d names its neighbourhoods by neighbour count; scipy/skimage by connectivity rank.
Cc3dConnectivity = Literal[4, 8, 6, 18, 26]
_CC3D_CONNECTIVITY: dict[int, dict[int, Cc3dConnectivity]] = {
    2: {1: 4, 2: 8},
    3: {1: 6, 2: 18, 3: 26},
}


@dataclass(frozen=True)
class Neighbourhood:
    """A validated neighbourhood.

    Attributes
    ----------
    offsets
        Every neighbour offset (each a tuple of -1/0/1, never all zero); the set is
        centrosymmetric.
    cc3d_connectivity
        The matching ``cc3d`` connectivity (4, 8, 6, 18 or 26), or ``None`` when the
        structure is not one of the standard ones and scipy must label the chunks.
    """

    ndim: int
    offsets: tuple[tuple[int, ...], ...]
    cc3d_connectivity: Cc3dConnectivity | None

    @property
    def structure(self) -> np.ndarray:
        """The 3 x 3 (x 3) boolean structuring element, as scipy takes it."""
        out = np.zeros((3,) * self.ndim, dtype=bool)
        out[(1,) * self.ndim] = True
        for offset in self.offsets:
            out[tuple(o + 1 for o in offset)] = True
        return out


def resolve_neighbourhood(ndim: int, structure: Any, connectivity: Any) -> Neighbourhood:
    """Validate ``structure`` / ``connectivity`` for an ``ndim``-D mask.

    Same meaning as in ``scipy.ndimage.label`` and ``skimage.measure.label``: give
    at most one; neither means connectivity 1 (faces only).

    Raises
    ------
    InputValueError
        Both are given, the connectivity is not an integer in ``1..ndim``, or the
        structure is not a centrosymmetric array of shape ``(3,) * ndim``.
    """
    if structure is not None and connectivity is not None:
        raise InputValueError(
            "give either structure or connectivity, not both "
            f"(got structure of shape {np.shape(structure)} and connectivity={connectivity!r})"
        )
    if structure is None:
        rank = 1 if connectivity is None else connectivity
        if (
            isinstance(rank, bool)
            or not isinstance(rank, int | np.integer)
            or not 1 <= rank <= ndim
        ):
            raise InputValueError(
                f"connectivity must be an integer from 1 to {ndim} for a {ndim}D mask; "
                f"got {connectivity!r}"
            )
        element = ndimage.generate_binary_structure(ndim, int(rank))
    else:
        element = _check_structure(ndim, structure)
    return _from_structure(element)


def _check_structure(ndim: int, structure: Any) -> np.ndarray:
    element = np.asarray(structure)
    if element.shape != (3,) * ndim:
        raise InputValueError(
            f"structure must have shape {(3,) * ndim} for a {ndim}D mask; got shape {element.shape}"
        )
    if element.dtype.kind not in "biu":
        raise InputValueError(
            f"structure must hold booleans or integers; got dtype {element.dtype}"
        )
    element = element != 0
    if not np.array_equal(element, element[(slice(None, None, -1),) * ndim]):
        raise InputValueError(
            "structure must be centrosymmetric (equal to itself flipped on every axis), "
            "since connection goes both ways; got\n" + str(element.astype(int))
        )
    return element


def _from_structure(element: np.ndarray) -> Neighbourhood:
    ndim = element.ndim
    element = element.copy()
    element[(1,) * ndim] = True
    offsets = tuple(
        offset
        for offset in itertools.product((-1, 0, 1), repeat=ndim)
        if any(offset) and element[tuple(o + 1 for o in offset)]
    )
    cc3d_connectivity: Cc3dConnectivity | None = None
    for rank, neighbours in _CC3D_CONNECTIVITY.get(ndim, {}).items():
        if np.array_equal(element, ndimage.generate_binary_structure(ndim, rank)):
            cc3d_connectivity = neighbours
    return Neighbourhood(ndim=ndim, offsets=offsets, cc3d_connectivity=cc3d_connectivity)
