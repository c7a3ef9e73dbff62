"""Plain text -> ParsedDocument: paragraphs split at blank lines, list items detected.

Within a paragraph, a line that starts with a list marker ("- ", "* ", "• ", "1. ", "2) ", "(3) ",
"一、", "（二）", "a) ") starts a `list_item` block; following lines without a marker continue it.
Line breaks between two CJK characters are removed (wrapping); other line breaks are kept.
Lines made only of a repeated rule character ("-----", "=====") are dropped. Plain text has no
headings, so `section_path` is empty and `title` is None.
"""

from __future__ import annotations

import re
import textwrap

from ingest.normalize import normalize_text
from ingest.parsers._builder import DocBuilder, join_wrapped_lines
from ingest.types import ParsedDocument

LIST_MARKER = re.compile(
    r"^\s*(?:[-*+•·▪●◦‣–]\s+"
    r"|\(?\d{1,3}(?:\.\d{1,3})*[.)](?!\d)\s*"
    r"|\d{1,3}、\s*"
    r"|[（(][一二三四五六七八九十\d]{1,3}[）)]\s*"
    r"|[一二三四五六七八九十]{1,3}、\s*"
    r"|\(?[a-zA-Z][.)]\s+)"
)
RULE_LINE = re.compile(r"^\s*([-=_*~#+.·—─━=])\1{2,}\s*$")
_BLANK_SPLIT = re.compile(r"\n[ \t]*\n")


def add_paragraphs(b: DocBuilder, text: str, section_path: tuple[str, ...] = ()) -> None:
    """Add the blank-line separated paragraphs (and list items) of already-normalised `text`."""
    for para in _BLANK_SPLIT.split(text):
        lines = [l for l in para.split("\n") if l.strip() and not RULE_LINE.match(l)]
        if not lines:
            continue
        lines = textwrap.dedent("\n".join(lines)).split("\n")
        current: list[str] = []
        kind = "paragraph"
        for line in lines:
            if LIST_MARKER.match(line):
                if current:
                    b.add(join_wrapped_lines(current), kind, section_path, normalize=False)
                current, kind = [line.strip()], "list_item"
            else:
                current.append(line.strip() if kind == "list_item" else line)
        if current:
            b.add(join_wrapped_lines(current), kind, section_path, normalize=False)


def parse_text(text: str, encoding: str | None = None) -> ParsedDocument:
    b = DocBuilder()
    add_paragraphs(b, normalize_text(text))
    return b.build("text", encoding=encoding)
