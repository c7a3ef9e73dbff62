"""Document extraction in a sandboxed child process: ``python -m ingest.parsers.doc_worker PATH --format F [options]``.

Run only by `ingest.parsers.documents.parse_office`. Like `pdf_worker`, it limits itself
(`limits.set_limits`) before it imports any document library, then writes one JSON object:

    {"ok": true, "title": str | null, "blocks": [[kind, text, [section, ...], page | null], ...]}
    {"ok": false, "code": "<a code of ingest.errors.WORKER_CODES, or another ingestion code>",
     "detail": "...", "message": "..."}

ZIP containers (DOCX, XLSX, PPTX, EPUB) pass `office.zipcheck` first. An attached document inside
an e-mail is read here too (`extract_into`), PDFs included (pypdf in this same sandbox). Images are
read by OCR (`office.ocr`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from ingest.parsers.limits import exit_out_of_memory, set_limits, write_result

ZIP_FORMATS = ("docx", "xlsx", "pptx", "epub")


def _pdf(path: str, out) -> None:
    """An attached PDF, read with pypdf in this same sandbox."""
    from ingest.parsers.office.common import Refused
    from ingest.parsers.pdf import build_pdf_document
    from ingest.parsers.pdf_worker import extract

    result = extract(path, 2000, out.limits.max_chars)
    if not result.get("ok"):
        raise Refused("document_malformed", f"an attached PDF: {result.get('detail')}")
    out.add_parsed(build_pdf_document(result["pages"], result.get("title")))


def _extract_path(fmt: str, path: str, out, prefix: tuple[str, ...], depth: int) -> None:
    from ingest.parsers.office import zipcheck

    if fmt in ZIP_FORMATS:
        zipcheck.check_zip(path, out.limits, allow_doctype=fmt == "epub")
    if prefix:
        # An attached document: its blocks go under the attachment's section; its title is not ours.
        from ingest.parsers.office.common import Out

        inner = Out(out.limits, chars=out.chars, attachments=out.attachments)
        _extract_path(fmt, path, inner, (), depth)
        out.chars, out.attachments = inner.chars, inner.attachments
        for kind, text, path_, page in inner.blocks:
            out.blocks.append([kind, text, list(prefix) + path_, None])
        return
    if fmt == "docx":
        from ingest.parsers.office.docx import extract_docx

        extract_docx(path, out)
    elif fmt == "xlsx":
        from ingest.parsers.office.sheets import extract_xlsx

        extract_xlsx(path, out)
    elif fmt == "csv":
        from ingest.parsers.office.sheets import extract_csv

        extract_csv(path, out)
    elif fmt == "pptx":
        from ingest.parsers.office.slides import extract_pptx

        extract_pptx(path, out)
    elif fmt == "epub":
        from ingest.parsers.office.epub import extract_epub

        extract_epub(path, out)
    elif fmt == "msg":
        from ingest.parsers.office.mail import extract_msg

        extract_msg(path, out, (), depth)
    elif fmt == "pdf":
        _pdf(path, out)
    elif fmt == "image":
        from ingest.parsers.office.ocr import extract_image

        extract_image(path, out)
    elif fmt == "pdf_ocr":
        from ingest.parsers.office.ocr import extract_scanned_pdf

        extract_scanned_pdf(path, out)
    else:
        with open(path, "rb") as fh:
            _extract_bytes(fmt, fh.read(), out, depth)


def _extract_bytes(fmt: str, data: bytes, out, depth: int) -> None:
    """The formats read from bytes: e-mail, and the text parsers for an attached file."""
    if fmt == "eml":
        from ingest.parsers.office.mail import extract_eml

        extract_eml(data, out, (), depth)
    elif fmt == "html":
        from ingest.parsers.html import parse_html

        out.add_parsed(parse_html(data))
    else:
        from ingest.decode import decode_text

        text, encoding = decode_text(data)
        if fmt == "markdown":
            from ingest.parsers.markdown import parse_markdown

            out.add_parsed(parse_markdown(text, encoding))
        else:
            from ingest.parsers.text import parse_text

            out.add_parsed(parse_text(text, encoding))


def extract_into(fmt: str, data: bytes, out, prefix: tuple[str, ...] = (), depth: int = 0) -> None:
    """Add the blocks of one document (or attached document, under `prefix`) to `out`."""
    fd, path = tempfile.mkstemp(prefix="part-", dir=os.getcwd())  # the libraries want paths
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        _extract_path(fmt, path, out, prefix, depth)
    finally:
        os.unlink(path)


def run(path: str, fmt: str, limits) -> dict:
    import logging
    import warnings

    from ingest.parsers.office.common import Out, Refused
    from rag.errors import IngestError

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    out = Out(limits)
    try:
        _extract_path(fmt, path, out, (), 0)
    except Refused as exc:
        return {"ok": False, "code": exc.code, "detail": exc.detail[:500]}
    except IngestError as exc:  # from a parser reused here (undecodable text, ...)
        return {"ok": False, "code": exc.code, "detail": "", "message": str(exc)[:1000]}
    except RecursionError:
        return {"ok": False, "code": "parse_resource_limit", "detail": "structure nested too deep"}
    return {"ok": True, "title": (out.title or None), "blocks": out.blocks, "ocr_confidence": out.ocr_confidence,
            "page_count": out.page_count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="doc_worker", description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--format", required=True)
    parser.add_argument("--max-chars", type=int, default=25_000_000)
    parser.add_argument("--max-members", type=int, default=10_000)
    parser.add_argument("--max-unpacked", type=int, default=300 << 20)
    parser.add_argument("--max-rows", type=int, default=100_000)
    parser.add_argument("--max-attachments", type=int, default=100)
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument("--max-image-pixels", type=int, default=40_000_000)
    parser.add_argument("--max-ocr-pages", type=int, default=50)
    parser.add_argument("--max-ocr-seconds", type=int, default=300)
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--cpu-seconds", type=int, default=120)
    args = parser.parse_args(argv)
    set_limits(args.memory_mb, args.cpu_seconds, args.max_chars * 12 + (1 << 20))
    from ingest.parsers.office.common import WorkerLimits

    limits = WorkerLimits(max_chars=args.max_chars, max_members=args.max_members, max_unpacked=args.max_unpacked,
                          max_rows=args.max_rows, max_attachments=args.max_attachments, max_depth=args.max_depth,
                          max_image_pixels=args.max_image_pixels, max_ocr_pages=args.max_ocr_pages,
                          max_ocr_seconds=args.max_ocr_seconds)
    try:
        write_result(run(args.path, args.format, limits))
    except MemoryError:
        exit_out_of_memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
