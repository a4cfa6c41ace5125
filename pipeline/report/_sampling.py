"""Which pyramid level a preview reads, and which of its pixels: pure geometry.

A preview keeps every ``step``-th pixel of one label level (labels are
sampled, never interpolated, so ids stay ids) and, under each kept label
pixel, the image pixel at the same place, read from the coarsest image level
that still holds it::

    labels, level 0   0 . . . 4 . . . 8 . . . 12       step 4 on level 0
    labels, level 1   0 . 2 . 4 . 6 .                  step 2 on level 1: the same pixels
    preview           0 1 2 3 ...

Positions are kept as fractions of a full-resolution label pixel, so levels
that halve exactly (``ceil(n / 2)`` pixels, as GDAL and segpipe make them)
line up pixel for pixel; other ratios are rounded down to the nearest pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

Shape = tuple[int, int]


@dataclass(frozen=True)
class Sampling:
    """The pixels of one pyramid level that make up a preview.

    Attributes
    ----------
    level
        Index of the level to read, in the order the levels were given.
    step
        Along y and x: pixels of that level from one preview pixel to the next.
    shape
        The preview's rows and columns.
    """

    level: int
    step: tuple[Fraction, Fraction]
    shape: Shape

    @property
    def exact(self) -> bool:
        """Whether every preview pixel falls on a whole pixel of the level."""
        return all(s.denominator == 1 for s in self.step)

    def indices(self, axis: int, size: int) -> np.ndarray:
        """The rows (``axis`` 0) or columns (1) of a level ``size`` long to read.

        Examples
        --------
        >>> Sampling(0, (Fraction(3, 2), Fraction(2)), (4, 3)).indices(0, 5).tolist()
        [0, 1, 3, 4]
        """
        step = self.step[axis]
        positions = np.arange(self.shape[axis], dtype=np.int64) * step.numerator
        return np.minimum(positions // step.denominator, size - 1)


def level_factor(full: int, size: int) -> Fraction:
    """Full-resolution pixels per pixel of a level ``size`` pixels long.

    A whole number ``n`` when the level is ``full`` divided by ``n`` (rounded
    either way); the exact ratio otherwise. Below 1 when the level is larger.

    Examples
    --------
    >>> level_factor(349, 175), level_factor(352, 88), level_factor(300, 200)
    (Fraction(2, 1), Fraction(4, 1), Fraction(3, 2))
    >>> level_factor(175, 349)
    Fraction(1, 2)
    """
    if size > full:
        return 1 / level_factor(size, full)
    n = max(1, round(full / size))
    if size in (full // n, -(-full // n)):
        return Fraction(n)
    return Fraction(full, size)


def label_sampling(shapes: Sequence[Shape], max_size: int) -> Sampling:
    """Where to read a label preview whose longest side is at most ``max_size``.

    The level is the coarsest whose longest side is still at least
    ``max_size`` (level 0 when every level is smaller); the step is the one
    whole number along both axes that brings its longest side down to
    ``max_size`` or less, so the aspect ratio is kept.

    Examples
    --------
    >>> label_sampling([(352, 349), (176, 175), (88, 88)], 100)
    Sampling(level=1, step=(Fraction(2, 1), Fraction(2, 1)), shape=(88, 88))
    >>> label_sampling([(352, 349)], 1024).shape
    (352, 349)
    """
    large = [i for i, shape in enumerate(shapes) if max(shape) >= max_size]
    if large:
        level = min(large, key=lambda i: max(shapes[i]))
    else:
        level = max(range(len(shapes)), key=lambda i: max(shapes[i]))
    height, width = shapes[level]
    step = -(-max(height, width) // max_size)
    return Sampling(
        level, (Fraction(step), Fraction(step)), (-(-height // step), -(-width // step))
    )


def spacing(sampling: Sampling, shapes: Sequence[Shape]) -> tuple[Fraction, Fraction]:
    """Full-resolution pixels from one preview pixel to the next, along y and x.

    ``shapes`` are those ``sampling`` chose its level from (level 0 first).

    Examples
    --------
    >>> spacing(label_sampling([(352, 349), (176, 175)], 100), [(352, 349), (176, 175)])
    (Fraction(4, 1), Fraction(4, 1))
    """
    full, level = shapes[0], shapes[sampling.level]
    return (
        sampling.step[0] * level_factor(full[0], level[0]),
        sampling.step[1] * level_factor(full[1], level[1]),
    )


def image_sampling(
    shapes: Sequence[Shape],
    labels: Shape,
    labels_sampling: Sampling,
    between: tuple[Fraction, Fraction],
) -> Sampling:
    """Where to read the image pixels under a label preview.

    Parameters
    ----------
    shapes
        Rows and columns of every image level.
    labels
        Rows and columns of the full-resolution labels.
    labels_sampling
        The label preview's sampling (for its shape).
    between
        Full-resolution label pixels from one preview pixel to the next
        (:func:`spacing`).

    Returns
    -------
    Sampling
        The coarsest image level on whose pixels every preview pixel falls
        exactly; else the coarsest at least as large as the preview; else the
        largest level.

    Examples
    --------
    >>> labels = label_sampling([(352, 349)], 100)
    >>> image_sampling([(352, 349), (176, 175), (88, 88)], (352, 349), labels, (4, 4))
    Sampling(level=2, step=(Fraction(1, 1), Fraction(1, 1)), shape=(88, 88))
    >>> image_sampling([(352, 349), (176, 175)], (352, 349), labels, (4, 4)).level
    1
    """
    preview = labels_sampling.shape
    options = []
    for level, shape in enumerate(shapes):
        per_pixel = [level_factor(full, size) for full, size in zip(labels, shape, strict=True)]
        step = (Fraction(between[0]) / per_pixel[0], Fraction(between[1]) / per_pixel[1])
        options.append(Sampling(level, step, preview))
    large = [
        o for o in options if all(a >= b for a, b in zip(shapes[o.level], preview, strict=True))
    ]
    exact = [o for o in large if o.exact]
    pool = exact or large
    if pool:
        return min(pool, key=lambda o: shapes[o.level][0] * shapes[o.level][1])
    return max(options, key=lambda o: shapes[o.level][0] * shapes[o.level][1])


def same_proportions(image: Shape, labels: Shape) -> bool:
    """Whether an image of shape ``image`` can lie under labels of shape ``labels``:
    their sides are in the same proportion, give or take rounding of pyramid levels.

    Examples
    --------
    >>> same_proportions((176, 175), (352, 349)), same_proportions((349, 352), (352, 100))
    (True, False)
    """
    ratios = [size / full for size, full in zip(image, labels, strict=True)]
    tolerance = max(2 / min(image), 2 / min(labels), 0.01)
    return abs(ratios[0] - ratios[1]) <= tolerance * max(ratios)
