"""Assembles a `ParsedDocument` block by block so every offset is exact by construction.

Each block's text is normalised and stripped *before* it is appended; blocks are joined with
``"\\n\\n"``, except consecutive list items (``"\\n"``). Hence ``doc.text[b.start:b.end]`` is the
block's text and ``doc.text`` is itself normalised.
"""

from __future__ import annotations

from ingest.normalize import normalize_text
from ingest.types import Block, BlockKind, PageSpan, ParsedDocument
from rag.text.scripts import is_no_space


def join_wrapped_lines(lines: list[str]) -> str:
    """Join the lines of one paragraph: a break between two CJK characters was only line wrapping
    (Chinese has no spaces) and is removed; other breaks are kept as ``"\\n"``."""
    out: list[str] = []
    for line in lines:
        line = line.rstrip()
        if not out:
            out.append(line)
            continue
        stripped = line.lstrip()
        prev = out[-1]
        if prev and stripped and is_no_space(prev[-1]) and is_no_space(stripped[0]):
            out[-1] = prev + stripped
        else:
            out.append(line)
    return "\n".join(out)


class DocBuilder:
    def __init__(self) -> None:
        self._parts: list[str] = []
        self._len = 0
        self.blocks: list[Block] = []
        self.pages: list[PageSpan] = []
        self._page: int | None = None
        self._page_start: int | None = None
        self._last_kind: BlockKind | None = None

    @property
    def length(self) -> int:
        return self._len

    def add(self, text: str, kind: BlockKind = "paragraph", section_path: tuple[str, ...] = (), *, normalize: bool = True) -> Block | None:
        """Append one block; returns it, or None when the text is empty after normalising."""
        if normalize:
            text = normalize_text(text)
        text = text.strip()
        if not text:
            return None
        if self._len:
            sep = "\n" if kind == "list_item" and self._last_kind == "list_item" else "\n\n"
            self._parts.append(sep)
            self._len += len(sep)
        start = self._len
        self._parts.append(text)
        self._len += len(text)
        if self._page is not None and self._page_start is None:
            self._page_start = start
        block = Block(kind=kind, start=start, end=self._len, section_path=tuple(section_path), page=self._page)
        self.blocks.append(block)
        self._last_kind = kind
        return block

    def begin_page(self, number: int) -> None:
        self.end_page()
        self._page = number
        self._page_start = None
        self._last_kind = None  # list items never join across pages with "\n"

    def end_page(self) -> None:
        if self._page is None:
            return
        start = self._page_start if self._page_start is not None else self._len
        end = self._len if self._page_start is not None else start
        self.pages.append(PageSpan(number=self._page, start=start, end=end))
        self._page = None
        self._page_start = None

    def build(self, fmt, *, title: str | None = None, encoding: str | None = None) -> ParsedDocument:
        self.end_page()
        if title is not None:
            title = " ".join(normalize_text(title).split()) or None
        return ParsedDocument(
            text="".join(self._parts),
            format=fmt,
            blocks=self.blocks,
            pages=self.pages,
            title=title,
            encoding=encoding,
        )
