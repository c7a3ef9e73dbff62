"""What every extractor shares: the blocks they emit, their limits, and the refusal they raise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


class Refused(Exception):
    """A file the worker will not read; `code` is one of `ingest.errors.WORKER_CODES`."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@contextmanager
def library_errors(what: str = "") -> Iterator[None]:
    """Any error a library raises on a bad file becomes `document_malformed`; our refusals and
    MemoryError (the worker's memory limit) pass through."""
    try:
        yield
    except (Refused, MemoryError):
        raise
    except Exception as exc:
        raise Refused("document_malformed", f"{what}{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class WorkerLimits:
    max_chars: int = 25_000_000
    max_members: int = 10_000
    max_unpacked: int = 300 * 1024 * 1024
    max_rows: int = 100_000
    max_attachments: int = 100
    max_depth: int = 3
    max_image_pixels: int = 40_000_000
    max_ocr_pages: int = 50
    max_ocr_seconds: int = 300


@dataclass
class Out:
    """The blocks of one document as plain data: [kind, text, section path, page]."""

    limits: WorkerLimits
    blocks: list[list] = field(default_factory=list)
    title: str | None = None
    chars: int = 0
    attachments: int = 0
    ocr_confidence: list[float] | None = None  # per page, for OCR'd documents
    page_count: int | None = None  # when every page counts, even one without text (OCR'd PDFs)

    def add(self, text: str, kind: str = "paragraph", path: tuple[str, ...] = (), page: int | None = None) -> None:
        text = (text or "").strip()
        if not text:
            return
        self.chars += len(text)
        if self.chars > self.limits.max_chars:
            raise Refused("parse_resource_limit", f"more than {self.limits.max_chars:,} characters of text")
        self.blocks.append([kind, text, list(path), page])

    def add_table(self, rows: list[list[str]], path: tuple[str, ...] = (), page: int | None = None,
                  header_rows: int | None = None) -> None:
        from ingest.parsers.tables import table_lines

        for line in table_lines(rows, header_rows=header_rows):
            self.add(line, "table", path, page)

    def add_parsed(self, doc, prefix: tuple[str, ...] = (), page: int | None = None) -> None:
        """The blocks of a `ParsedDocument` parsed in the worker (HTML, text, PDF), under `prefix`."""
        for b in doc.blocks:
            self.add(doc.text[b.start:b.end], b.kind, prefix + tuple(b.section_path), b.page if page is None else page)
