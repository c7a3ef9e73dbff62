"""Ingestion error codes. Every factory returns a `rag.errors.IngestError` with a stable `code`.

| code                 | status | when                                                                  |
|----------------------|--------|-----------------------------------------------------------------------|
| `empty_file`         | 422    | 0 bytes, or no text at all after parsing (text/Markdown/HTML)         |
| `unsupported_type`   | 415    | extension/content not one of .pdf .txt .md .markdown .html .htm       |
| `undecodable_text`   | 422    | text whose encoding cannot be determined, or binary content           |
| `pdf_encrypted`      | 422    | PDF needs a password (the empty user password was tried)              |
| `pdf_malformed`      | 422    | PDF that pypdf cannot read, or a .pdf without a PDF header            |
| `pdf_no_text`        | 422    | PDF without any extractable text (scanned images; OCR not supported)  |
| `pdf_too_many_pages` | 422    | more pages than `max_pdf_pages`                                       |
| `pdf_resource_limit` | 422    | PDF parsing hit its CPU, memory, wall-clock or output limit           |
| `file_too_large`     | 413    | more bytes than `max_upload_bytes`                                    |
| `bad_filename`       | 400    | missing, over-long, or control characters in the file name           |
| `document_too_long`  | 422    | more characters of text than `max_document_chars`                     |
| `too_many_chunks`    | 422    | more chunks than `max_document_chunks`                                |
| `embed_time_limit`   | 422    | embedding one document took longer than `max_embed_seconds`           |
| `job_cancelled`      | 409    | a client cancelled the job (`DELETE /v1/jobs/{id}`)                   |
"""

from __future__ import annotations

from rag.errors import IngestError

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".pdf", ".txt", ".md", ".markdown", ".html", ".htm")
_SUPPORTED_TEXT = " ".join(SUPPORTED_EXTENSIONS)

EMPTY_FILE = "empty_file"
UNSUPPORTED_TYPE = "unsupported_type"
UNDECODABLE_TEXT = "undecodable_text"
PDF_ENCRYPTED = "pdf_encrypted"
PDF_MALFORMED = "pdf_malformed"
PDF_NO_TEXT = "pdf_no_text"
PDF_TOO_MANY_PAGES = "pdf_too_many_pages"
PDF_RESOURCE_LIMIT = "pdf_resource_limit"
FILE_TOO_LARGE = "file_too_large"
BAD_FILENAME = "bad_filename"
NO_TEXT = "no_text"
INTERRUPTED = "interrupted"
DOCUMENT_TOO_LONG = "document_too_long"
TOO_MANY_CHUNKS = "too_many_chunks"
REPETITIVE_TEXT = "repetitive_text"
EMBED_TIME_LIMIT = "embed_time_limit"
JOB_CANCELLED = "job_cancelled"
INTERNAL = "internal_error"

#: code -> HTTP status
ERROR_STATUS: dict[str, int] = {
    EMPTY_FILE: 422,
    UNSUPPORTED_TYPE: 415,
    UNDECODABLE_TEXT: 422,
    PDF_ENCRYPTED: 422,
    PDF_MALFORMED: 422,
    PDF_NO_TEXT: 422,
    PDF_TOO_MANY_PAGES: 422,
    PDF_RESOURCE_LIMIT: 422,
    FILE_TOO_LARGE: 413,
    BAD_FILENAME: 400,
    NO_TEXT: 422,
    INTERRUPTED: 500,
    DOCUMENT_TOO_LONG: 422,
    TOO_MANY_CHUNKS: 422,
    REPETITIVE_TEXT: 422,
    EMBED_TIME_LIMIT: 422,
    JOB_CANCELLED: 409,
    INTERNAL: 500,
}


def _err(code: str, message: str) -> IngestError:
    return IngestError(message, code=code, status=ERROR_STATUS[code])


def empty_file(detail: str = "the file is empty") -> IngestError:
    return _err(EMPTY_FILE, f"Nothing to ingest: {detail}.")


