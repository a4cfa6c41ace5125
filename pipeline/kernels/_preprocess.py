"""Pre-processing steps: median filter, percentile normalisation, band math, CT window.

Each is an ``"image"`` step that returns float32 with the leading band axis.
``normalize`` fits global per-band percentiles in a distributed histogram pass
before the per-chunk map; ``expression`` checks in ``fit`` that every band it
names exists. The others need no fit.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Annotated, Any

import dask.array as da
import numpy as np
from pydantic import Field, field_validator, model_validator
from scipy import ndimage

from .._batches import reduce_blocks
from ..errors import InputValueError
from ._base import Step, register
from ._reductions import add, banded, value_counts
from ._units import Physical, Pixels, per_axis

FLOAT_BINS = 2**16  # float percentiles are as fine as those of a 16-bit image


@register
class Median(Step):
    """Median filter over the spatial axes, each band on its own.

    ``scipy.ndimage.median_filter`` with a ``size`` wide box footprint
    (1 along the band axis) and ``mode="reflect"``. Its halo is ``size // 2``
    per spatial axis, which is the footprint's reach on its longer side (for an
    even ``size`` scipy's footprint reaches ``size // 2`` before the pixel and
    ``size // 2 - 1`` after it), so chunked filtering equals whole-image
    filtering exactly, for any chunking. Returns float32 (the median picks one
    of the input values, so integers up to 2**24 are kept exactly).

    Parameters
    ----------
    size
        Width of the footprint, >= 1: pixels (one number, or one per spatial
        axis) or a length such as ``"3 mm"``, converted per axis with the
        image's spacing and rounded to the nearest whole pixel.

    Examples
    --------
    >>> import numpy as np
    >>> Median(size=3).apply(np.array([[[1, 9, 2, 3]]]), None)
    array([[[1., 2., 3., 3.]]], dtype=float32)
    """

    name = "median"
    output = "image"

    size: Annotated[Pixels, Physical("length", ge=1, integer=True)] = Field(
        description="footprint width: pixels, per axis, or a length"
    )

    def halo(self, ndim: int) -> tuple[int, ...]:
        return tuple(int(size) // 2 for size in per_axis(self, "size", ndim))

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        size = (1, *(int(n) for n in per_axis(self, "size", block.ndim - 1)))  # not across bands
        return ndimage.median_filter(block, size=size, mode="reflect").astype(np.float32)


@register
class Normalize(Step):
    """Map each band's global ``low`` .. ``high`` percentiles to 0 .. 1.

    ``fit`` computes, per band, the percentiles of the whole image (pixels
    outside ``valid`` and non-finite values excluded) from a distributed
    histogram, as ``np.percentile(values, q, method="inverted_cdf")`` defines
    them (the smallest value with at least ``q`` % of the values at or below it):

    - integer images of at most 16 bits: one bin per value, one pass, the
      percentiles are exactly numpy's;
    - other images: 65536 bins between each band's minimum and maximum, two
      passes (range, then counts); the percentile is the centre of the bin
      holding numpy's value, so within half a bin (``(max - min) / 131072``).

    ``apply`` returns ``(x - lo) / (hi - lo)`` in float32 (``lo`` and ``hi``
    cast to float32 first), clipped to [0, 1] when ``clip``. A band whose
    ``lo`` equals its ``hi`` maps to 0.

    Parameters
    ----------
    low, high
        Percentiles in [0, 100], ``low < high``.
    clip
        Clip the result to [0, 1].

    Raises
    ------
    InputValueError
        From ``fit``, when the image has no valid finite pixel.

    Examples
    --------
    >>> import numpy as np
    >>> step = Normalize(low=0, high=100)
    >>> state = step.fit(da.from_array(np.array([[[10, 20, 30]]], dtype=np.uint8)), None)
    >>> state
    (array([10.]), array([30.]))
    >>> step.apply(np.array([[[10, 20, 40]]], dtype=np.uint8), state)
    array([[[0. , 0.5, 1. ]]], dtype=float32)
    """

    name = "normalize"
    pointwise = True
    output = "image"

    low: float = Field(default=1.0, ge=0, le=100, description="percentile mapped to 0")
    high: float = Field(default=99.0, ge=0, le=100, description="percentile mapped to 1")
    clip: bool = True

    @model_validator(mode="after")
    def _low_below_high(self) -> Normalize:
        if self.low >= self.high:
            raise ValueError(
                f"low ({self.low}) must be below high ({self.high}), e.g. {{low: 1, high: 99}}"
            )
        return self

    def fit(self, data: da.Array, valid: da.Array | None) -> tuple[np.ndarray, np.ndarray]:
        counts, values = band_histograms(data, valid)
        if np.any(counts.sum(axis=1) == 0):
            raise InputValueError("normalize: the image has no valid pixels to fit on")
        lo = np.array([values[b][inverted_cdf_index(c, self.low)] for b, c in enumerate(counts)])
        hi = np.array([values[b][inverted_cdf_index(c, self.high)] for b, c in enumerate(counts)])
        return lo.astype(np.float64), hi.astype(np.float64)

    def apply(self, block: np.ndarray, state: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        shape = (-1,) + (1,) * (block.ndim - 1)
        lo = state[0].astype(np.float32).reshape(shape)
        span = (state[1].astype(np.float32) - state[0].astype(np.float32)).reshape(shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (block.astype(np.float32) - lo) / span
        out = np.where(span > 0, out, np.float32(0))
        return np.clip(out, 0, 1) if self.clip else out


def inverted_cdf_index(counts: np.ndarray, q: float) -> int:
    """The bin holding ``np.percentile(values, q, method="inverted_cdf")``.

    ``counts`` is the histogram of ``values``; numpy takes the sorted value at
    index ``n * q / 100 - 1`` when that is a whole number, else the next one up,
    and never below 0.

    Examples
    --------
    >>> int(inverted_cdf_index(np.array([2, 0, 3]), 50))  # values 0, 0, 2, 2, 2
    2
    """
    n = int(counts.sum())
    index = n * np.true_divide(np.float64(q), 100) - 1
    rank = max(int(index) if index == np.floor(index) else int(np.floor(index)) + 1, 0)
    return int(np.searchsorted(np.cumsum(counts), rank, side="right"))


def band_histograms(data: da.Array, valid: da.Array | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-band histograms of the whole image, valid finite pixels only.

    Returns ``counts`` (bands, bins) and ``values`` (bands, bins): each bin's
    value (integers of at most 16 bits) or its centre (other images). Each
    pass over the image is a :func:`~pipeline._batches.reduce_blocks`.
    """
    bands = data.shape[0]
    arrays = banded(data, valid)
    if data.dtype.kind in "iub" and data.dtype.itemsize <= 2:
        info = np.iinfo(data.dtype) if data.dtype.kind != "b" else np.iinfo(np.uint8)
        offset, span = int(info.min), int(info.max) - int(info.min) + 1
        counts = reduce_blocks(_bincount_block, arrays, add)
        values = np.broadcast_to(np.arange(span) + offset, (bands, span))
        return counts, values
    floats = arrays[0].astype(np.float64)
    ok = da.isfinite(floats) if valid is None else da.isfinite(floats) & arrays[1]
    lo, hi = reduce_blocks(_range_block, [floats, ok], _band_ranges)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), np.maximum(hi, lo), lo)
    counts = reduce_blocks(_histogram_block, [floats, ok], add, lo, hi)
    edges = [
        np.histogram_bin_edges([], FLOAT_BINS, _range(a, b)) for a, b in zip(lo, hi, strict=True)
    ]
    values = np.stack([(e[:-1] + e[1:]) / 2 for e in edges])
    values[hi == lo] = lo[hi == lo][:, None]  # one value: every bin stands for it
    return counts, values


