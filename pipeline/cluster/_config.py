"""Reading a cluster config file: YAML, one ``kind`` per file, checked before anything starts.

The kinds and their fields are the models in ``_kinds.py``.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Union, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .._yaml import read_yaml
from ..errors import InputValueError
from ._kinds import KINDS, MODELS, ClusterConfig

__all__ = ["ClusterConfigError", "read_cluster_config", "validate_cluster_config"]


class ClusterConfigError(InputValueError):
    """A cluster config is not valid; the message names the file and the field."""


def validate_cluster_config(
    data: Any, origin: str = "cluster config", base: str | Path | None = None
) -> ClusterConfig:
    """``data`` (as read from YAML) as a checked cluster config.

    Parameters
    ----------
    data
        A mapping with ``kind`` (one of ``local``, ``remote``, ``slurm``, ``pbs``,
        ``kubernetes``) and that kind's fields.
    origin
        What to call the config in error messages, e.g. its file name.
    base
        Folder that relative file paths are taken from; default the current one.

    Returns
    -------
    ClusterConfig
        A frozen ``LocalConfig``, ``RemoteConfig``, ``SlurmConfig``, ``PBSConfig``
        or ``KubernetesConfig``.

    Raises
    ------
    ClusterConfigError
        Naming ``origin``, the field, the value and what is allowed.

    Examples
    --------
    >>> validate_cluster_config({"kind": "remote", "address": "10.0.0.5:8786"}).url
    'tcp://10.0.0.5:8786'
    >>> try:
    ...     validate_cluster_config({"kind": "local", "n_workers": 0}, "mine.yaml")
    ... except ClusterConfigError as error:
    ...     print(error)
    mine.yaml: n_workers: Input should be greater than or equal to 1 (got 0)
    """
    if not isinstance(data, dict):
        raise ClusterConfigError(
            f"{origin}: a cluster config is a mapping with a kind ({', '.join(KINDS)}) "
            f"and its fields; got {type(data).__name__}"
        )
    kind = data.get("kind")
    if kind not in MODELS:
        got = "no kind" if kind is None else f"kind {kind!r}"
        raise ClusterConfigError(f"{origin}: kind: expected one of {', '.join(KINDS)}; got {got}")
    model = MODELS[kind]
    try:
        config = model.model_validate(data, context={"base": Path(base or Path.cwd())})
    except ValidationError as error:
        raise ClusterConfigError(f"{origin}: {_describe(error, model)}") from None
    return cast(ClusterConfig, config)


def read_cluster_config(path: str | Path) -> ClusterConfig:
    """Read and validate a cluster config YAML file.

    Relative file paths in it (TLS certificates, ``local_directory``) are taken
    from the file's folder.

    Parameters
    ----------
    path
        The YAML file, e.g. ``cluster/slurm.yaml``.

    Returns
    -------
    ClusterConfig
        The checked config of the file's ``kind``.

    Raises
    ------
    ReadError
        The file cannot be read.
    ClusterConfigError
        It is not valid YAML, or not a valid config; the message names the file
        and the field.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "local.yaml"
    ...     _ = path.write_text("kind: local\\nn_workers: 2\\n")
    ...     read_cluster_config(path).n_workers
    2
    """
    path = Path(path)
    data = read_yaml(path, "cluster config", ClusterConfigError)
    return validate_cluster_config(data, str(path), path.resolve().parent)


def _describe(error: ValidationError, model: type[BaseModel]) -> str:
    parts = []
    for problem in error.errors():
        loc = problem["loc"]
        field = ".".join(str(part) for part in loc)
        where = f"{field}: " if field else ""  # a check of several fields names them itself
        if problem["type"] == "extra_forbidden":
            fields = ", ".join(_fields_at(model, loc[:-1]))
            parts.append(f"{where}unknown field; expected one of {fields}")
        elif problem["type"] == "missing":
            parts.append(f"{where}required field is missing")
        elif problem["type"] == "value_error":  # ours: the message quotes the value
            parts.append(f"{where}{problem['msg'].removeprefix('Value error, ')}")
        else:
            parts.append(f"{where}{problem['msg']} (got {problem.get('input')!r})")
    return "; ".join(parts)


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the (nested) model at ``loc``."""
    for part in loc:
        field = model.model_fields.get(str(part))
        nested = _model_in(field.annotation) if field is not None else None
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
