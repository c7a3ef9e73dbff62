"""Durable file writes: the one temp-write, fsync, rename, fsync-the-folder sequence.

A reader (or a restart after a crash or power loss) sees either the old file or the whole new one,
never a part: the bytes go to a hidden temp file in the target's folder, are fsynced, renamed over
the target (atomic on POSIX within one file system), and the folder is fsynced so the rename
itself is on disk before the caller acknowledges anything. Used for uploads (durable before the
202), FAISS snapshots and prepared-model manifests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Makes a rename or a new name in `path` durable (best effort where a platform refuses)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PendingFile:
    """A temp file being written; `commit(path)` makes it `path`, durably."""

    def __init__(self, tmp: Path, fh: BinaryIO):
        self.tmp = tmp
        self.file = fh
        self.path: Path | None = None

    def commit(self, path: Path) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, path)
        fsync_dir(Path(path).parent)
        self.path = Path(path)


@contextmanager
def atomic_writer(directory: Path, prefix: str = "", *, mode: int = 0o666) -> Iterator[PendingFile]:
    """Yields a temp file in `directory`; the caller writes to `.file` and calls `.commit(final)`
    (the final name may depend on what was written). Without a commit, or on an error, the temp
    file is removed. `mode` (before the umask) is set at creation, so a secret is never readable
    by others, not even for a moment."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{prefix}{uuid.uuid4().hex}.tmp"
    fh = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb")
    pending = PendingFile(tmp, fh)
    try:
        yield pending
    finally:
        if not fh.closed:
            fh.close()
        if pending.path is None:
            tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o666) -> Path:
    """Writes `data` as `path` durably (see the module doc)."""
    path = Path(path)
    with atomic_writer(path.parent, path.name + ".", mode=mode) as pending:
        pending.file.write(data)
        pending.commit(path)
    return path
