"""A workflow's source: one file or URL, a list of scenes (a mosaic), and how to read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..io import Image, open_image
from ..io._remote import is_url

Resampling = Literal["nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode"]


class Source(BaseModel):
    """Where the image comes from and how to read it.

    Attributes
    ----------
    path
        A file or URL (``s3://``, ``https://``, any fsspec URL for zarr), a
        STAC Item or ItemCollection (``.json``), a GDAL VRT, or a list of
        georeferenced rasters read as one mosaic (the first valid pixel wins
        where scenes overlap). Relative paths are taken from the workflow
        file's folder.
    level, bands
        The pyramid level, and the band numbers to keep (from 1).
    nodata
        The value that means "no data", overriding the file's tag (or saying
        it where no tag does): never fitted on, never foreground, never labelled.
    crs, resolution, resampling
        Reproject onto this grid (a CRS such as ``EPSG:32633``; the pixel size
        in its units, one value or ``[x, y]``; the resampling, default nearest):
        for mosaics whose scenes differ in CRS or resolution, or one raster.
    assets
        For a STAC source: the asset keys that become the bands, in order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str | list[str]
    level: int | None = Field(default=None, ge=0)
    bands: list[int] | None = Field(default=None, min_length=1)
    nodata: float | None = None
    crs: str | None = Field(default=None, min_length=1)
    resolution: float | list[float] | None = None
    resampling: Resampling = "nearest"
    assets: list[str] | None = Field(default=None, min_length=1)

    @field_validator("path")
    @classmethod
    def _scenes_are_files(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("the list of scenes is empty; name at least one file")
            patterns = [p for p in value if any(c in p for c in "*?[")]
            if patterns:
                raise ValueError(
                    f"{patterns[0]!r}: a mosaic lists its scenes one by one; a pattern is a "
                    "source of its own (one run per file, from a schedule)"
                )
        return value

    @field_validator("resolution")
    @classmethod
    def _positive_resolution(cls, value: Any) -> Any:
        values = [value] if isinstance(value, int | float) else value or []
        if len(values) > 2 or any(not v > 0 for v in values):
            raise ValueError(f"resolution is one positive pixel size or [x, y]; got {value!r}")
        return value

    @model_validator(mode="after")
    def _grid_only_for_rasters(self) -> Source:
        reprojects = self.crs is not None or self.resolution is not None
        if (reprojects or "resampling" in self.model_fields_set) and self.level is not None:
            raise ValueError("level and crs / resolution / resampling do not go together")
        return self

    def resolved(self, base: Path) -> str | list[str]:
        """The path(s), relative ones taken from ``base``; URLs as they are."""
        if isinstance(self.path, list):
            return [resolve_source(base, path) for path in self.path]
        return resolve_source(base, self.path)

    def open(self, base: Path, chunks: int | list[int] | None) -> Image:
        """Open the source lazily, as :func:`pipeline.open_image` does."""
        return open_image(
            self.resolved(base),
            level=self.level,
            bands=self.bands,
            chunks=chunks,
            nodata=self.nodata,
            crs=self.crs,
            resolution=self.resolution,
            resampling=self.resampling,
            assets=self.assets,
        )


def resolve_source(base: Path, path: str) -> str:
    """A source path as written in a workflow, taken from ``base`` when relative; a URL
    as it is.

    Examples
    --------
    >>> resolve_source(Path("/data/flows"), "s3://scenes/l7/b4.zarr")
    's3://scenes/l7/b4.zarr'
    >>> resolve_source(Path("/data/flows"), "scenes/b4.tif")
    '/data/flows/scenes/b4.tif'
    """
    if is_url(path):
        return path
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else (base / candidate).resolve())
