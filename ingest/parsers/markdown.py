"""Markdown -> ParsedDocument with a small line-based reader (CommonMark's block structure, simplified).

* ATX (``## Title``) and setext (``Title`` over ``===``/``---``) headings become `heading` blocks and
  set `section_path` (the heading texts from level 1 down);
* fenced (```` ``` ```` / ``~~~``) and indented code become `code` blocks, verbatim;
* list items (``-``, ``*``, ``+``, ``1.``, ``1)``) become `list_item` blocks; bullets are dropped,
  ordered numbers kept; continuation lines join the item;
* a table becomes one `table` block, one line per row; the row above the delimiter row is the
  header, and its names are repeated in every row ("端口: 22 | 服务: ssh", `ingest.parsers.tables`);
* block quotes lose their ``>``; YAML front matter is dropped (its ``title:`` is used as title);
* inline syntax is stripped minimally: emphasis markers, code backticks, link and image syntax
  (the text or alt text stays), HTML tags, backslash escapes.

`title` is the front-matter title, else the first level-1 heading, else the first heading.
"""

from __future__ import annotations

import re

from ingest.normalize import normalize_text
from ingest.parsers._builder import DocBuilder, join_wrapped_lines
from ingest.parsers.tables import table_lines
from ingest.types import ParsedDocument

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST = re.compile(r"^(\s{0,12})([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$")
_QUOTE = re.compile(r"^ {0,3}> ?")
# Every level of a nested quote in one match; possessive, so the engine keeps no backtracking
# state per level (a 2 MB line of ">" cost 350 MB with a plain "+").
_QUOTES = re.compile(r"^(?: {0,3}> ?)++")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_DELIM = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(?:\|\s*:?-{1,}:?\s*)*\|?\s*$")
_INDENTED = re.compile(r"^(?: {4}|\t)")

# Inline patterns. Each span's content excludes its own delimiter, so a failed match stops at the
# next delimiter: linear time even on hostile input ("**a **b **c ..." repeated for megabytes).
_IMAGE = re.compile(r"!\[([^\[\]\n]{0,500})\]\([^()\s]{0,2000}(?:\s+\"[^\"\n]{0,500}\")?\)")
_LINK = re.compile(r"\[([^\[\]\n]{1,500})\]\((?:[^()\s]|\([^()\s]{0,200}\)){0,2000}(?:\s+\"[^\"\n]{0,500}\")?\)")
_REF_LINK = re.compile(r"\[([^\[\]\n]{1,500})\]\[[^\[\]\n]{0,200}\]")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]{1,2000})>")
_CODE_SPAN = re.compile(r"(?<!`)(`{1,16})(?!`)([^`]{1,2000})\1(?!`)")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~<])")
_STRONG = re.compile(r"(\*\*|__)(?=[^\s*_])([^*_\n]{1,500}?)(?<=[^\s*_])\1")
_EM_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]{1,500}?)(?<=[^\s*])\*(?![\w*])")
_EM_UNDER = re.compile(r"(?<![\w_])_(?=[^\s_])([^_\n]{1,500}?)(?<=[^\s_])_(?![\w_])")
_STRIKE = re.compile(r"~~(?=[^\s~])([^~\n]{1,500}?)(?<=[^\s~])~~")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]{0,30}(?:\s[^<>]{0,1000})?/?>")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
_FRONT_TITLE = re.compile(r"^title:\s*[\"']?(.*?)[\"']?\s*$", re.IGNORECASE)


def strip_inline(text: str) -> str:
    """Remove inline Markdown syntax, keeping the readable text (linear time, see the patterns)."""
    kept: list[str] = []

    def keep(value: str) -> str:
        kept.append(value)
        return f"\x00{len(kept) - 1}\x00"

    text = text.replace("\x00", "")
    text = _CODE_SPAN.sub(lambda m: keep(m.group(2).strip()), text)  # code spans are literal
    text = _ESCAPED.sub(lambda m: keep(m.group(1)), text)  # so are escaped characters
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _HTML_TAG.sub("", text)
    text = _EM_STAR.sub(r"\1", text)  # inner emphasis first: "**a *b* c**"
    text = _EM_UNDER.sub(r"\1", text)
    text = _STRONG.sub(r"\2", text)
    text = _STRIKE.sub(r"\1", text)
    if kept:
        text = _PLACEHOLDER.sub(lambda m: kept[int(m.group(1))], text)
    return text


class _Sections:
    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []

    def push(self, level: int, text: str) -> tuple[str, ...]:
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(t for _, t in self.stack)