def _bincount_block(block: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(bands, values) counts of a block; ``valid`` is ``(1, ...)``."""
    return np.stack([value_counts(values, None if valid is None else valid[0]) for values in block])


def _range_block(block: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Each band's least and greatest ``ok`` value (2, bands); inf and -inf for none."""
    spatial = tuple(range(1, block.ndim))
    low = np.where(ok, block, np.inf).min(axis=spatial)
    return np.stack([low, np.where(ok, block, -np.inf).max(axis=spatial)])


def _band_ranges(parts: list[np.ndarray]) -> np.ndarray:
    """The (2, bands) range of several blocks' ranges."""
    stacked = np.stack(parts)
    return np.stack([stacked[:, 0].min(axis=0), stacked[:, 1].max(axis=0)])


def _histogram_block(
    block: np.ndarray, ok: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """(bands, FLOAT_BINS) counts of a block's ``ok`` values, each band over its range."""
    counts = np.zeros((block.shape[0], FLOAT_BINS), dtype=np.int64)
    for band, values in enumerate(block):
        counts[band] = np.histogram(
            values[ok[band]], bins=FLOAT_BINS, range=_range(lo[band], hi[band])
        )[0]
    return counts


def _range(lo: float, hi: float) -> tuple[float, float]:
    """The histogram range of a band; one of width 1 when it holds one value."""
    return (lo, hi) if hi > lo else (lo, lo + 1)


_BAND = re.compile(r"b([1-9][0-9]*)")
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,  # replaced by a NaN-where-zero division in _evaluate
    ast.Pow: np.power,
}
_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_LOGICAL: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.BitAnd: np.logical_and,
    ast.BitOr: np.logical_or,
}
_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "abs": (1, np.abs),
    "sqrt": (1, np.sqrt),
    "log": (1, np.log),
    "exp": (1, np.exp),
    "minimum": (2, np.minimum),
    "maximum": (2, np.maximum),
    "where": (3, np.where),
}


