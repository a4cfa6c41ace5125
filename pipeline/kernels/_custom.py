"""Custom steps: a user's own function made into a workflow step.

In Python::

    @pipeline.step(halo=8, output="labels")
    def my_cells(block, *, threshold: float = 0.5):
        ...                      # block: one chunk plus 8 pixels on each side
        return instance_ids      # over the same pixels

    flow = pipeline.Workflow(source=..., steps=["normalize", my_cells(threshold=0.4)], ...)

In YAML, by import path (the module must be importable where the workers run)::

    steps:
      - normalize: {}
      - mylab.cells:my_cells: {threshold: 0.4}

A size parameter annotated ``pipeline.Length`` (or ``pipeline.Size``, an
object size) also takes a quantity such as ``"2 um"`` (``"50 um2"``), and the
function gets it in pixels of the image: a length as one number, or a tuple
of one per spatial axis when the pixels are not square::

    @pipeline.step(halo=8, output="mask")
    def my_spots(block, *, radius: pipeline.Length = 2.0):
        ...                      # radius: pixels, e.g. (4.0, 2.0, 2.0)
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import create_model

from ..errors import InputValueError
from ._base import STEPS, Output, Step

_OUTPUTS: dict[str, Output] = {
    "image": "image",
    "mask": "mask",
    "classes": "classes",
    "labels": "instances",
}
_INPUTS: tuple[Output, ...] = ("image", "mask")


def step(
    *,
    halo: int | Sequence[int] = 0,
    output: str = "image",
    accepts: str = "image",
    name: str | None = None,
    bands: int | None = None,
) -> Callable[[Callable[..., np.ndarray]], type[Step]]:
    """Make ``function(block, **params) -> array`` a workflow step.

    Parameters
    ----------
    halo
        Pixels of context the function needs on each side of a chunk: one
        width, or one per spatial axis.
    output
        What the function returns over the block's spatial axes: ``"image"``
        (band axis first, or spatial only for one band), ``"mask"`` (bools),
        ``"classes"`` (class ids 1..255, 0 for none) or ``"labels"`` (object
        ids, 0 for background; pieces of an object seen by two chunks are
        joined by matching them in the halo).
    accepts
        ``"image"``: the block is the image, band axis first (length 1 for one
        band), as float32 after image steps; ``"mask"``: the block is the mask
        of the step before, spatial axes only.
    name
        The step's name in messages and records; default ``module:function``.
    bands
        For ``output="image"``: how many bands the function returns, when
        that differs from what it is given.

    Returns
    -------
    A Step class: call it with the function's keyword parameters to make a
    step. Those parameters are validated against the function's annotations
    when the step is made. The original function is its ``function``.

    Examples
    --------
    >>> import numpy as np
    >>> @step(halo=1, output="mask")
    ... def brighter_than_neighbours(block, *, margin: float = 0.0):
    ...     centre = block[0, 1:-1, 1:-1]
    ...     out = np.zeros(block.shape[1:], dtype=bool)
    ...     out[1:-1, 1:-1] = centre > block[0, :-2, 1:-1] + margin
    ...     return out
    >>> made = brighter_than_neighbours(margin=2)
    >>> made.halo(2), made.output
    ((1, 1), 'mask')
    >>> brighter_than_neighbours(margin="high")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ...
    """
    if output not in _OUTPUTS:
        raise InputValueError(f"output must be one of {', '.join(_OUTPUTS)}; got {output!r}")
    if accepts not in _INPUTS:
        raise InputValueError(f"accepts must be one of {', '.join(_INPUTS)}; got {accepts!r}")
    widths = (halo,) if isinstance(halo, int) else tuple(halo)
    if not widths or any(not isinstance(w, int) or w < 0 for w in widths):
        raise InputValueError(f"halo must be a width >= 0 or one per axis; got {halo!r}")

    def make(function: Callable[..., np.ndarray]) -> type[Step]:
        step_name = name or f"{function.__module__}:{function.__name__}"
        known = STEPS.get(step_name)
        if known is not None and not issubclass(known, _FunctionStep):
            raise InputValueError(f"a step named {step_name!r} is registered already")
        fields = _parameters(function)
        cls = create_model(
            function.__name__,
            __base__=_FunctionStep,
            __module__=function.__module__,
            **fields,
        )
        cls.__qualname__ = function.__qualname__
        cls.__doc__ = function.__doc__
        cls.name = step_name
        cls.output = _OUTPUTS[output]
        cls.accepts = (_OUTPUTS[accepts],)
        cls.function = staticmethod(function)
        cls.widths = widths
        cls.band_count = bands
        STEPS[step_name] = cls
        return cls

    return make


class _FunctionStep(Step):
    """A step that calls a user's function on each block."""

    function: ClassVar[Any]
    widths: ClassVar[tuple[int, ...]]
    band_count: ClassVar[int | None]

    def halo(self, ndim: int) -> tuple[int, ...]:
        widths = self.widths * ndim if len(self.widths) == 1 else self.widths
        if len(widths) != ndim:
            raise InputValueError(
                f"{self.name}: halo gives {len(widths)} widths for a {ndim}D image; "
                "give one width, or one per spatial axis"
            )
        return tuple(widths)

    def bands(self, count: int) -> int:
        return self.band_count if self.band_count is not None else count

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        result = np.asarray(self.function(block, **self.model_dump()))
        spatial = block.shape[1:] if self.accepts == ("image",) else block.shape
        if self.output == "image" and result.shape == spatial:
            result = result[None]
        expected = (
            (self.bands(block.shape[0]) if self.accepts == ("image",) else 1, *spatial)
            if self.output == "image"
            else spatial
        )
        if result.shape != expected:
            raise InputValueError(
                f"{self.name} returned an array of shape {result.shape} for a block of shape "
                f"{block.shape}; a {self.output} step must return shape {expected}"
            )
        return result


def _parameters(function: Callable[..., Any]) -> dict[str, Any]:
    """Pydantic fields from the function's parameters after the block."""
    params = list(inspect.signature(function).parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise InputValueError(
            f"{function.__name__} must take the block as its first positional parameter"
        )
    fields: dict[str, Any] = {}
    for param in params[1:]:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise InputValueError(
                f"{function.__name__}: *args and **kwargs cannot be step parameters; "
                "name each parameter"
            )
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    return fields


def import_step(path: str) -> type[Step]:
    """The step at ``module:attribute`` (made with :func:`step`), importing the module."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise InputValueError(f"a custom step is named 'module:function'; got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InputValueError(
            f"custom step {path!r}: cannot import {module_name!r} ({error}); "
            "install it or put it on PYTHONPATH, on the workers too"
        ) from None
    found = getattr(module, attribute, None)
    if isinstance(found, type) and issubclass(found, Step):
        return found
    if callable(found):
        raise InputValueError(
            f"custom step {path!r} is a plain function; decorate it with "
            "@pipeline.step(halo=..., output=...) to say its halo and what it returns"
        )
    raise InputValueError(f"custom step {path!r}: {module_name} has no step {attribute!r}")
