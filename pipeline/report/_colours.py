"""Colours of a preview: one per label id, the image stretched, both blended.

Everything here works on the small sampled preview arrays, in memory.
"""

from __future__ import annotations

import fastremap
import numpy as np

from .._hash import splitmix64

FILL_OPACITY = 0.45
"""How much of a label's colour covers the image inside its object."""


def label_colours(ids: np.ndarray) -> np.ndarray:
    """An RGB colour per label id (``uint8``, shape ``ids.shape + (3,)``); black for 0.

    Each id's colour depends on the id alone, so an object has the same
    colour in every preview of the same labels: the id is hashed
    (splitmix64) to a hue, a saturation from 0.55 to 0.95 and a value from
    0.75 to 1. Neighbouring ids get unrelated colours; two ids share a colour
    only by a rare hash collision.

    Examples
    --------
    >>> label_colours(np.array([0, 1, 2, 1])).tolist()
    [[0, 0, 0], [250, 69, 59], [100, 167, 247], [250, 69, 59]]
    """
    values, inverse = fastremap.unique(np.asarray(ids), return_inverse=True)
    z = splitmix64(values)
    hue = (z & np.uint64(0xFFFFFF)).astype(np.float64) / 2**24
    saturation = 0.55 + 0.4 * ((z >> np.uint64(24)) & np.uint64(0xFF)).astype(np.float64) / 255
    value = 0.75 + 0.25 * ((z >> np.uint64(32)) & np.uint64(0xFF)).astype(np.float64) / 255
    rgb = _hsv_to_rgb(hue, saturation, value)
    rgb[values == 0] = 0
    return rgb[inverse.reshape(ids.shape)]


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] to RGB ``uint8``, one row per colour."""
    sector = np.floor(hue * 6).astype(np.int64) % 6
    f = hue * 6 - np.floor(hue * 6)
    candidates = np.stack(
        [
            value,
            value * (1 - f * saturation),
            value * (1 - saturation),
            value * (1 - (1 - f) * saturation),
        ]
    )  # v, q, p, t
    # Per sector of the hue circle: which candidate is red, green, blue.
    order = np.array([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]])
    columns = np.arange(hue.size)
    rgb = np.stack([candidates[order[sector, c], columns] for c in range(3)], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def stretch(bands: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Bands (``c, y, x``) to ``uint8``: each band's 2nd to 98th percentile to 0..255.

    The percentiles are ``np.percentile`` (linear) of the band's valid pixels;
    values are mapped linearly, clipped and rounded. Invalid pixels are 0; a
    band without contrast is mid-grey.

    Examples
    --------
    >>> stretch(np.arange(101, dtype=np.uint8).reshape(1, 1, 101))[0, 0, [0, 2, 50, 98, 100]]
    array([  0,   0, 128, 255, 255], dtype=uint8)
    """
    out = np.zeros(bands.shape, np.uint8)
    good = np.ones(bands.shape[1:], bool) if valid is None else valid
    for band, pixels in enumerate(bands.astype(np.float64)):
        usable = good & np.isfinite(pixels)
        if not usable.any():
            continue
        low, high = np.percentile(pixels[usable], [2, 98])
        if high > low:
            scaled = np.round(np.clip((pixels - low) / (high - low), 0, 1) * 255)
        else:
            scaled = np.full(pixels.shape, 128.0)
        out[band] = np.where(usable, scaled, 0).astype(np.uint8)
    return out


def outlines(ids: np.ndarray) -> np.ndarray:
    """Pixels of objects that touch another id (background included) along y or x.

    Examples
    --------
    >>> outlines(np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 2]])).astype(int).tolist()
    [[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    """
    edge = np.zeros(ids.shape, bool)
    for axis in range(ids.ndim):
        before = [slice(None)] * ids.ndim
        after = [slice(None)] * ids.ndim
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        differs = ids[tuple(before)] != ids[tuple(after)]
        edge[tuple(before)] |= differs
        edge[tuple(after)] |= differs
    return edge & (ids != 0)


def compose(ids: np.ndarray, base: np.ndarray | None) -> np.ndarray:
    """The preview picture: label colours over ``base``, outlines in full colour.

    Parameters
    ----------
    ids
        Sampled labels, ``y, x``; 0 is background.
    base
        The image under them as ``uint8`` RGB (``y, x, 3``), or None.

    Returns
    -------
    numpy.ndarray
        With ``base``: RGB, the image unchanged on background, objects covered
        by their colour at :data:`FILL_OPACITY`, their outlines in full colour.
        Without: RGBA, background transparent, objects in their colour and
        outlines in a darker shade of it.

    Examples
    --------
    >>> ids = np.array([[0, 7]])
    >>> compose(ids, np.full((1, 2, 3), 100, np.uint8))[0, 0].tolist()
    [100, 100, 100]
    >>> compose(ids, None)[:, :, 3].tolist()
    [[0, 255]]
    """
    colours = label_colours(ids)
    objects = ids != 0
    edge = outlines(ids)
    if base is None:
        picture = np.zeros((*ids.shape, 4), np.uint8)
        picture[..., :3] = colours
        picture[edge, :3] = (colours[edge] * 0.6).astype(np.uint8)
        picture[..., 3] = np.where(objects, 255, 0)
        return picture
    picture = base.copy()
    blend = base[objects] * (1 - FILL_OPACITY) + colours[objects] * FILL_OPACITY
    picture[objects] = np.round(blend).astype(np.uint8)
    picture[edge] = colours[edge]
    return picture