@register
class Expression(Step):
    """Band math: one float32 band computed from the image's bands.

    ``b1`` .. ``bN`` are the image's bands (1-based). The expression may use
    numbers, ``+ - * / **``, unary ``-`` and ``+``, parentheses, the functions
    ``abs sqrt log exp`` (one argument), ``minimum maximum`` (two) and
    ``where(condition, a, b)``, whose condition is one comparison
    (``< <= > >= == !=``) or comparisons joined with ``&`` and ``|``. It is
    parsed with :mod:`ast` and evaluated by walking the tree, never with
    ``eval``; anything else is refused when the step is made.

    Arithmetic is float32, element by element. ``x / y`` is NaN wherever ``y``
    is 0 (NDVI of an empty pixel is undefined), silently; ``log`` of 0 is
    ``-inf``, ``log`` and ``sqrt`` of negatives are NaN and overflow is
    ``inf``, as numpy gives, also silently.

    Parameters
    ----------
    expression
        E.g. ``"(b4 - b3) / (b4 + b3)"`` (NDVI of a Landsat 7 image).

    Raises
    ------
    InputValueError
        From ``fit``, before any graph is built, when the expression names a
        band the image does not have.

    Examples
    --------
    >>> import numpy as np
    >>> ndvi = Expression(expression="(b2 - b1) / (b2 + b1)")
    >>> ndvi.apply(np.array([[[1, 0]], [[3, 0]]], dtype=np.uint8), None)
    array([[[0.5, nan]]], dtype=float32)
    """

    name = "expression"
    pointwise = True
    output = "image"

    expression: str = Field(description='band math over b1..bN, e.g. "(b4 - b3) / (b4 + b3)"')

    @field_validator("expression")
    @classmethod
    def _safe(cls, value: str) -> str:
        _parse(value)
        return value

    def bands_used(self) -> list[int]:
        """The 1-based band numbers the expression reads, in increasing order."""
        nodes = list(ast.walk(_parse(self.expression)))
        functions = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
        names = [n for n in nodes if isinstance(n, ast.Name) and id(n) not in functions]
        return sorted({int(node.id[1:]) for node in names})

    def bands(self, count: int) -> int:
        """One band out, whatever goes in."""
        return 1

    def fit(self, data: da.Array, valid: da.Array | None) -> None:
        count = data.shape[0]
        missing = [b for b in self.bands_used() if b > count]
        if missing:
            raise InputValueError(
                f"expression {self.expression!r} uses band b{missing[0]} but the image has "
                f"{count} band{'s' if count != 1 else ''} (b1..b{count})"
            )
        return None

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        bands = block.astype(np.float32, copy=False)
        with np.errstate(all="ignore"):
            result = _evaluate(_parse(self.expression).body, bands)
        out = np.broadcast_to(np.asarray(result, dtype=np.float32), block.shape[1:])
        return np.array(out[None], dtype=np.float32)


