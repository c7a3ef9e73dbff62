"""An upload as a client sent it: a file name (metadata only) and its bytes.

The name never reaches the file system: the service stores the bytes under the job id inside the
data dir (`rag.service.ingesting`), so no name (`../x`, NUL, 10,000 characters) can escape it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()
