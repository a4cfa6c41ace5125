"""Object tables written as Parquet or CSV, complete or not at all."""

from __future__ import annotations

from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]

from ..errors import InputValueError
from ._staging import staged

FORMATS = (".parquet", ".csv")


def write_table(table: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``table`` to ``path`` as Parquet (``.parquet``) or CSV (``.csv``).

    Parquet keeps the column types and the table's ``attrs`` (units, CRS) in
    its metadata; CSV is plain text for spreadsheets.

    Raises
    ------
    InputValueError
        ``path`` ends in neither ``.parquet`` nor ``.csv``.
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> written = write_table(pd.DataFrame({"label": [1, 2], "area": [5, 9]}), folder / "t.csv")
    >>> written.read_text().splitlines()
    ['label,area', '1,5', '2,9']
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InputValueError(
            f"{path}: an object table is written as {' or '.join(FORMATS)}; "
            "name the file with one of these extensions"
        )
    with staged(path, overwrite=overwrite) as staging:
        if path.suffix.lower() == ".parquet":
            table.to_parquet(staging, index=False)
        else:
            table.to_csv(staging, index=False)
    return path
