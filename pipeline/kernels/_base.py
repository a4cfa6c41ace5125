"""The Step protocol and the registry of named steps.

A step is a small frozen pydantic model: its fields are its parameters
(validated when a workflow is read, before any graph is built), and it says:

- ``halo(ndim)``: pixels of context it needs on each side of a chunk, per
  spatial axis, computed from its parameters;
- ``fit(data, valid)``: global statistics computed once over the whole image
  (a distributed pass), before the per-chunk map; most steps need none;
- ``apply(block, state)``: the per-chunk work on a chunk plus its halo; the
  block always has a leading band axis (length 1 for single-band images);
  an ``"image"`` step returns the same layout, a ``"mask"`` step returns a
  boolean array over the spatial axes only, a ``"classes"`` step a uint8
  class map over the spatial axes (0 for no class), an ``"instances"`` step
  integer object ids over the spatial axes (0 for background, any ids), halo
  included: instance ids are stitched by matching them in the halos;
- ``accepts``: what the step takes: ``("image",)`` for most steps; a step that
  refines or splits a mask (opening, watershed) takes ``("mask",)`` and its
  block is the mask, spatial axes only (a ``uses_image`` step also gets the
  last image block, band axis first, as ``apply(block, state, image=...)``;
  a ``uses_origin`` step gets where the block's first pixel lies in the image,
  halo included, as ``origin=(row, col)``; a ``uses_valid`` step gets which
  pixels of the block hold data, spatial axes only, halo included, as
  ``valid=`` (``None`` when the image has no nodata value and is not float));
  post-processing steps take ``("labels",)``;
- ``output``: what it makes, ``"image"``, ``"mask"``, ``"classes"``,
  ``"instances"`` or ``"labels"``;
- ``finish(labels, num)``: for ``"labels"`` steps after ``label``, the work on
  the whole stitched label map (lazy), so that an object cut by seams is
  treated as the one object it is;
- ``on_grid(grid)``: the step with every parameter given in world terms
  (a size in millimetres, annotations in a map projection) turned into
  pixels of the image's :class:`Grid`; called once the image is opened,
  before halos are summed and anything is fitted. Most steps are already
  in pixels and return themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import dask.array as da
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo

from ..errors import InputValueError
from ._units import in_pixels

Output = Literal["image", "mask", "classes", "instances", "labels"]

SEGMENTS = ("mask", "classes")  # what the label step can label

STEPS: dict[str, type[Step]] = {}


@dataclass(frozen=True)
class Grid:
    """Where an image's pixels lie: what a step needs to turn parameters given in
    world terms into pixels.

    Attributes
    ----------
    shape
        Pixels per spatial axis (``(rows, cols)`` or ``(planes, rows, cols)``).
    spacing
        Physical size of a pixel per spatial axis, in ``units``; ``None`` when
        the image does not say.
    units
        Unit of ``spacing`` (``"m"``, ``"mm"``, ``"um"``, ``"degree"``, ...).
    crs
        Coordinate reference system of a raster, as WKT, or ``None``.
    transform
        Pixel to map coordinates of a raster (an ``affine.Affine``), or ``None``.
    source
        Where the image was read from, for messages.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None = None
    units: str | None = None
    crs: str | None = None
    transform: Any = None
    source: str | None = None


class Step(BaseModel):
    """Base of every step. Subclasses set ``name`` and ``output`` and override
    ``apply`` (and ``halo`` / ``fit`` when they need context or statistics)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str]
    output: ClassVar[Output] = "image"
    accepts: ClassVar[tuple[Output, ...]] = ("image",)
    uses_image: ClassVar[bool] = False
    uses_origin: ClassVar[bool] = False
    uses_valid: ClassVar[bool] = False
    # The fit depends on the pixels' values only, not on their type (a histogram):
    # after steps that only mark nodata (see keeps) it fits the image in its own
    # type with the marked pixels left out, so an integer histogram stays exact.
    fits_values: ClassVar[bool] = False
    # Each output pixel is a few operations on the same pixel's values (with no
    # halo): a chunk is cheaper to compute again than to write and read back.
    pointwise: ClassVar[bool] = False

    def halo(self, ndim: int) -> tuple[int, ...]:
        """Context needed on each side of a chunk, per spatial axis."""
        return (0,) * ndim

    def bands(self, count: int) -> int:
        """Bands an ``"image"`` step makes from ``count`` bands (the same, unless it
        combines them)."""
        return count

    def fit(self, data: da.Array, valid: da.Array | None) -> Any:
        """Global statistics over the whole image; ``valid`` marks pixels with data."""
        return None

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        """The per-chunk work."""
        raise NotImplementedError

    def keeps(self, data: da.Array) -> da.Array | None:
        """For a step that only marks pixels as holding no data: where it leaves data,
        over the spatial axes (lazy). Global fits after such steps then run on the
        image itself, in its own type, with these pixels left out. ``None`` (the
        default) for every step that computes new values."""
        return None

    def select(self, labels: da.Array, num: int, state: Any) -> tuple[da.Array, int]:
        """For a per-chunk step, work on the stitched labels it led to (keeping the
        objects that hold a seed, say): new labels and object count. Most keep all."""
        return labels, num

    def finish(self, labels: da.Array, num: int) -> tuple[da.Array, int]:
        """Post-processing of the stitched labels: new labels and object count."""
        raise NotImplementedError(f"{self.name} is not a label post-processing step")

    def on_grid(self, grid: Grid) -> Step:
        """This step with its parameters in pixels of ``grid``: every size given as a
        quantity (``"1 mm"``, ``"20 um2"``) converted with the grid's spacing (see
        :mod:`pipeline.kernels._units`); the step itself when it has none. A step
        with other parameters in world terms overrides this and calls
        ``super().on_grid(grid)`` first."""
        return in_pixels(self, grid)

    def describe(self) -> str:
        """``name(param=value, ...)``, as messages and run records show the step."""
        params = ", ".join(f"{k}={v!r}" for k, v in self.model_dump(by_alias=True).items())
        return f"{self.name}({params})"


def resolve_path(value: str | Path, info: ValidationInfo) -> Path:
    """A file named in a step's parameters: a relative path is taken from the
    workflow file's folder (the validation context's ``base``), else from the
    current directory."""
    path = Path(value).expanduser()
    base = (info.context or {}).get("base") if info is not None else None
    return path if path.is_absolute() else (Path(base or Path.cwd()) / path).absolute()


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step available under its ``name`` in workflows."""
    if cls.name in STEPS:
        raise InputValueError(f"a step named {cls.name!r} is registered already")
    STEPS[cls.name] = cls
    return cls


def step_class(name: str) -> type[Step]:
    """The step registered as ``name``, or a custom step's ``module:function``."""
    if name not in STEPS and ":" in name:
        from ._custom import import_step

        return import_step(name)
    try:
        return STEPS[name]
    except KeyError:
        raise InputValueError(
            f"unknown step {name!r}; the steps are: {', '.join(sorted(STEPS))}"
        ) from None
