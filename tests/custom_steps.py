"""Custom steps used by tests/test_kernels_custom.py (imported by path, on the workers too)."""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

import pipeline


@pipeline.step(halo=2, output="mask")
def brighter_than_surround(block: np.ndarray, *, margin: float = 0.0) -> np.ndarray:
    """Pixels brighter than the median of their 5 x 5 neighbourhood by ``margin``."""
    image = block.mean(axis=0)
    return image > ndimage.median_filter(image, 5, mode="reflect") + margin


@pipeline.step(halo=6, output="labels")
def spots(block: np.ndarray, *, level: float) -> np.ndarray:
    """Connected bright spots, labelled per block."""
    return ndimage.label(block[0] > level)[0]


@pipeline.step(halo=0, output="image", bands=1)
def band_sum(block: np.ndarray) -> np.ndarray:
    """The sum of the bands, returned without a band axis."""
    return block.sum(axis=0)


@pipeline.step(output="mask")
def wrong_shape(block: np.ndarray) -> np.ndarray:
    """Returns one row too few."""
    return block[0, 1:] > 0


def undecorated(block: np.ndarray) -> np.ndarray:
    """A plain function: not a step."""
    return block


@pipeline.step(output="mask")
def slow_threshold(block: np.ndarray, *, level: float, delay: float = 0.05) -> np.ndarray:
    """Foreground above ``level``, taking ``delay`` seconds per chunk."""
    time.sleep(delay)
    return block[0] > level


@pipeline.step(output="mask")
def fails_on(block: np.ndarray, *, value: float) -> np.ndarray:
    """Foreground above 0; a chunk holding ``value`` fails, every time."""
    if (block == value).any():
        raise ValueError(f"this chunk holds {value}")
    return block[0] > 0
