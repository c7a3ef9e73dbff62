"""PDF -> ParsedDocument. pypdf runs only in a sandboxed child process (`pdf_worker`).

Why a process: pypdf has had dozens of denial-of-service advisories (infinite loops, decompression
bombs, quadratic parsing). The child limits its own address space (RLIMIT_AS), CPU time
(RLIMIT_CPU) and output size before it imports pypdf; the parent kills its whole process group at
the wall-clock limit. A limit hit is `pdf_resource_limit`; a parse error or crash is `pdf_malformed`.

The parent then rebuilds structure from the page texts (pure Python on plain strings, linear):

* running headers/footers (a first or last line repeated on many pages, digits ignored) are dropped;
* lines are grouped into paragraphs: a line much shorter than the text width ends a paragraph,
  line breaks inside Chinese text are removed (they were only wrapping);
* numbered headings ("2.7.11 Who uploaded the package?", "Chapter 3" + title line, "第 3 章 ...")
  become heading blocks and give the following blocks their `section_path`; a numbered line is
  taken as a heading only if its number can follow the previous heading's (so "5.10 kernels are
  ..." in running text does not restructure the document);
* every block carries its 1-based page; `pages` has one `PageSpan` per page (empty pages have
  start == end).

A PDF with no text at all (a scan) is read by OCR (`ingest.parsers.office.ocr`, in the document
worker) unless `ocr_scanned_pdfs` is off; with nothing found either, it is `pdf_no_text`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ingest import errors
from ingest.normalize import normalize_text
from ingest.parsers._builder import DocBuilder, join_wrapped_lines
from ingest.parsers.sandbox import Limits, run_worker
from ingest.types import ParsedDocument
from rag.errors import IngestError
from rag.text.scripts import CJK_PUNCTUATION, FULLWIDTH, HAN, NO_SPACE
from rag.text.sentences import LINE_ENDS_CLAUSE

DEFAULT_MAX_CHARS = 25_000_000


@dataclass
class PdfPages:
    pages: list[str]
    title: str | None
    failed_pages: int = 0


def extract_pdf_pages(
    data: bytes,
    *,
    max_pages: int = 2000,
    cpu_seconds: int = 120,
    memory_mb: int = 1024,
    wall_seconds: float = 180,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> PdfPages:
    """Text of every page, extracted by pypdf in a limited child process. Raises `IngestError`."""
    result = run_worker("ingest.parsers.pdf_worker", data,
                        ["--max-pages", str(max_pages), "--max-chars", str(max_chars)],
                        Limits(cpu_seconds=cpu_seconds, memory_mb=memory_mb, wall_seconds=wall_seconds),
                        limit_error=errors.pdf_resource_limit, malformed=errors.pdf_malformed)
    if not result.get("ok"):
        code = result.get("code")
        detail = str(result.get("detail") or "")
        if code == "pdf_encrypted":
            raise errors.pdf_encrypted(detail)
        if code == "pdf_too_many_pages":
            raise errors.pdf_too_many_pages(int(result.get("page_count") or 0), max_pages)
        if code == "pdf_resource_limit":
            raise errors.pdf_resource_limit(detail)
        raise errors.pdf_malformed(detail)
    pages = [p if isinstance(p, str) else "" for p in result.get("pages") or []]
    title = result.get("title") if isinstance(result.get("title"), str) else None
    return PdfPages(pages=pages, title=title, failed_pages=int(result.get("failed_pages") or 0))


# --------------------------------------------------------------------------- structure


# Han, CJK punctuation and full-width forms: a space between two of them is an artefact of extraction.
_HAN = HAN + CJK_PUNCTUATION + FULLWIDTH
_SPACE_BETWEEN_HAN = re.compile(f"(?<=[{_HAN}]) (?=[{_HAN}])")
_MULTI_SPACE = re.compile(r"[ \t\u00a0]{2,}")
_WIDE_RE = re.compile(f"[{NO_SPACE}]")
_ROMAN_OR_DIGITS = re.compile(r"\b[ivxlcdm]+\b|\d+")
_LEADERS = re.compile(r"(?:\.\s?){4,}|…{2,}|·{4,}")
_NUMBERED = re.compile(r"^([A-Z]|\d{1,3})((?:\.\d{1,3}){1,5})\.?\s+(\S.*)$")
_CHAPTER_LINE = re.compile(r"^(?:Chapter|CHAPTER|Appendix|APPENDIX|Part|PART)\s+([0-9]{1,3}|[A-Z]|[IVXL]{1,6})$")
_CHAPTER_INLINE = re.compile(r"^(?:(?:Chapter|CHAPTER|Appendix|APPENDIX)\s+([0-9]{1,3}|[A-Z])|第\s*([0-9一二三四五六七八九十百]{1,4})\s*章)[\s.:：]*(\S.*)?$")
_BULLET = re.compile(r"^\s*(?:[•●◦▪‣∙·\-–*]\s|\(?\d{1,2}[.)]\s|\(?[a-z][.)]\s)")
_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _cn_number(s: str) -> int | None:
    if s.isdigit():
        return int(s)
    if s == "十":
        return 10
    if "百" in s:
        return None
    if "十" in s:
        tens, _, ones = s.partition("十")
        t = _CN_DIGITS.get(tens, None) if tens else 1
        o = _CN_DIGITS.get(ones, None) if ones else 0
        return None if t is None or o is None else t * 10 + o
    return _CN_DIGITS.get(s) if len(s) == 1 else None


def _component(s: str) -> int:
    return 1000 + ord(s) - ord("A") + 1 if s.isalpha() else int(s)


def _width(line: str) -> int:
    return len(line) + len(_WIDE_RE.findall(line))


def _clean_line(line: str) -> str:
    line = _MULTI_SPACE.sub(" ", line.strip())
    return _SPACE_BETWEEN_HAN.sub("", line)


def _furniture_key(line: str) -> str:
    return _ROMAN_OR_DIGITS.sub("#", line.strip().lower())


def _drop_running_furniture(pages: list[list[str]]) -> list[list[str]]:
    """Remove page headers/footers: a first or last line that recurs (digits ignored) on many pages."""
    nonempty = [p for p in pages if p]
    if len(nonempty) < 4:
        return pages
    counts: Counter[str] = Counter()
    for lines in nonempty:
        keys = {_furniture_key(lines[0]), _furniture_key(lines[-1])}
        counts.update(k for k in keys if k)
    threshold = max(3, int(0.4 * len(nonempty)))
    furniture = {k for k, n in counts.items() if n >= threshold}
    if not furniture:
        return pages
    out = []
    for lines in pages:
        lines = list(lines)
        if lines and _furniture_key(lines[0]) in furniture:
            lines.pop(0)
        if lines and _furniture_key(lines[-1]) in furniture:
            lines.pop()
        out.append(lines)
    return out


class _Headings:
    """Numbered-heading recogniser with a section stack."""

    def __init__(self) -> None:
        self.last: tuple[int, ...] | None = None
        self.stack: list[tuple[tuple[int, ...], str]] = []

    def plausible(self, number: tuple[int, ...]) -> bool:
        last = self.last
        if last is None:
            return True
        if number[: len(last)] == last and len(number) > len(last) and all(x == 1 for x in number[len(last):]):
            return True  # first child (1.2 -> 1.2.1)
        for k in range(1, len(last) + 1):
            if number[: k - 1] == last[: k - 1] and len(number) >= k and 1 <= number[k - 1] - last[k - 1] <= 3:
                if all(x == 1 for x in number[k:]):
                    return True  # next sibling of the heading or of an ancestor, small skips allowed
        return False

    def push(self, number: tuple[int, ...], text: str) -> tuple[str, ...]:
        self.last = number
        while self.stack and (len(self.stack[-1][0]) >= len(number)):
            self.stack.pop()
        self.stack.append((number, text))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(t for _, t in self.stack)

    def match(self, line: str, max_width: float) -> tuple[tuple[int, ...], str] | None:
        if len(line) > 120 or _LEADERS.search(line) or _width(line) > max_width:
            return None
        m = _CHAPTER_INLINE.match(line)
        if m:
            raw = m.group(1) or m.group(2)
            num = _component(raw) if m.group(1) else _cn_number(raw)
            if num is not None and m.group(3) and not LINE_ENDS_CLAUSE.search(line):
                number = (num,)
                if self.plausible(number) or num == 1:
                    return number, line
            return None
        m = _NUMBERED.match(line)
        if not m:
            return None
        title = m.group(3)
        if LINE_ENDS_CLAUSE.search(title) or len(title.split()) > 14 or not re.search(r"[^\W\d_]", title):
            return None
        number = (_component(m.group(1)),) + tuple(int(x) for x in m.group(2)[1:].split("."))
        if not self.plausible(number):
            return None
        return number, line


def build_pdf_document(pages: list[str], title: str | None = None) -> ParsedDocument:
    """Blocks, headings and page spans from per-page text (already extracted)."""
    page_lines: list[list[str]] = []
    for text in pages:
        lines = [_clean_line(l) for l in normalize_text(text).split("\n")]
        page_lines.append([l for l in lines if l])
    page_lines = _drop_running_furniture(page_lines)

    widths = sorted(_width(l) for lines in page_lines for l in lines)
    full = widths[int(0.9 * (len(widths) - 1))] if widths else 80
    short = 0.75 * full
    heading_max = 0.85 * full

    heads = _Headings()
    b = DocBuilder()
    for number, lines in enumerate(page_lines, start=1):
        b.begin_page(number)
        para: list[str] = []

        def flush() -> None:
            if para:
                kind = "list_item" if _BULLET.match(para[0]) else "paragraph"
                b.add(join_wrapped_lines(para), kind, heads.path, normalize=False)
                para.clear()

        i = 0
        while i < len(lines):
            line = lines[i]
            chapter = _CHAPTER_LINE.match(line)
            if chapter and i + 1 < len(lines):
                # "Chapter 3" on its own line, the title on the next
                nxt = lines[i + 1]
                if _width(nxt) <= heading_max and not LINE_ENDS_CLAUSE.search(nxt) and not _LEADERS.search(nxt):
                    num = (_component(chapter.group(1)) if not re.fullmatch("[IVXL]+", chapter.group(1)) or len(chapter.group(1)) == 1 else None)
                    if num is not None and (heads.plausible((num,)) or num in (1, 1001)):
                        flush()
                        text = f"{line} {nxt}"
                        path = heads.push((num,), text)
                        b.add(text, "heading", path, normalize=False)
                        i += 2
                        continue
            heading = heads.match(line, heading_max)
            if heading is not None:
                flush()
                path = heads.push(*heading)
                b.add(heading[1], "heading", path, normalize=False)
                i += 1
                continue
            if para and _BULLET.match(line):
                flush()
            para.append(line)
            if _width(line) < short:
                flush()
            i += 1
        flush()
    doc = b.build("pdf", title=title)
    return doc


def parse_pdf(data: bytes, settings=None) -> ParsedDocument:
    """Parse a PDF upload with the limits from `settings` (a `rag.settings.Settings`)."""
    kwargs = {}
    if settings is not None:
        kwargs = dict(
            max_pages=settings.max_pdf_pages,
            cpu_seconds=settings.parse_cpu_seconds,
            memory_mb=settings.parse_memory_mb,
            wall_seconds=settings.parse_wall_seconds,
        )
    extracted = extract_pdf_pages(data, **kwargs)
    doc = build_pdf_document(extracted.pages, extracted.title)
    if not doc.blocks and (settings is None or settings.ocr_scanned_pdfs):
        # No text layer: a scan. Its page images are read by OCR in the document worker.
        from ingest.parsers.documents import parse_office

        try:
            doc = parse_office(data, "pdf_ocr", settings, limit_error=errors.pdf_resource_limit,
                               malformed=errors.pdf_malformed)
        except IngestError as exc:  # a PDF's failures keep the PDF codes
            if exc.code == errors.DOCUMENT_MALFORMED:
                raise errors.pdf_malformed(f"reading its page images: {exc.message}") from None
            if exc.code == errors.PARSE_RESOURCE_LIMIT:
                raise errors.pdf_resource_limit(f"reading its page images: {exc.message}") from None
            raise
        doc.title = doc.title or extracted.title
    if not doc.blocks:
        raise errors.pdf_no_text()
    return doc
