"""A fast, well-mixed 64-bit hash of integers, for choices that must not depend on chunks."""

from __future__ import annotations

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of each value (as uint64): equal inputs, equal outputs,
    and neighbouring inputs give unrelated, uniformly spread outputs.

    Examples
    --------
    >>> splitmix64(np.array([0, 1, 2])).tolist()
    [16294208416658607535, 10451216379200822465, 10905525725756348110]
    """
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))
