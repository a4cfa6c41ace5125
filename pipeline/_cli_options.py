"""Options shared by several ``segpipe`` commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

__all__ = ["where_to_run"]


def where_to_run(scheduler_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The --scheduler ADDRESS and --cluster FILE options (give one at most)."""

    def add(command: Callable[..., None]) -> Callable[..., None]:
        command = click.option(
            "--cluster",
            "cluster_file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="A cluster config, e.g. cluster/slurm.yaml; instead of --scheduler.",
        )(command)
        return click.option("--scheduler", default=None, help=scheduler_help)(command)

    return add
