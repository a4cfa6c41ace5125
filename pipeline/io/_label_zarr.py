"""The layout of a label output: a zarr v3 group that xarray opens as a Dataset.

::

    labels.zarr/
      zarr.json          the group, with every member's metadata consolidated
      labels/            the data variable: dimension_names (y, x) or (z, y, x), one
        zarr.json        zarr chunk per dask chunk; attributes: segpipe's georeference
        c/0/0 ...        (axes, crs, transform, spacing, units, affine), the run record
                         (segpipe), object_classes, and CF's grid_mapping
      y/, x/             coordinates: pixel centres in the CRS (see pipeline.io._cf),
                         or index x voxel spacing (with z) for volumes
      spatial_ref/       0-d CF grid mapping: crs_wkt, spatial_ref, GeoTransform

The class map of a workflow is the same with ``classes`` for ``labels``.
Readers find the data variable as the group's one array of 2 or more
dimensions (:func:`data_variable`), so any xarray-style group reads too.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from ..errors import InputValueError, UnsupportedInputError
from ._cf import GRID_MAPPING, coordinates
from ._common import DEFAULT_AXES


def create_output(
    labels: da.Array,
    path: Path,
    attributes: Mapping[str, Any] | None,
    name: str,
) -> None:
    """Create the group at ``path``: the empty data variable ``name`` chunked like
    ``labels`` (regular chunks), and its coordinates and grid mapping, written
    from the georeference in ``attributes`` (``axes``, ``crs``, ``transform``, ``spacing``,
    ``units``, as a run writes them)."""
    attributes = dict(attributes or {})
    axes = _axes(labels, attributes, name)
    if name in (*axes, GRID_MAPPING) or not name.isidentifier():
        raise InputValueError(
            f"name {name!r} cannot name the labels: it must be a Python identifier other "
            f"than {', '.join((*axes, GRID_MAPPING))}; e.g. 'labels'"
        )
    variables = coordinates(
        axes,
        labels.shape,
        crs=attributes.get("crs"),
        transform=_transform(attributes.get("transform")),
        spacing=attributes.get("spacing"),
        units=attributes.get("units"),
    )
    group = zarr.create_group(path)
    for key, variable in variables.items():
        array = group.create_array(
            key,
            shape=variable.values.shape,
            dtype=variable.values.dtype,
            fill_value=np.zeros((), variable.values.dtype),
            attributes=variable.attrs,
            dimension_names=variable.dims,
        )
        array[...] = variable.values
    # The data variable last: a run resumed finds it only once the rest is there.
    group.create_array(
        name,
        shape=labels.shape,
        chunks=tuple(sizes[0] for sizes in labels.chunks),
        dtype=labels.dtype,
        fill_value=np.zeros((), labels.dtype),
        attributes=_data_attributes(attributes, GRID_MAPPING in variables),
        dimension_names=tuple(axes),
        # zarr's own all-fill-value check costs about 3x the write of a label chunk.
        config={"write_empty_chunks": True},
    )


def finish_output(path: Path, name: str, attributes: Mapping[str, Any] | None) -> None:
    """Give the data variable its final ``attributes``, then consolidate the group's
    metadata (which must come last: later changes would not be seen by readers of it)."""
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    group[name].attrs.put(_data_attributes(dict(attributes or {}), GRID_MAPPING in group))
    with warnings.catch_warnings():
        # zarr-python warns that consolidated metadata is not in the zarr v3 spec; the v3
        # core spec names the member as one a reader may ignore (must_understand: false),
        # and xarray reads it (without it, xarray warns on every open).
        warnings.filterwarnings(
            "ignore", message="Consolidated metadata is currently not part", category=UserWarning
        )
        zarr.consolidate_metadata(path)


def data_variable(group: zarr.Group, where: str) -> zarr.Array:
    """The group's data variable: its one array of 2 or more dimensions.

    Raises
    ------
    UnsupportedInputError
        The group holds no such array, or several.
    """
    arrays = dict(group.arrays())
    candidates = sorted(key for key, array in arrays.items() if array.ndim >= 2)
    if len(candidates) == 1:
        return arrays[candidates[0]]
    if candidates:
        raise UnsupportedInputError(
            f"{where}: a zarr group without OME-Zarr 'multiscales' metadata holds several "
            f"data variables ({', '.join(candidates)}); give the path of the one to read, "
            f"e.g. {where.rstrip('/')}/{candidates[0]}"
        )
    members = sorted(group.keys())
    raise UnsupportedInputError(
        f"{where}: a zarr group without OME-Zarr 'multiscales' metadata and without an "
        f"array of 2 or more dimensions is not an image (members: "
        f"{', '.join(members[:10]) or 'none'}); give the path of an array, or of an "
        "OME-Zarr image"
    )


def _axes(labels: da.Array, attributes: dict[str, Any], name: str) -> str:
    """The labels' dimension names: their ``axes`` attribute, else y, x or z, y, x."""
    axes = attributes.get("axes")
    if not isinstance(axes, str) or len(axes) != labels.ndim:
        axes = DEFAULT_AXES.get(labels.ndim)
    if axes not in ("yx", "zyx"):
        raise InputValueError(
            f"{name}: labels of shape {labels.shape} cannot be written; a label map is 2D "
            "(y, x) or 3D (z, y, x)"
        )
    return axes


def _transform(six: Any) -> Any:
    if six is None:
        return None
    from affine import Affine

    return Affine(*six[:6])


def _data_attributes(attributes: dict[str, Any], grid_mapped: bool) -> dict[str, Any]:
    """segpipe's attributes, and CF's link to the grid mapping when there is one
    (``coordinates`` makes xarray keep it with the data variable)."""
    if not grid_mapped:
        return attributes
    return {**attributes, "grid_mapping": GRID_MAPPING, "coordinates": GRID_MAPPING}
