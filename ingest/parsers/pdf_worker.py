"""PDF text extraction in a sandboxed child process: ``python -m ingest.parsers.pdf_worker PATH [options]``.

Run only by `ingest.parsers.pdf.extract_pdf_pages`. The worker limits itself before it imports
pypdf (address space, CPU time, file size, core dumps), extracts the text of every page, and
writes one JSON object to stdout:

    {"ok": true, "page_count": N, "pages": ["...", ...], "title": str | null, "failed_pages": K}
    {"ok": false, "code": "pdf_encrypted" | "pdf_malformed" | "pdf_too_many_pages" | "pdf_resource_limit",
     "detail": "...", "page_count": N | null}

Exit status 3 means the worker ran out of memory; death by a signal (SIGXCPU, SIGKILL, SIGXFSZ)
means a resource limit; the parent maps both to `pdf_resource_limit`.

It imports only the standard library and pypdf (no torch, no pydantic): startup is ~0.2 s.
"""

from __future__ import annotations

import argparse
import re
import sys

from ingest.parsers.limits import exit_out_of_memory, set_limits, write_result

#: Gap in a TJ array (thousandths of an em) that always counts as a word space. pypdf uses half the
#: font's space width, which is too wide when it guesses the space width of a subset CID font (TeX
#: output then loses most spaces: "youhavetopracticeityourself"). 0.15 em is above kerning.
TJ_SPACE_THRESHOLD = 150.0
_SURROGATES = re.compile("[\ud800-\udfff]")


def _patch_space_detection() -> None:
    """Best effort: a private pypdf API; silently skipped if a pypdf release changes it."""
    try:
        from pypdf._text_extraction._text_extractor import TextExtraction
    except Exception:
        return
    original = getattr(TextExtraction, "process_tj_offset", None)
    if original is None or getattr(original, "_rag_patched", False):
        return

    def process_tj_offset(self, offset, space_width):
        return original(self, offset, min(space_width, TJ_SPACE_THRESHOLD))

    process_tj_offset._rag_patched = True  # type: ignore[attr-defined]
    TextExtraction.process_tj_offset = process_tj_offset


def _fail(code: str, detail: str, page_count: int | None = None) -> dict:
    return {"ok": False, "code": code, "detail": detail[:500], "page_count": page_count}


def extract(path: str, max_pages: int, max_chars: int) -> dict:
    import logging
    import warnings

    logging.disable(logging.CRITICAL)  # pypdf logs a warning per odd object; a hostile file has millions
    warnings.simplefilter("ignore")

    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    _patch_space_detection()

    try:
        reader = PdfReader(path, strict=False)
    except LimitReachedError as exc:
        return _fail("pdf_resource_limit", f"pypdf limit: {exc}")
    except MemoryError:
        raise
    except Exception as exc:  # any parse error: the file is damaged or not a PDF
        return _fail("pdf_malformed", f"{type(exc).__name__}: {exc}")

    try:
        if reader.is_encrypted:
            try:
                from pypdf import PasswordType

                if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                    return _fail("pdf_encrypted", "a user password is required")
            except MemoryError:
                raise
            except Exception as exc:
                from pypdf.errors import DependencyError

                if isinstance(exc, DependencyError):
                    return _fail("pdf_encrypted", "AES decryption needs the 'cryptography' package, which is not installed")
                return _fail("pdf_encrypted", f"cannot decrypt: {type(exc).__name__}: {exc}")
        page_count = len(reader.pages)
    except LimitReachedError as exc:
        return _fail("pdf_resource_limit", f"pypdf limit: {exc}")
    except MemoryError:
        raise
    except FileNotDecryptedError:
        return _fail("pdf_encrypted", "a user password is required")
    except Exception as exc:
        return _fail("pdf_malformed", f"{type(exc).__name__}: {exc}")

    if page_count > max_pages:
        return _fail("pdf_too_many_pages", f"{page_count} pages", page_count)
    if page_count == 0:
        return _fail("pdf_malformed", "the PDF has no pages", 0)

    pages: list[str] = []
    failed = 0
    total = 0
    for index in range(page_count):
        try:
            text = reader.pages[index].extract_text() or ""
        except LimitReachedError as exc:
            return _fail("pdf_resource_limit", f"page {index + 1}: pypdf limit: {exc}", page_count)
        except MemoryError:
            raise
        except RecursionError:
            text, failed = "", failed + 1
        except Exception:
            text, failed = "", failed + 1
        if not isinstance(text, str):
            text = ""
        text = _SURROGATES.sub("\ufffd", text)
        total += len(text)
        if total > max_chars:
            return _fail("pdf_resource_limit", f"more than {max_chars} characters of text", page_count)
        pages.append(text)
    if failed == page_count:
        return _fail("pdf_malformed", "no page could be read", page_count)

    title = None
    try:
        meta = reader.metadata
        raw = meta.title if meta is not None else None
        if isinstance(raw, str) and raw.strip():
            title = _SURROGATES.sub("", raw.strip())[:500]
    except MemoryError:
        raise
    except Exception:
        title = None
    return {"ok": True, "page_count": page_count, "pages": pages, "title": title, "failed_pages": failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdf_worker", description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--max-pages", type=int, default=2000)
    parser.add_argument("--max-chars", type=int, default=25_000_000)
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--cpu-seconds", type=int, default=120)
    args = parser.parse_args(argv)
    # JSON with ensure_ascii escapes every non-ASCII character as \\uXXXX (<= 12 bytes each).
    set_limits(args.memory_mb, args.cpu_seconds, args.max_chars * 12 + (1 << 20))
    try:
        write_result(extract(args.path, args.max_pages, args.max_chars))
    except MemoryError:
        exit_out_of_memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
