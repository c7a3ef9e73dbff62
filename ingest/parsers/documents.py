"""DOCX, XLSX, CSV, PPTX, EPUB, EML, MSG and images (OCR) -> ParsedDocument, read in the sandboxed `doc_worker`.

The worker returns plain blocks (kind, text, section path, page); this side only rebuilds them with
`DocBuilder` (normalising each block, so offsets stay exact) and maps refusals to error codes.
Pages: a spreadsheet's sheets, a deck's slides and an image's frames are its pages (1-based); other
formats have none.
"""

from __future__ import annotations

import dataclasses

from ingest import errors
from ingest.parsers._builder import DocBuilder
from ingest.parsers.sandbox import limits_of, run_worker
from ingest.types import ParsedDocument
from rag.errors import IngestError

_KINDS = frozenset({"heading", "paragraph", "list_item", "code", "table"})


def _worker_args(fmt: str, settings) -> list[str]:
    args = ["--format", fmt]
    if settings is not None:
        args += ["--max-chars", str(max(settings.max_document_chars * 4, 1_000_000)),
                 "--max-members", str(settings.max_archive_members),
                 "--max-unpacked", str(settings.max_archive_bytes),
                 "--max-rows", str(settings.max_sheet_rows),
                 "--max-attachments", str(settings.max_attachments),
                 "--max-depth", str(settings.max_attachment_depth),
                 "--max-image-pixels", str(settings.max_image_pixels),
                 "--max-ocr-pages", str(settings.max_ocr_pages),
                 "--max-ocr-seconds", str(settings.max_ocr_seconds)]
    return args


def _refusal(result: dict) -> IngestError:
    code = str(result.get("code") or "")
    detail = str(result.get("detail") or "")
    if code not in errors.WORKER_CODES and code in errors.ERROR_STATUS and result.get("message"):
        return IngestError(str(result["message"]), code=code, status=errors.ERROR_STATUS[code])
    return errors.worker_refusal(code, detail)


def parse_office(data: bytes, fmt: str, settings=None, *, limit_error=errors.parse_resource_limit,
                 malformed=errors.document_malformed) -> ParsedDocument:
    """Parse one upload of format `fmt` (see `ingest.detect.EXTENSIONS`). Raises `IngestError`."""
    limits = limits_of(settings)
    if fmt in ("image", "pdf_ocr") and settings is not None:
        limits = dataclasses.replace(limits, memory_mb=settings.ocr_memory_mb)
    result = run_worker("ingest.parsers.doc_worker", data, _worker_args(fmt, settings), limits,
                        limit_error=limit_error, malformed=malformed)
    if not result.get("ok"):
        raise _refusal(result)
    b = DocBuilder()
    page = 0
    pages = result.get("page_count") if isinstance(result.get("page_count"), int) else 0
    for item in result.get("blocks") or []:
        kind, text, path, number = item
        if kind not in _KINDS or not isinstance(text, str):
            continue
        if isinstance(number, int) and number != page:
            for n in range(page + 1 if pages else number, number + 1):  # pages without text keep their number
                b.begin_page(n)
            page = number
        b.add(text, kind, tuple(str(p) for p in path))
    for n in range(page + 1, pages + 1):
        b.begin_page(n)
    title = result.get("title") if isinstance(result.get("title"), str) else None
    return b.build("pdf" if fmt == "pdf_ocr" else fmt, title=title)
