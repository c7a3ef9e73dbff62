"""Checks on an upload that happen before any job exists, and safe storage of its bytes.

The user's file name is metadata only: bytes are stored under the job id inside the data dir, so
no name (`../x`, NUL, 10,000 characters) can reach the file system.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path



@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def store_upload(uploads_dir: Path, job_id: str, data: bytes) -> Path:
    """Writes the bytes durably under the job id (temp, fsync, rename) so a queued job survives a crash."""
    uploads_dir.mkdir(parents=True, exist_ok=True)
    path = uploads_dir / job_id
    tmp = uploads_dir / f".{job_id}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
