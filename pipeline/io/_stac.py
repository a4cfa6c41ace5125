"""STAC Items and ItemCollections as mosaics: each item a scene, chosen assets its bands."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import InputValueError, ReadError, UnsupportedInputError
from ._mosaic import Scene, describe_parts
from ._remote import is_url

_RASTER_TYPES = ("image/tiff", "image/vnd.stac.geotiff", "application/x-geotiff")


def is_stac(path: str) -> bool:
    """Whether ``path`` names a JSON file (a STAC Item or ItemCollection)."""
    return path.lower().rstrip("/").endswith((".json", ".geojson"))


def stac_scenes(path: str, assets: Sequence[str] | None) -> list[Scene]:
    """The scenes of a STAC Item or ItemCollection (a local path or a URL), in its order.

    Parameters
    ----------
    path
        The JSON document.
    assets
        Asset keys that become the mosaic's bands, in this order (each asset
        gives all of its file's bands). Without them, an item's one raster
        asset (GeoTIFF media type); an item with several must name them.

    Raises
    ------
    ReadError
        The document cannot be read or parsed.
    UnsupportedInputError
        It is not a STAC Item or ItemCollection.
    InputValueError
        An item lacks a named asset, or has several rasters and ``assets`` is not given.
    """
    import pystac

    document = _load(path)
    kind = document.get("type") if isinstance(document, dict) else None
    if kind not in ("Feature", "FeatureCollection"):
        raise UnsupportedInputError(
            f"{path}: a JSON source must be a STAC Item (type Feature) or ItemCollection "
            f"(type FeatureCollection); got type {kind!r}"
        )
    try:
        if kind == "Feature":
            items = [pystac.Item.from_dict(document)]
        else:
            items = list(pystac.ItemCollection.from_dict(document))
    except (KeyError, TypeError, ValueError, pystac.STACError) as err:
        raise ReadError(
            f"{path}: not a valid STAC document ({type(err).__name__}: {err})"
        ) from None
    if not items:
        raise InputValueError(f"{path}: the ItemCollection holds no items")
    requests: list[tuple[str, None]] = []
    counts = []
    for item in items:
        keys = _asset_keys(item, assets, path)
        requests += [(_absolute(item.assets[key].href, path), None) for key in keys]
        counts.append(len(keys))
    parts = iter(describe_parts(requests))
    return [
        Scene(name=item.id, parts=tuple(next(parts) for _ in range(count)))
        for item, count in zip(items, counts, strict=True)
    ]


def _load(path: str) -> Any:
    try:
        if is_url(path):
            import fsspec

            with fsspec.open(path, "rt") as handle:
                text = handle.read()
        else:
            text = Path(path).read_text()
    except FileNotFoundError:
        raise ReadError(f"{path}: no such file or object; check the path or URL") from None
    except PermissionError as err:
        raise ReadError(f"{path}: access denied ({err})") from None
    except OSError as err:
        raise ReadError(f"{path}: cannot be read ({err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ReadError(f"{path}: not valid JSON ({err})") from None


def _asset_keys(item: Any, assets: Sequence[str] | None, path: str) -> list[str]:
    available = list(item.assets)
    if assets is not None:
        missing = [key for key in assets if key not in item.assets]
        if missing:
            raise InputValueError(
                f"{path}: item {item.id!r} has no asset {', '.join(map(repr, missing))}; "
                f"its assets are {', '.join(available) or 'none'}"
            )
        return list(assets)
    rasters = [
        key
        for key, asset in item.assets.items()
        if any(kind in (asset.media_type or "") for kind in _RASTER_TYPES)
    ]
    if len(rasters) != 1:
        raise InputValueError(
            f"{path}: item {item.id!r} has {len(rasters)} GeoTIFF assets "
            f"({', '.join(rasters) or 'none'} of {', '.join(available) or 'none'}); name the "
            "bands with source: {path: ..., assets: [B04, B08]}"
        )
    return rasters


def _absolute(href: str, document: str) -> str:
    """An asset's href, taken from the document's folder when relative.

    Examples
    --------
    >>> _absolute("../b/B5.tif", "s3://scenes/stac/a/items.json")
    's3://scenes/stac/b/B5.tif'
    """
    if is_url(href) or posixpath.isabs(href):
        return href
    if is_url(document):  # urljoin knows http's hierarchy, not s3's or gs's
        parts = urlsplit(document)
        folder = posixpath.dirname(parts.path)
        return urlunsplit(
            (parts.scheme, parts.netloc, posixpath.normpath(posixpath.join(folder, href)), "", "")
        )
    return str((Path(document).resolve().parent / href).resolve())
