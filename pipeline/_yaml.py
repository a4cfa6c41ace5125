"""Reading the YAML files segpipe is configured with (workflows, cluster configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InputValueError, ReadError


def read_yaml(path: Path, what: str, invalid: type[InputValueError]) -> Any:
    """The parsed contents of ``path``, a ``what`` (e.g. "workflow file").

    Raises
    ------
    ReadError
        The file cannot be read.
    invalid
        The file is not valid YAML; the message names the file.
    """
    try:
        text = path.read_text()
    except OSError as error:
        raise ReadError(f"{path}: cannot read the {what} ({error.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise invalid(f"{path}: not valid YAML: {error}") from None
