"""Sources on object storage and web servers: URLs, GDAL's virtual file systems, checks.

A source is a URL when it names a scheme (``s3://bucket/key.tif``,
``https://host/scene.tif``, ``gs://``, ``az://``, ``file://``, ``memory://``,
any fsspec protocol). GeoTIFFs are read by GDAL (under rasterio) through its
virtual file systems; zarr through fsspec. Endpoints and credentials come from
the standard environment variables of each store, read where the pixels are
read (on every worker, so that no secret travels in a task graph):

=====================================  ==================================================
variable                               meaning
=====================================  ==================================================
``AWS_ACCESS_KEY_ID``,                 credentials (GDAL, botocore and s3fs read them
``AWS_SECRET_ACCESS_KEY``,             themselves)
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``
``AWS_REGION``
``AWS_ENDPOINT_URL``,                  an S3-compatible server (MinIO, Ceph, ...): mapped
``AWS_ENDPOINT_URL_S3``                for GDAL to ``AWS_S3_ENDPOINT``, ``AWS_HTTPS`` and
                                       path-style requests (``AWS_VIRTUAL_HOSTING=FALSE``)
``AWS_NO_SIGN_REQUEST``                public buckets, no credentials
=====================================  ==================================================

GDAL options already set in the environment are left as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ReadError

# fsspec protocol -> GDAL virtual file system
_GDAL_PREFIX = {
    "s3": "/vsis3/",
    "gs": "/vsigs/",
    "gcs": "/vsigs/",
    "az": "/vsiaz/",
    "abfs": "/vsiaz/",
}
_HTTP = ("http", "https")
# Opening a file must not list its folder: on object storage that is one more
# request per open, and a bucket may forbid listing.
_GDAL_DEFAULTS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "3"}


def is_url(path: str) -> bool:
    """Whether ``path`` names a scheme (``s3://``, ``https://``, ``file://``, ...).

    Examples
    --------
    >>> is_url("s3://scenes/b4.tif"), is_url("scenes/b4.tif"), is_url("C:/data/b4.tif")
    (True, False, False)
    """
    scheme = urlsplit(path).scheme
    return "://" in path and len(scheme) > 1


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL of another machine's or store's (not ``file://``)."""
    return is_url(path) and urlsplit(path).scheme.lower() != "file"


def local_path(path: str) -> str:
    """A ``file://`` URL as the local path it names; anything else unchanged.

    Examples
    --------
    >>> local_path("file:///data/a%20scene.tif"), local_path("s3://b/k.tif")
    ('/data/a scene.tif', 's3://b/k.tif')
    """
    return unquote(urlsplit(path).path) if path.lower().startswith("file://") else path


def gdal_path(path: str) -> str:
    """The name GDAL opens ``path`` by: ``/vsis3/bucket/key`` for ``s3://bucket/key``,
    ``/vsicurl/https://...`` for web URLs, the path itself for local files.

    Examples
    --------
    >>> gdal_path("s3://scenes/l7/b4.tif"), gdal_path("https://host/a.tif")
    ('/vsis3/scenes/l7/b4.tif', '/vsicurl/https://host/a.tif')
    """
    if not is_url(path):
        return path
    scheme, rest = path.split("://", 1)
    scheme = scheme.lower()
    if scheme == "file":
        return local_path(path)
    if scheme in _HTTP:
        return f"/vsicurl/{path}"
    if scheme in _GDAL_PREFIX:
        return _GDAL_PREFIX[scheme] + rest
    raise ReadError(
        f"{path}: GDAL cannot read {scheme}:// URLs; GeoTIFFs are read from local paths, "
        "s3://, gs://, az:// and http(s):// (zarr stores from any fsspec URL)"
    )


def gdal_options(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """GDAL configuration for remote reads, from the standard AWS variables in ``environ``
    (default: this process's environment); options set there already win.

    Examples
    --------
    >>> gdal_options({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})["AWS_S3_ENDPOINT"]
    '127.0.0.1:9000'
    """
    env = os.environ if environ is None else environ
    options = dict(_GDAL_DEFAULTS)
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
        options["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
        options["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return {key: value for key, value in options.items() if key not in env}


@contextmanager
def gdal_env(path: str) -> Iterator[None]:
    """GDAL configured for reading ``path`` (a no-op for local files)."""
    if not is_url(path):
        yield
        return
    import rasterio

    with rasterio.Env(**gdal_options()):
        yield


def check_readable(url: str) -> None:
    """Refuse a URL that names nothing or that the credentials may not read, with a
    message naming the URL and the fix (one metadata request; nothing is read).

    Raises
    ------
    ReadError
        Not found, access denied, or the server cannot be reached.
    """
    import fsspec

    try:
        fs, where = fsspec.core.url_to_fs(url)
        found = fs.exists(where) or fs.isdir(where)
    except ImportError as err:
        raise ReadError(
            f"{url}: reading {url.split('://')[0]}:// URLs needs the package {err.name}; "
            f"install it with pip install {err.name}"
        ) from None
    except PermissionError as err:
        raise ReadError(f"{url}: access denied ({err}); {_credentials_hint(url)}") from None
    except FileNotFoundError:
        found = False
    except Exception as err:
        status = getattr(err, "status", None)  # an HTTP answer (aiohttp's errors say it)
        if status in (401, 403):
            raise ReadError(f"{url}: access denied ({err}); {_credentials_hint(url)}") from None
        if status == 404:
            found = False
        else:
            raise ReadError(
                f"{url}: cannot be reached ({type(err).__name__}: {err}); check the address"
                + (f" and the endpoint ({_endpoint()})" if url.startswith("s3://") else "")
            ) from None
    if not found:
        raise ReadError(f"{url}: not found on the server; check the URL{_where(url)}")


def describe_failure(url: str, error: Exception) -> str:
    """What a failed remote open most likely means, from GDAL's message."""
    text = str(error)
    lowered = text.lower()
    if "403" in text or "access denied" in lowered or "forbidden" in lowered:
        return f"{url}: access denied ({text}); {_credentials_hint(url)}"
    if "404" in text or "does not exist" in lowered or "not found" in lowered:
        return f"{url}: not found on the server; check the URL{_where(url)}"
    return f"{url}: cannot be read ({text}); check the URL{_where(url)}"


def _where(url: str) -> str:
    if url.startswith("s3://"):
        bucket, _, key = url[5:].partition("/")
        return f" (bucket {bucket!r}, key {key!r}; endpoint {_endpoint()})"
    return ""


def _endpoint() -> str:
    found = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return found or "AWS, as no AWS_ENDPOINT_URL is set"


def _credentials_hint(url: str) -> str:
    if url.startswith("s3://"):
        return (
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the "
            "bucket's policy, or set AWS_NO_SIGN_REQUEST=YES for a public bucket"
        )
    return "check that the URL is public or signed (a presigned URL may have expired)"


def fsspec_token(url: str) -> Any:
    """What identifies the current content of a remote object (its size and ETag or
    modification time), for task names; ``None`` when the server does not say."""
    import fsspec

    try:
        fs, where = fsspec.core.url_to_fs(url)
        info = fs.info(where)
    except Exception:
        return None
    return tuple(str(info.get(key)) for key in ("size", "ETag", "LastModified", "mtime"))
