"""The exceptions segpipe raises.

Every error derives from :class:`PipelineError`, and each subclass also derives
from the built-in exception a caller would catch for that kind of mistake, so
``except ValueError`` keeps working around segpipe calls.
"""

from __future__ import annotations

__all__ = [
    "ChunkError",
    "InputValueError",
    "NondeterministicInputError",
    "OutputExistsError",
    "PipelineError",
    "ReadError",
    "UnsupportedInputError",
]


class PipelineError(Exception):
    """Root of every error segpipe raises on purpose."""


class InputValueError(PipelineError, ValueError):
    """An argument has the right type but a value segpipe cannot use."""


class UnsupportedInputError(PipelineError, TypeError):
    """An argument has a type or dtype segpipe does not support."""


class NondeterministicInputError(PipelineError, RuntimeError):
    """A chunk gave a different result when it was computed a second time."""


class ReadError(PipelineError, OSError):
    """A source does not exist, or cannot be read as the image it claims to be."""


class OutputExistsError(PipelineError, FileExistsError):
    """An output already exists and replacing it was not asked for."""


class ChunkError(PipelineError, RuntimeError):
    """The work on a chunk failed; the message names the chunk and its pixels."""
