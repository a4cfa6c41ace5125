"""Sizes in physical units: step parameters given as ``"1 mm"`` or ``"20 um2"``.

A size parameter of a step takes

- a number: pixels, the same along every axis (as always);
- for a per-axis length, a list of numbers: pixels along each spatial axis
  (``[z, y, x]`` or ``[y, x]``);
- a quantity ``"<number> <unit>"``: a length (``nm``, ``um`` or ``µm``,
  ``mm``, ``cm``, ``m``, ``km``), or for an object size an area in 2D (a
  length unit squared, ``um2``, ``mm2``, ``cm2``, ``m2``, ``km2``, or ``ha``)
  or a volume in 3D (a length unit cubed, ``um3``, ``mm3``, ``cm3``).

A quantity's syntax and kind (length, or area / volume) are checked when the
step is made; it is turned into pixels by :func:`in_pixels` once the image is
opened (:meth:`Step.on_grid <pipeline.kernels.Step.on_grid>`), with the
image's pixel spacing:

- a length, per axis: ``length / spacing[axis]``, so an anisotropic volume
  gets per-axis sizes (1 mm on 0.5 x 1 x 1 mm voxels is 2, 1, 1 pixels);
- an area or a volume: ``size / (pixel area or voxel volume)`` pixels.

Whole-pixel parameters are rounded to the nearest integer (halves up), an odd
window width to the nearest odd integer (``2 * floor(x / 2) + 1``); a size that
comes out below the parameter's least value is an error, not clipped. A
parameter the library takes as one value for every axis (a ``canny`` sigma)
uses the mean of the per-axis values when they agree within 1 %, and is an
error otherwise.

pint parses and converts the units; it is imported the first time a quantity
is met, so a workflow in pixels never loads it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, get_args

from pydantic import BaseModel, GetCoreSchemaHandler, ValidationError
from pydantic_core import core_schema

from ..errors import InputValueError

if TYPE_CHECKING:
    from ._base import Grid, Step

Pixels = float | tuple[float, ...] | str
"""What a size field holds: pixels, pixels per spatial axis, or a quantity as written."""

Kind = Literal["length", "size"]  # size: a pixel count, an area in 2D, a volume in 3D

LENGTHS = ("nm", "um", "mm", "cm", "m", "km")
ACCEPTED = {
    "length": "give a number of pixels, or a length in nm, um (or µm), mm, cm, m or km, "
    "e.g. '1.5 mm'",
    "size": (
        "give a number of pixels, or an area in 2D (um2, mm2, cm2, m2, km2 or ha) or a "
        "volume in 3D (um3, mm3, cm3), e.g. '20 um2'"
    ),
}
_UNITS_OF = {"area": "um2, mm2, cm2, m2, km2, ha", "volume": "um3, mm3, cm3"}
AGREE = 0.01  # per-axis values within 1 % of each other make one value
_QUANTITY = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*")
_POWER = re.compile(r"(?<=[^\W\d_])([23])\b")  # um2 -> um**2, mm3 -> mm**3


class Quantity(NamedTuple):
    """A parsed quantity: its number, its pint unit, and what it measures."""

    magnitude: float
    unit: Any  # a pint Unit
    kind: Literal["length", "area", "volume"]


@functools.cache
def _registry() -> Any:
    """The one pint unit registry, made when the first quantity is met."""
    import pint

    return pint.UnitRegistry()


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Quantity | None:
    """``"<number> <unit>"`` as a :class:`Quantity`; ``None`` for a bare number.

    Raises
    ------
    ValueError
        When ``text`` is not a number followed by a unit, or the unit is not
        a length, area or volume segpipe takes (see :data:`ACCEPTED`).

    Examples
    --------
    >>> parse("1.5 mm")
    Quantity(magnitude=1.5, unit=<Unit('millimeter')>, kind='length')
    >>> parse("20 µm2").kind, parse("500 um3").kind, parse("3")
    ('area', 'volume', None)
    """
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not '<number> <unit>'")
    number, written = match.groups()
    if not written:
        return None
    registry = _registry()
    try:
        unit = registry.parse_units(_POWER.sub(r"**\1", written))
    except Exception:  # pint raises its own errors, tokenize's, even AssertionError
        unit = None
    kind = None if unit is None else _kind(unit)
    if kind is None:
        raise ValueError(f"{text!r}: {written!r} is not a unit segpipe takes for sizes")
    return Quantity(float(number), unit, kind)


def _kind(unit: Any) -> Literal["length", "area", "volume"] | None:
    registry = _registry()
    if unit == registry.Unit("ha"):
        return "area"
    for name in LENGTHS:
        base = registry.Unit(name)
        if unit == base:
            return "length"
        if unit == base**2:
            return "area"
        if unit == base**3:
            return "volume"
    return None


@dataclass(frozen=True)
class Physical:
    """Marks a step field as a size that may be given in physical units.

    Use it in ``Annotated``; it validates the field: a number (or a list of
    numbers, one per spatial axis, for a per-axis length) against the bounds
    ``gt`` / ``ge`` in pixels, or a quantity string of the right kind.

    Parameters
    ----------
    kind
        ``"length"``: a distance, converted per axis; ``"size"``: an object
        size, a pixel count given as an area (2D) or a volume (3D).
    gt, ge
        Least value in pixels, exclusive or inclusive.
    integer
        Whole pixels: a quantity is rounded to the nearest integer.
    odd
        Odd whole pixels: a quantity is rounded to the nearest odd integer.
    per_axis
        Whether the step takes one value per axis (lengths only); if not, a
        quantity must come to the same pixels along every axis.

    Examples
    --------
    >>> from typing import Annotated
    >>> from pydantic import TypeAdapter
    >>> sigma = TypeAdapter(Annotated[Pixels, Physical("length", gt=0)])
    >>> sigma.validate_python(2), sigma.validate_python([2, 1, 1]), sigma.validate_python("1 mm")
    (2.0, (2.0, 1.0, 1.0), '1 mm')
    >>> sigma.validate_python("1 mm2")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ...
      Value error, '1 mm2' is an area; give a number of pixels, or a length in nm, ...
    """

    kind: Kind
    gt: float | None = None
    ge: float | None = None
    integer: bool = False
    odd: bool = False
    per_axis: bool = True

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        number: core_schema.CoreSchema = (
            core_schema.int_schema(gt=_whole(self.gt), ge=_whole(self.ge))
            if self.integer or self.odd
            else core_schema.float_schema(gt=self.gt, ge=self.ge, allow_inf_nan=False)
        )
        schema = core_schema.no_info_wrap_validator_function(
            self._validate,
            number,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _as_is, return_schema=core_schema.any_schema()
            ),
        )
        return core_schema.nullable_schema(schema) if type(None) in get_args(source) else schema

    def _validate(self, value: Any, number: Callable[[Any], Any]) -> Any:
        """The field's value: pixels as a number or a tuple, or a quantity as written.
        The messages go after the parameter's name (pydantic's error location)."""
        if isinstance(value, list | tuple):
            if not self.per_axis:
                every = " for every axis" if self.kind == "length" else ""
                raise ValueError(f"give one value{every}; got {list(value)}")
            if len(value) not in (2, 3):
                raise ValueError(
                    "give one value, or one per spatial axis (2 in 2D, 3 in 3D); "
                    f"got {len(value)}: {list(value)}"
                )
            return tuple(number(item) for item in value)
        if not isinstance(value, str):
            return number(value)
        try:
            quantity = parse(value)
        except ValueError as error:
            raise ValueError(f"{error}; {ACCEPTED[self.kind]}") from None
        if quantity is None:
            return number(value)  # a number written as a string: pixels, as always
        if (quantity.kind == "length") != (self.kind == "length"):
            raise ValueError(f"{value!r} is {_a(quantity.kind)}; {ACCEPTED[self.kind]}")
        positive = self.gt is not None or (self.ge is not None and self.ge > 0)
        magnitude = quantity.magnitude
        if not math.isfinite(magnitude) or (magnitude <= 0 if positive else magnitude < 0):
            raise ValueError(f"{value!r} must be {'greater than' if positive else 'at least'} 0")
        return value

    def pixels(self, text: str, grid: Grid, where: str) -> float | tuple[float, ...]:
        """The quantity ``text`` in pixels of ``grid``; ``where`` names the step and
        parameter in messages.

        Raises
        ------
        InputValueError
            When the image has no spacing, its spacing is not a length (a
            geographic CRS), an area / volume does not fit its dimensions, or
            the result is below the least value.
        """
        quantity = parse(text)
        if quantity is None:  # _validate keeps only quantities as strings
            raise InputValueError(f"{where}: {text!r} is not a quantity")
        spacing, unit = _spacing(grid, f"{where} {text!r}")
        ndim = len(spacing)
        given = _registry().Quantity(quantity.magnitude, quantity.unit)
        if self.kind == "length":
            length = given.to(unit).magnitude
            values = tuple(_clean(length / step) for step in spacing)
        else:
            needed = {2: "area", 3: "volume"}.get(ndim)
            if quantity.kind != needed:
                raise InputValueError(
                    f"{where} {text!r} is {_a(quantity.kind)}, but the image is {ndim}D: "
                    f"give {_a(str(needed))} ({_UNITS_OF[str(needed)]}) or pixels"
                )
            values = (_clean(given.to(unit**ndim).magnitude / math.prod(spacing)),)
        rounded = tuple(_rounded(value, self.odd, self.integer) for value in values)
        self._check_least(rounded, values, text, spacing, grid, where)
        if len(set(rounded)) == 1:
            return rounded[0]
        if self.per_axis:
            return rounded
        if not (self.integer or self.odd) and max(rounded) <= min(rounded) * (1 + AGREE):
            return _clean(sum(rounded) / len(rounded))
        raise InputValueError(
            f"{where} {text!r} is {_listed(values)} pixels along {_axes(ndim)} on this image "
            f"(spacing {_listed(spacing, ' x ')} {grid.units}), but the step takes one value "
            "for every axis: give it in pixels, or resample the image to square pixels"
        )

    def _check_least(
        self,
        rounded: tuple[float, ...],
        values: tuple[float, ...],
        text: str,
        spacing: tuple[float, ...],
        grid: Grid,
        where: str,
    ) -> None:
        least = self.gt if self.gt is not None else self.ge
        low = min(rounded)
        if least is None or low > least or (low == least and self.gt is None):
            return
        bound = f"more than {least:g}" if self.gt is not None else f"at least {least:g}"
        how = "rounds to" if self.integer or self.odd else "is"
        along = f" along {_axes(len(spacing))}" if self.kind == "length" else ""
        if self.kind == "length":
            need = f"{least * max(spacing):g} {grid.units}"
        else:
            need = f"{least * math.prod(spacing):g} {grid.units}{len(spacing)}"
        raise InputValueError(
            f"{where} {text!r} is {_listed(values)} pixels{along} on this image (spacing "
            f"{_listed(spacing, ' x ')} {grid.units}), which {how} {_listed(rounded)}; it must "
            f"be {bound} pixel{'' if least == 1 else 's'}: give a larger size (at least about "
            f"{need})"
        )


Length = Annotated[Pixels, Physical("length", gt=0)]
"""A length > 0: pixels (one number, or one per spatial axis) or a quantity such as
``"1.5 mm"``, given to the step in pixels (per axis when the pixel is not square)."""

Size = Annotated[float | str, Physical("size", gt=0, per_axis=False)]
"""An object size > 0: pixels, or an area (``"20 um2"``) in 2D, a volume (``"500 um3"``)
in 3D, given to the step as a pixel count."""


def in_pixels(step: Step, grid: Grid) -> Step:
    """``step`` with every size given as a quantity turned into pixels of ``grid``;
    ``step`` itself when it has none.

    The step is made again from its parameters, so its own checks run on the
    pixel values (a halo wide enough for its sigma, say).

    Raises
    ------
    InputValueError
        From :meth:`Physical.pixels`, or when the step refuses its pixel values;
        the message names the image, the step and the parameter.

    Examples
    --------
    >>> from pipeline.kernels import Gaussian, Grid
    >>> grid = Grid(shape=(40, 50, 50), spacing=(0.5, 1.0, 1.0), units="mm")
    >>> in_pixels(Gaussian(sigma="1 mm"), grid).describe()
    'gaussian(sigma=(2.0, 1.0, 1.0))'
    """
    source = grid.source or "the image"
    update: dict[str, Any] = {}
    for name, marker, key in _fields(type(step)):
        value = getattr(step, name)
        if isinstance(value, str):
            update[key] = marker.pixels(value, grid, f"{source}: {step.name}: {key}")
    if not update:
        return step
    given = step.model_dump(by_alias=True, include=set(step.model_fields_set))
    try:
        return type(step).model_validate({**given, **update})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in problem['loc'])}: "
            + problem["msg"].removeprefix("Value error, ")
            for problem in error.errors()
        )
        sizes = ", ".join(f"{key}={value!r}" for key, value in update.items())
        raise InputValueError(
            f"{source}: {step.name} with its sizes in pixels ({sizes}): {problems}"
        ) from None


def conversions(given: Sequence[Step], resolved: Sequence[Step]) -> dict[str, dict[str, Any]]:
    """Each parameter given as a quantity and what it became, for the run record:
    ``{"steps[0].gaussian.sigma": {"given": "1 mm", "pixels": [2.0, 1.0, 1.0]}}``
    (steps counted from 0, as in the recorded workflow)."""
    found: dict[str, dict[str, Any]] = {}
    for index, (before, after) in enumerate(zip(given, resolved, strict=True)):
        for name, _, key in _fields(type(before)):
            value = getattr(before, name)
            if isinstance(value, str):
                pixels = getattr(after, name)
                found[f"steps[{index}].{before.name}.{key}"] = {
                    "given": value,
                    "pixels": list(pixels) if isinstance(pixels, tuple) else pixels,
                }
    return found


def per_axis(step: Step, name: str, ndim: int) -> tuple[float, ...]:
    """Field ``name`` of ``step`` in pixels along each of ``ndim`` spatial axes.

    Raises
    ------
    InputValueError
        When the field is still a quantity (the step was not put on the image's
        grid), or gives per-axis values for another number of axes.

    Examples
    --------
    >>> from pipeline.kernels import Gaussian
    >>> per_axis(Gaussian(sigma=2), "sigma", 3), per_axis(Gaussian(sigma=[2, 1]), "sigma", 2)
    ((2.0, 2.0, 2.0), (2.0, 1.0))
    """
    value = _in_pixels(step, name)
    if not isinstance(value, tuple):
        return (value,) * ndim
    if len(value) != ndim:
        raise InputValueError(
            f"{step.describe()}: {_written(step, name)} gives {len(value)} values for a "
            f"{ndim}D image; give one value, or one per spatial axis"
        )
    return value


def one(step: Step, name: str) -> float:
    """Field ``name`` of ``step``, a single value in pixels.

    Raises
    ------
    InputValueError
        When the field is still a quantity (the step was not put on the image's grid).
    """
    value = _in_pixels(step, name)
    if isinstance(value, tuple):  # Physical(per_axis=False) refuses lists
        raise InputValueError(
            f"{step.describe()}: {_written(step, name)} takes one value; got {list(value)}"
        )
    return value


def _in_pixels(step: Step, name: str) -> float | tuple[float, ...]:
    value = getattr(step, name)
    if isinstance(value, str):
        raise InputValueError(
            f"{step.name}: {_written(step, name)} {value!r} is a physical size; put the step "
            "on the image's grid first (step.on_grid(grid), as a workflow run does)"
        )
    return value


def _written(step: Step, name: str) -> str:
    """Field ``name`` as a workflow writes it (its alias)."""
    return type(step).model_fields[name].alias or name


def _fields(cls: type[BaseModel]) -> list[tuple[str, Physical, str]]:
    """The size fields of a step class: name, marker, and name as written (alias)."""
    found = []
    for name, field in cls.model_fields.items():
        markers = [m for m in field.metadata if isinstance(m, Physical)]
        if markers:
            found.append((name, markers[-1], field.alias or name))
    return found


def _spacing(grid: Grid, where: str) -> tuple[tuple[float, ...], Any]:
    """The grid's spacing and its pint unit, checked to be a length."""
    if grid.spacing is None or grid.units is None:
        raise InputValueError(
            f"{where} is a physical size, but the image gives no pixel spacing (or no unit "
            "for it); give the size in pixels, or write the spacing into the image's metadata"
        )
    registry = _registry()
    try:
        unit = registry.parse_units(grid.units)
    except Exception:  # see parse
        unit = None
    if unit is not None and unit.dimensionless:
        raise InputValueError(
            f"{where} is a metric size, but the image's pixels are in {grid.units} (a "
            "geographic CRS); reproject the image to a projected CRS in metres (e.g. UTM), "
            "or give the size in pixels"
        )
    if unit is None or unit.dimensionality != registry.Unit("m").dimensionality:
        raise InputValueError(
            f"{where} is a physical size, but the image's spacing is in {grid.units!r}, "
            "which is not a unit of length; give the size in pixels"
        )
    return tuple(abs(float(step)) for step in grid.spacing), unit


def _rounded(value: float, odd: bool, integer: bool) -> float:
    if odd:
        return 2 * math.floor(value / 2) + 1
    if integer:
        return math.floor(value + 0.5)
    return value


def _clean(value: float) -> float:
    """``value`` rounded to 9 decimals: 2.0, not 1.9999999999999998 from unit factors."""
    return round(value, 9)


def _whole(bound: float | None) -> int | None:
    return None if bound is None else math.ceil(bound)


def _as_is(value: Any) -> Any:
    return value


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _axes(ndim: int) -> str:
    return {2: "y, x", 3: "z, y, x"}.get(ndim, f"{ndim} axes")


def _listed(values: Sequence[float], sep: str = ", ") -> str:
    if len(set(values)) == 1:
        return f"{values[0]:g}"
    return sep.join(f"{value:g}" for value in values)
