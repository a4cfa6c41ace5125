"""Arguments taken as arrays: a dask array as it is, a numpy array wrapped lazily."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from .errors import UnsupportedInputError


def as_dask_array(value: Any, name: str) -> da.Array:
    """``value`` as a dask array (numpy arrays in automatic chunks).

    Raises
    ------
    UnsupportedInputError
        ``value`` is neither a dask nor a numpy array; the message names ``name``.

    Examples
    --------
    >>> as_dask_array(np.zeros((2, 3)), "mask").shape
    (2, 3)
    """
    if isinstance(value, da.Array):
        return value
    if isinstance(value, np.ndarray):
        return da.from_array(value, chunks="auto")
    raise UnsupportedInputError(f"{name} must be a dask or numpy array; got {type(value).__name__}")
