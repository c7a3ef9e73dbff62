"""Ingestion error codes. Every factory returns a `rag.errors.IngestError` with a stable `code`.

| code                 | status | when                                                                  |
|----------------------|--------|-----------------------------------------------------------------------|
| `empty_file`         | 422    | 0 bytes, or no text at all after parsing (text/Markdown/HTML)         |
| `unsupported_type`   | 415    | extension/content not one of `SUPPORTED_EXTENSIONS`                   |
| `undecodable_text`   | 422    | text whose encoding cannot be determined, or binary content           |
| `pdf_encrypted`      | 422    | PDF needs a password (the empty user password was tried)              |
| `pdf_malformed`      | 422    | PDF that pypdf cannot read, or a .pdf without a PDF header            |
| `pdf_no_text`        | 422    | PDF without any extractable text, and OCR of its page images found none |
| `pdf_too_many_pages` | 422    | more pages than `max_pdf_pages`                                       |
| `pdf_resource_limit` | 422    | PDF parsing hit its CPU, memory, wall-clock or output limit           |
| `file_too_large`     | 413    | more bytes than `max_upload_bytes`                                    |
| `document_malformed` | 422    | an Office/EPUB/e-mail/CSV file its library cannot read                |
| `document_encrypted` | 422    | a password-protected Office file or an encrypted ZIP member           |
| `archive_limit`      | 422    | a ZIP container over `max_archive_members` or `max_archive_bytes`     |
| `xml_forbidden`      | 422    | a DTD or entity declaration inside an Office/EPUB XML part            |
| `sheet_too_large`    | 422    | more spreadsheet/CSV rows (empty ones counted) than `max_sheet_rows`  |
| `too_many_attachments` | 422  | an e-mail with more attachments (all levels) than `max_attachments`   |
| `attachments_too_deep` | 422  | e-mails attached inside e-mails deeper than `max_attachment_depth`    |
| `image_too_large`    | 422    | an image over `max_image_pixels` pixels (checked before decoding)      |
| `ocr_too_many_pages` | 422    | a multi-page TIFF with more pages than `max_ocr_pages`                |
| `ocr_time_limit`     | 422    | OCR of one document took longer than `max_ocr_seconds`                |
| `parse_resource_limit` | 422  | parsing a non-PDF document hit its CPU, memory, wall-clock or output limit |
| `bad_filename`       | 400    | missing, over-long, or control characters in the file name           |
| `document_too_long`  | 422    | more characters of text than `max_document_chars`                     |
| `too_many_chunks`    | 422    | more chunks than `max_document_chunks`                                |
| `embed_time_limit`   | 422    | embedding one document took longer than `max_embed_seconds`           |
| `job_cancelled`      | 409    | a client cancelled the job (`DELETE /v1/jobs/{id}`)                   |
"""

from __future__ import annotations

from rag.errors import IngestError

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".pdf", ".txt", ".md", ".markdown", ".html", ".htm", ".docx", ".docm",
                                         ".xlsx", ".xlsm", ".csv", ".pptx", ".pptm", ".epub", ".eml", ".msg",
                                         ".png", ".jpg", ".jpeg", ".tif", ".tiff")
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
DOCUMENT_MALFORMED = "document_malformed"
DOCUMENT_ENCRYPTED = "document_encrypted"
ARCHIVE_LIMIT = "archive_limit"
XML_FORBIDDEN = "xml_forbidden"
SHEET_TOO_LARGE = "sheet_too_large"
TOO_MANY_ATTACHMENTS = "too_many_attachments"
ATTACHMENTS_TOO_DEEP = "attachments_too_deep"
PARSE_RESOURCE_LIMIT = "parse_resource_limit"
IMAGE_TOO_LARGE = "image_too_large"
OCR_TOO_MANY_PAGES = "ocr_too_many_pages"
OCR_TIME_LIMIT = "ocr_time_limit"

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
    DOCUMENT_MALFORMED: 422,
    DOCUMENT_ENCRYPTED: 422,
    ARCHIVE_LIMIT: 422,
    XML_FORBIDDEN: 422,
    SHEET_TOO_LARGE: 422,
    TOO_MANY_ATTACHMENTS: 422,
    ATTACHMENTS_TOO_DEEP: 422,
    PARSE_RESOURCE_LIMIT: 422,
    IMAGE_TOO_LARGE: 422,
    OCR_TOO_MANY_PAGES: 422,
    OCR_TIME_LIMIT: 422,
}

#: The codes a document worker (`ingest.parsers.doc_worker`) may refuse a file with.
WORKER_CODES = frozenset({DOCUMENT_MALFORMED, DOCUMENT_ENCRYPTED, ARCHIVE_LIMIT, XML_FORBIDDEN, SHEET_TOO_LARGE,
                          TOO_MANY_ATTACHMENTS, ATTACHMENTS_TOO_DEEP, PARSE_RESOURCE_LIMIT, EMPTY_FILE,
                          IMAGE_TOO_LARGE, OCR_TOO_MANY_PAGES, OCR_TIME_LIMIT})


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
        "The PDF has no extractable text, and OCR of its page images found none (or OCR is off: "
        "RAG_OCR_SCANNED_PDFS). Upload a PDF with a text layer or a clearer scan.",
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


_WORKER_MESSAGES = {
    DOCUMENT_MALFORMED: "The document is damaged or not of the type its name says{detail}.",
    DOCUMENT_ENCRYPTED: "The document is encrypted or password-protected{detail}. Remove the password and upload it again.",
    ARCHIVE_LIMIT: "The document's ZIP container is too large when unpacked{detail} (RAG_MAX_ARCHIVE_MEMBERS, "
                   "RAG_MAX_ARCHIVE_BYTES); it may be a ZIP bomb.",
    XML_FORBIDDEN: "The document's XML declares a DTD or entities{detail}; Office and EPUB files never need them, "
                   "so it is refused as an entity-expansion attack.",
    SHEET_TOO_LARGE: "The spreadsheet has too many rows{detail} (RAG_MAX_SHEET_ROWS, empty rows counted). "
                     "Delete the empty rows or split it.",
    TOO_MANY_ATTACHMENTS: "The e-mail has too many attachments{detail} (RAG_MAX_ATTACHMENTS).",
    ATTACHMENTS_TOO_DEEP: "The e-mail nests attached e-mails too deep{detail} (RAG_MAX_ATTACHMENT_DEPTH).",
    PARSE_RESOURCE_LIMIT: "Parsing the document hit a resource limit{detail}; the file is too complex or crafted to "
                          "exhaust resources.",
    EMPTY_FILE: "Nothing to ingest{detail}.",
    IMAGE_TOO_LARGE: "The image is too large to read{detail} (RAG_MAX_IMAGE_PIXELS).",
    OCR_TOO_MANY_PAGES: "The image has too many pages to read by OCR{detail} (RAG_MAX_OCR_PAGES).",
    OCR_TIME_LIMIT: "Reading the image by OCR took too long{detail} (RAG_MAX_OCR_SECONDS); nothing was stored.",
}


def worker_refusal(code: str, detail: str = "") -> IngestError:
    """The error for a document worker's refusal `code` (an unknown code reads as `document_malformed`)."""
    if code not in WORKER_CODES:
        code, detail = DOCUMENT_MALFORMED, detail or code
    return _err(code, _WORKER_MESSAGES[code].format(detail=f" ({detail})" if detail else ""))


def document_malformed(detail: str = "") -> IngestError:
    return worker_refusal(DOCUMENT_MALFORMED, detail)


def parse_resource_limit(detail: str = "") -> IngestError:
    return worker_refusal(PARSE_RESOURCE_LIMIT, detail)
