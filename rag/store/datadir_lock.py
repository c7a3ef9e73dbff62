"""Who uses a data dir: an advisory `flock` on `<data_dir>/.in-use`.

Every process that opens the embedded store (`rag serve`, `rag ingest`, `rag mcp`, `rag backup`)
holds a shared lock for as long as it runs; several may share a folder, as they always could.
`rag restore` needs the folder to itself and takes the lock exclusively, without waiting: a
restore over a folder a server is using is refused (`data_dir_in_use`) instead of swapping the
database under it. The kernel drops a lock with its process, so a killed server never leaves a
stale one behind (a pid file would).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from rag.errors import Conflict

LOCK_NAME = ".in-use"


class DataDirInUse(Conflict):
    code = "data_dir_in_use"


class DataDirLock:
    """A held lock on a data dir; `release()` (or the process ending) lets it go."""

    def __init__(self, data_dir: Path, *, exclusive: bool):
        self.path = Path(data_dir) / LOCK_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise DataDirInUse(
                f"{data_dir} is in use by another process (a running server, `rag ingest` or `rag mcp`)"
                if exclusive else f"{data_dir} is being restored by `rag restore`; start again once it is done"
            ) from None

    def release(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __del__(self) -> None:  # a runtime dropped without close() must not hold the folder
        self.release()

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