def _parse(text: str) -> ast.Expression:
    """Parse ``text`` and check every node is allowed; ValueError quotes the bad part."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"{text!r} is not a valid expression: {error.msg}") from None
    _check(tree.body, text, condition=False)
    return tree


def _check(node: ast.AST, text: str, *, condition: bool) -> None:
    def bad(why: str) -> ValueError:
        part = ast.get_source_segment(text.strip(), node) or ast.dump(node)
        return ValueError(f"{part!r} in {text!r}: {why}")

    if condition:
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARISONS:
                raise bad("a condition compares two values with one of < <= > >= == !=")
            _check(node.left, text, condition=False)
            _check(node.comparators[0], text, condition=False)
        elif isinstance(node, ast.BinOp) and type(node.op) in _LOGICAL:
            _check(node.left, text, condition=True)
            _check(node.right, text, condition=True)
        else:
            raise bad("the condition of where() must be a comparison, or comparisons joined by & |")
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise bad("only numbers are allowed as constants")
    elif isinstance(node, ast.Name):
        if not _BAND.fullmatch(node.id):
            raise bad("names are bands b1, b2, ... (1-based)")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITHMETIC:
            raise bad("the operators are + - * / **")
        _check(node.left, text, condition=False)
        _check(node.right, text, condition=False)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise bad("the unary operators are - and +")
        _check(node.operand, text, condition=False)
    elif isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _FUNCTIONS:
            raise bad(f"the functions are {', '.join(_FUNCTIONS)}")
        arity = _FUNCTIONS[name][0]
        if (
            node.keywords
            or len(node.args) != arity
            or any(isinstance(a, ast.Starred) for a in node.args)
        ):
            raise bad(f"{name}() takes {arity} positional argument{'s' if arity > 1 else ''}")
        for index, argument in enumerate(node.args):
            _check(argument, text, condition=name == "where" and index == 0)
    else:
        raise bad(
            "only numbers, bands b1..bN, + - * / **, parentheses and "
            f"{', '.join(_FUNCTIONS)} are allowed"
        )


def _evaluate(node: ast.AST, bands: np.ndarray) -> Any:
    """Walk a tree accepted by ``_check``; bands are float32 with the band axis first."""
    if isinstance(node, ast.Constant):
        return float(node.value)  # type: ignore[arg-type]  # _check: int or float only
    if isinstance(node, ast.Name):
        return bands[int(node.id[1:]) - 1]
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, bands)
        return np.negative(operand) if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, bands), _evaluate(node.right, bands)
        if isinstance(node.op, ast.Div):
            quotient = np.divide(left, right, dtype=np.float32)
            return np.where(np.equal(right, 0), np.float32(np.nan), quotient)
        if type(node.op) in _LOGICAL:
            return _LOGICAL[type(node.op)](left, right)
        return _ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        compare = _COMPARISONS[type(node.ops[0])]
        return compare(_evaluate(node.left, bands), _evaluate(node.comparators[0], bands))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        function = _FUNCTIONS[node.func.id][1]
        return function(*(_evaluate(argument, bands) for argument in node.args))
    raise ValueError(f"not an allowed expression node: {ast.dump(node)}")  # _check refuses it


@register
class Window(Step):
    """CT intensity window: clip to ``center -/+ width / 2`` and scale to [0, 1].

    ``(clip(x, lo, hi) - lo) / (hi - lo)`` in float32, with ``lo = center - width / 2``
    and ``hi = center + width / 2`` (both cast to float32); e.g. a soft-tissue
    window on Hounsfield units is ``{center: 40, width: 400}``.

    Parameters
    ----------
    center
        Centre of the window, in the image's units.
    width
        Width of the window, > 0.

    Examples
    --------
    >>> import numpy as np
    >>> Window(center=40, width=400).apply(np.array([[[-1000, 40, 140, 3000]]]), None)
    array([[[0.  , 0.5 , 0.75, 1.  ]]], dtype=float32)
    """

    name = "window"
    pointwise = True
    output = "image"

    center: float = Field(allow_inf_nan=False, description="centre of the window")
    width: float = Field(gt=0, allow_inf_nan=False, description="width of the window")

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        lo = np.float32(self.center - self.width / 2)
        hi = np.float32(self.center + self.width / 2)
        data = block.astype(np.float32, copy=False)
        return ((np.clip(data, lo, hi) - lo) / (hi - lo)).astype(np.float32, copy=False)
