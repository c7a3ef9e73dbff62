"""Upload bytes -> `ParsedDocument`, dispatched by format.

Every parser builds its text block by block (`_builder.DocBuilder`): each block is normalised
(`ingest.normalize.normalize_text`) and stripped before its offsets are taken, and blocks are joined
with ``"\\n\\n"`` (``"\\n"`` between consecutive list items), so ``doc.text[b.start:b.end]`` is
exactly the block's text.

Imports are lazy: `python -m ingest.parsers.pdf_worker` imports this package, and the sandboxed
worker must start fast and import nothing it does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ingest.types import ParsedDocument


def parse_document(data: bytes, filename: str, settings=None) -> "ParsedDocument":
    """Parse an upload. `settings` is a `rag.settings.Settings` (None: its defaults).

    Raises `rag.errors.IngestError` with one of the codes in `ingest.errors`.
    """
    from ingest import errors
    from ingest.detect import detect_format

    if settings is None:
        from rag.settings import Settings

        settings = Settings()
    if not data:
        raise errors.empty_file()
    if len(data) > settings.max_upload_bytes:
        raise errors.file_too_large(len(data), settings.max_upload_bytes)
    fmt = detect_format(filename, data[:2048])

    if fmt == "pdf":
        from ingest.parsers.pdf import parse_pdf

        doc = parse_pdf(data, settings)
    elif fmt in ("docx", "xlsx", "csv", "pptx", "epub", "eml", "msg", "image"):
        from ingest.parsers.documents import parse_office

        doc = parse_office(data, fmt, settings)
    elif fmt == "html":
        from ingest.parsers.html import parse_html

        doc = parse_html(data)
    else:
        from ingest.decode import decode_text

        text, encoding = decode_text(data)
        if fmt == "markdown":
            from ingest.parsers.markdown import parse_markdown

            doc = parse_markdown(text, encoding)
        else:
            from ingest.parsers.text import parse_text

            doc = parse_text(text, encoding)
    if not doc.blocks:
        raise errors.empty_file("the file contains no text")
    return doc