def unsupported_type(filename: str = "", detail: str | None = None) -> IngestError:
    what = f"{filename!r}" if filename else "this file"
    extra = f" ({detail})" if detail else ""
    return _err(UNSUPPORTED_TYPE, f"Unsupported file type for {what}{extra}. Supported: {_SUPPORTED_TEXT}.")


def undecodable_text(detail: str = "") -> IngestError:
    extra = f" ({detail})" if detail else ""
    return _err(
        UNDECODABLE_TEXT,
        f"Cannot decode the text{extra}. Save it as UTF-8 (GB18030, Big5 and UTF-16 with a BOM are also accepted).",
    )


def pdf_encrypted(detail: str = "") -> IngestError:
    extra = f" ({detail})" if detail else ""
    return _err(PDF_ENCRYPTED, f"The PDF is encrypted{extra}. Remove the password or encryption and upload it again.")


def pdf_malformed(detail: str = "") -> IngestError:
    extra = f": {detail}" if detail else ""
    return _err(PDF_MALFORMED, f"The PDF is damaged or not a PDF{extra}.")


def pdf_no_text() -> IngestError:
    return _err(
        PDF_NO_TEXT,
        "The PDF has no extractable text (it is probably scanned images). OCR is not supported; "
        "upload a PDF with a text layer.",
    )


def pdf_too_many_pages(pages: int, limit: int) -> IngestError:
    return _err(PDF_TOO_MANY_PAGES, f"The PDF has {pages} pages; at most {limit} are accepted.")


def pdf_resource_limit(detail: str = "") -> IngestError:
    extra = f" ({detail})" if detail else ""
    return _err(
        PDF_RESOURCE_LIMIT,
        f"Parsing the PDF hit a resource limit{extra}; the file is too complex or crafted to exhaust resources.",
    )


def file_too_large(size: int, limit: int) -> IngestError:
    """`size` is what was read: the API stops reading one byte past the limit."""
    return _err(FILE_TOO_LARGE, f"The file has more than {limit:,} bytes, the most accepted (RAG_MAX_UPLOAD_BYTES)."
                if size > limit else f"The file has {size} bytes; at most {limit} are accepted.")


def bad_filename(detail: str = "") -> IngestError:
    extra = f": {detail}" if detail else ""
    return _err(BAD_FILENAME, f"Bad file name{extra}.")


def no_text() -> IngestError:
    return _err(NO_TEXT, "The document contains no text to index (only whitespace or markup).")


def internal(detail: str) -> IngestError:
    return _err(INTERNAL, f"Ingestion failed unexpectedly: {detail}. The document was not stored; the server log has details.")


def interrupted() -> IngestError:
    return _err(INTERRUPTED, "The service stopped before the job finished and its upload is gone; upload the file again.")


def document_too_long(chars: int, limit: int) -> IngestError:
    return _err(DOCUMENT_TOO_LONG, f"The document has {chars:,} characters of text; at most {limit:,} are accepted "
                                   "(RAG_MAX_DOCUMENT_CHARS). Split it into smaller files.")


def too_many_chunks(chunks: int, limit: int) -> IngestError:
    return _err(TOO_MANY_CHUNKS, f"The document makes {chunks:,} chunks; at most {limit:,} are accepted "
                                 "(RAG_MAX_DOCUMENT_CHUNKS). Split it into smaller files.")


def repetitive_text(chunks: int, content_bytes: int) -> IngestError:
    return _err(REPETITIVE_TEXT, f"The text repeats itself: its {chunks:,} chunks hold {content_bytes:,} bytes of "
                                 "content (compressed), too little to be worth indexing chunk by chunk.")


def embed_time_limit(seconds: float, done: int, total: int) -> IngestError:
    return _err(EMBED_TIME_LIMIT, f"Embedding stopped after {seconds:.0f} s with {done:,} of {total:,} pieces done "
                                  "(RAG_MAX_EMBED_SECONDS); nothing was stored. Split the document or raise the limit.")


def job_cancelled() -> IngestError:
    return _err(JOB_CANCELLED, "The job was cancelled (DELETE /v1/jobs/{id}); nothing of it was stored.")
