"""Where schedules and the run ledger live (``$SEGPIPE_HOME``), and the serve lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from ..errors import PipelineError

__all__ = ["ServeLock", "ServerRunningError", "segpipe_home"]


class ServerRunningError(PipelineError, RuntimeError):
    """Another ``segpipe serve`` already works from the same ``$SEGPIPE_HOME``."""


def segpipe_home() -> Path:
    """``$SEGPIPE_HOME``, or ``~/.segpipe``; made if missing.

    Examples
    --------
    >>> import os, tempfile
    >>> os.environ["SEGPIPE_HOME"] = tempfile.mkdtemp()
    >>> segpipe_home() == Path(os.environ.pop("SEGPIPE_HOME"))
    True
    """
    home = Path(os.environ.get("SEGPIPE_HOME") or Path.home() / ".segpipe").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


class ServeLock:
    """The one ``segpipe serve`` of a home: an exclusive lock on ``serve.lock``.

    The operating system drops the lock when its process dies, however it dies,
    so a server that was killed never blocks the next one, and a server that
    holds the lock knows that every run the ledger says is running was
    interrupted.
    """

    def __init__(self, home: Path) -> None:
        self.path = home / "serve.lock"
        self._file: IO[str] | None = None

    def __enter__(self) -> ServeLock:
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ServerRunningError(
                f"{self.path}: segpipe serve is already running here (pid {holder}); "
                "stop it first, or give this one another SEGPIPE_HOME"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    @staticmethod
    def held(home: Path) -> bool:
        """Whether a ``segpipe serve`` holds the lock of ``home`` now."""
        path = home / "serve.lock"
        if not path.exists():
            return False
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False