def _front_matter(lines: list[str]) -> tuple[int, str | None]:
    """(lines to skip, title) for a leading YAML block delimited by --- lines."""
    if not lines or lines[0].strip() != "---":
        return 0, None
    for i in range(1, min(len(lines), 200)):
        if lines[i].strip() in ("---", "..."):
            title = None
            for line in lines[1:i]:
                m = _FRONT_TITLE.match(line.strip())
                if m and m.group(1):
                    title = m.group(1)
                    break
            return i + 1, title
    return 0, None


def parse_markdown(text: str, encoding: str | None = None) -> ParsedDocument:
    lines = normalize_text(text).split("\n")
    skip, title = _front_matter(lines)
    sections = _Sections()
    b = DocBuilder()
    first_h1: str | None = None
    first_heading: str | None = None

    para: list[str] = []
    kind = "paragraph"  # of `para`: paragraph | list_item | table
    table_header = False  # the table in `para` had a delimiter row after its first row

    def flush() -> None:
        nonlocal kind, table_header
        if para:
            if kind == "table":
                rows = [[strip_inline(c.strip()) for c in row.strip().strip("|").split("|")] for row in para]
                lines = table_lines(rows, header_rows=1 if table_header else 0)
                b.add("\n".join(lines), "table", sections.path, normalize=False)
            else:
                b.add(strip_inline(join_wrapped_lines(para)), kind, sections.path, normalize=False)
            para.clear()
        kind = "paragraph"
        table_header = False

    def heading(level: int, raw: str) -> None:
        nonlocal first_h1, first_heading
        flush()
        htext = " ".join(strip_inline(raw).split())
        if not htext:
            return
        path = sections.push(level, htext)
        b.add(htext, "heading", path, normalize=False)
        if first_heading is None:
            first_heading = htext
        if level == 1 and first_h1 is None:
            first_h1 = htext

    i = skip
    n = len(lines)
    while i < n:
        line = lines[i]
        quote = _QUOTES.match(line)
        if quote:
            # One cut for all levels: cutting one ">" at a time copied the rest of the line each
            # time, quadratic in the nesting (a 2 MB line of ">" held the worker for a minute, a
            # 50 MB one for hours).
            line = line[quote.end():]

        fence = _FENCE.match(line)
        if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
            flush()
            marker = fence.group(1)
            code: list[str] = []
            i += 1
            while i < n:
                cl = lines[i]
                q = _QUOTE.match(cl) if quote else None
                if q:
                    cl = cl[q.end():]
                close = _FENCE.match(cl)
                if close and close.group(1)[0] == marker[0] and len(close.group(1)) >= len(marker) and not close.group(2).strip():
                    break
                code.append(cl)
                i += 1
            i += 1  # the closing fence (or the end)
            b.add("\n".join(code), "code", sections.path, normalize=False)
            continue

        if not line.strip():
            flush()
            i += 1
            continue

        atx = _ATX.match(line)
        if atx:
            heading(len(atx.group(1)), atx.group(2) or "")
            i += 1
            continue

        setext = _SETEXT.match(line)
        if setext and para and kind == "paragraph":
            raw = " ".join(p.strip() for p in para)
            para.clear()
            heading(1 if setext.group(1)[0] == "=" else 2, raw)
            i += 1
            continue

        if _THEMATIC.match(line):
            flush()
            i += 1
            continue

        if _TABLE_ROW.match(line):
            if kind != "table":
                flush()
                kind = "table"
            if not _TABLE_DELIM.match(line):
                para.append(line)
            elif len(para) == 1:
                table_header = True
            i += 1
            continue
        if kind == "table":
            flush()

        item = _LIST.match(line)
        if item and item.group(3) is not None or (item and not para):
            flush()
            marker = item.group(2)
            rest = item.group(3) or ""
            kind = "list_item"
            para.append(rest if marker in "-*+" else f"{marker} {rest}")
            i += 1
            continue

        if _INDENTED.match(line) and not para:
            flush()
            code = []
            while i < n and (_INDENTED.match(lines[i]) or not lines[i].strip()):
                code.append(lines[i][4:] if lines[i].startswith("    ") else lines[i][1:] if lines[i].startswith("\t") else "")
                i += 1
            b.add("\n".join(code), "code", sections.path, normalize=False)
            continue

        para.append(line.strip())
        i += 1
    flush()
    doc = b.build("markdown", title=title or first_h1 or first_heading, encoding=encoding)
    return doc
