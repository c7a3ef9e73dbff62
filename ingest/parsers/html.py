"""HTML -> ParsedDocument with BeautifulSoup over lxml.

* Dropped: script, style, noscript, template, head (after reading <title>), nav, header and
  footer (unless inside <article>/<main>: an article's own header often holds its h1), svg, iframe, form controls, anything `hidden`/`aria-hidden="true"`/`display:none`, ARIA
  navigation/banner/contentinfo landmarks, and DocBook navigation (`navheader`, `navfooter`, `toc`).
* Content root: <main> (or role="main"), else a single <article>, else <body>.
* h1-h6 -> `heading` blocks that set `section_path`; p, div, blockquote, dt/dd... -> `paragraph`;
  li -> `list_item` (nested lists are separate items); pre -> `code` (verbatim); each table row ->
  a `table` block with its column names ("端口: 22 | 服务: ssh", see `_TableHeaders`); <br> -> line break.
* Whitespace is collapsed as a browser would, except that a source line break between two CJK
  characters disappears (it was only wrapping).
* `title` is <title>, else the first h1.

The walk is iterative, so deeply nested markup cannot exhaust the Python stack.
"""

from __future__ import annotations

import re
import warnings

from ingest.decode import decode_text
from ingest.normalize import normalize_text
from ingest.parsers._builder import DocBuilder
from ingest.parsers.tables import row_line
from ingest.types import ParsedDocument
from rag.text.scripts import NO_SPACE

_DROP_TAGS = frozenset(
    "script style noscript template head nav svg iframe object embed canvas "
    "button select option textarea input datalist meta link title".split()
)
_DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})
_DROP_CLASSES = frozenset({"navheader", "navfooter", "toc", "skip-link", "breadcrumb", "breadcrumbs"})
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body center dd details dialog dir div dl dt fieldset figcaption "
    "figure form hr html legend li main menu ol p section summary table tbody thead tfoot caption ul "
    "h1 h2 h3 h4 h5 h6 pre tr td th".split()
)
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_BR = "\u2028"  # becomes "\n" in normalize_text; survives whitespace collapsing
_CJK_WRAP = re.compile(f"(?<=[{NO_SPACE}])[ \\t\\r\\f]*\\n[ \\t\\r\\n\\f]*(?=[{NO_SPACE}])")
_WS = re.compile(r"[ \t\n\r\f\v]+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)["']""")


def declared_charset(data: bytes) -> str | None:
    """The charset the page declares about itself (XML declaration, else the first <meta> charset)."""
    head = data[:4096]
    m = _XML_ENCODING.match(head) or _META_CHARSET.search(head)
    return m.group(1).decode("ascii", "ignore").lower() if m else None


def decode_html(data: bytes) -> tuple[str, str]:
    """Decode an HTML upload: `ingest.decode.decode_text` with the page's declared charset as a
    candidate. The declaration is checked against the bytes, not trusted: UTF-8 bytes under a wrong
    ``<meta charset="gb18030">`` are read as UTF-8, and a declared charset loses to a reading that is
    clearly more plausible."""
    return decode_text(data, declared=declared_charset(data))


def _collapse(text: str) -> str:
    text = _CJK_WRAP.sub("", text)
    text = _WS.sub(" ", text)
    text = re.sub(f" ?{_BR} ?", _BR, text)
    return text.strip()


def _in_article(tag, memo: dict[int, bool]) -> bool:
    """Whether `tag` has an <article> or <main> ancestor. `memo` (one per parse) maps each tag
    already walked through to the answer for itself, so a whole page costs O(tags): asking each of
    100,000 nested <header>s afresh walked 100,000 ancestors each (hours of the worker's time)."""
    path: list[int] = []
    node = tag.parent
    found = False
    while node is not None:
        known = memo.get(id(node))
        if known is not None:
            found = known
            break
        if node.name in ("article", "main"):
            found = True
            break
        path.append(id(node))
        node = node.parent
    for key in path:
        memo[key] = found
    return found


def _is_hidden(tag, memo: dict[int, bool] | None = None) -> bool:
    if tag.name in ("header", "footer"):
        # The page's banner and footer go; an article's own header (often its h1) stays.
        return not _in_article(tag, {} if memo is None else memo)
    attrs = tag.attrs or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    style = attrs.get("style")
    if style and re.search(r"display\s*:\s*none|visibility\s*:\s*hidden", str(style), re.IGNORECASE):
        return True
    if str(attrs.get("role", "")).lower() in _DROP_ROLES:
        return True
    classes = attrs.get("class") or ()
    if isinstance(classes, str):
        classes = classes.split()
    return any(c in _DROP_CLASSES for c in classes)


def _text_of(tag, *, keep_breaks: bool = True, memo: dict[int, bool] | None = None) -> str:
    """Visible text of a subtree (dropped elements skipped), iteratively; `memo` as for `_in_article`."""
    from bs4 import NavigableString, Tag
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

    skip_types = (Comment, Declaration, Doctype, ProcessingInstruction)
    out: list[str] = []
    stack = [tag]
    while stack:
        node = stack.pop()
        if isinstance(node, NavigableString):
            if not isinstance(node, skip_types):
                out.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        if node is not tag and (node.name in _DROP_TAGS or _is_hidden(node, memo)):
            continue
        if node.name == "br":
            out.append(_BR if keep_breaks else " ")
            continue
        if node is not tag and node.name in _BLOCK_TAGS:
            out.append(" ")
            stack.append(NavigableString(" "))
        stack.extend(reversed(node.contents))
    return "".join(out)


_TABLE_WALK = 4  # tr -> (thead|tbody|tfoot) -> table: a <tr> farther from its table has none


def _span(cell) -> int:
    try:
        return max(1, min(int(str(cell.get("colspan", "1")).strip() or 1), 100))
    except ValueError:
        return 1


class _TableHeaders:
    """Each row of a table as one line with its column names (`ingest.parsers.tables.row_line`).

    A table's header is its <thead> rows, else its first row when that row is all <th>. The header
    rows themselves give no line (their names are in every other row), unless the table has no
    other row. `colspan` is honoured on both sides. Each table's header is worked out once."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[list[str] | None, set[int]]] = {}

    @staticmethod
    def _positions(tr, text_of) -> list[str]:
        out: list[str] = []
        for cell in tr.find_all(["td", "th"], recursive=False):
            out.append(text_of(cell))
            out.extend([""] * (_span(cell) - 1))
        return out

    @staticmethod
    def _table_of(tr):
        node = tr.parent
        for _ in range(_TABLE_WALK):
            if node is None:
                return None
            if node.name == "table":
                return node
            node = node.parent
        return None

    def _header(self, table, text_of) -> tuple[list[str] | None, set[int]]:
        known = self._memo.get(id(table))
        if known is not None:
            return known
        rows = [tr for thead in table.find_all("thead", recursive=False) for tr in thead.find_all("tr", recursive=False)]
        if not rows:
            first = table.find("tr")
            if first is not None and self._table_of(first) is table:
                cells = first.find_all(["td", "th"], recursive=False)
                if cells and all(c.name == "th" for c in cells):
                    rows = [first]
        header = None
        if rows:
            names = [[n for n in self._positions(tr, text_of)] for tr in rows]
            # a header cell spanning columns names each of them
            for tr, row in zip(rows, names):
                pos = 0
                for cell in tr.find_all(["td", "th"], recursive=False):
                    for k in range(1, _span(cell)):
                        row[pos + k] = row[pos]
                    pos += _span(cell)
            width = max(len(r) for r in names)
            header = [" / ".join(dict.fromkeys(r[i] for r in names if i < len(r) and r[i])) for i in range(width)]
        self._memo[id(table)] = (header, {id(tr) for tr in rows})
        return self._memo[id(table)]

    def line(self, tr, text_of) -> str:
        table = self._table_of(tr)
        header, header_rows = self._header(table, text_of) if table is not None else (None, set())
        cells = self._positions(tr, text_of)
        if id(tr) in header_rows:
            alone = tr.find_next_sibling("tr") is None and (
                tr.parent.name != "thead" or tr.parent.find_next_sibling(["tbody", "tr", "tfoot"]) is None)
            return row_line(cells, None) if alone else ""
        return row_line(cells, header)


def parse_html(data: bytes | str, encoding: str | None = None) -> ParsedDocument:
    from bs4 import BeautifulSoup, NavigableString, Tag
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

    if isinstance(data, bytes):
        text, encoding = decode_html(data)
    else:
        text = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # XMLParsedAsHTMLWarning for XHTML: the HTML parser is intended
        soup = BeautifulSoup(text, "lxml")

    title = None
    if soup.title is not None:
        title = " ".join(soup.title.get_text(" ").split()) or None

    root = soup.find("main") or soup.find(attrs={"role": "main"})
    if root is None:
        articles = soup.find_all("article")
        root = articles[0] if len(articles) == 1 else (soup.body or soup)

    b = DocBuilder()
    stack_sections: list[tuple[int, str]] = []
    first_h1: str | None = None
    buf: list[str] = []
    kinds: list[str] = ["paragraph"]
    skip_types = (Comment, Declaration, Doctype, ProcessingInstruction)
    memo: dict[int, bool] = {}  # tag -> has an <article>/<main> ancestor (see `_in_article`)
    headers = _TableHeaders()

    def path() -> tuple[str, ...]:
        return tuple(t for _, t in stack_sections)

    def flush() -> None:
        if buf:
            b.add(_collapse("".join(buf)), kinds[-1], path())
            buf.clear()

    _EXIT = object()
    work: list = [root]
    while work:
        node = work.pop()
        if isinstance(node, tuple) and node[0] is _EXIT:
            flush()
            kinds.pop()
            continue
        if isinstance(node, NavigableString):
            if not isinstance(node, skip_types):
                buf.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if node is not root and (name in _DROP_TAGS or _is_hidden(node, memo)):
            continue
        if name == "br":
            buf.append(_BR)
            continue
        if name in _HEADINGS:
            flush()
            level = _HEADINGS[name]
            htext = " ".join(normalize_text(_text_of(node, keep_breaks=False, memo=memo)).split())
            if htext:
                while stack_sections and stack_sections[-1][0] >= level:
                    stack_sections.pop()
                stack_sections.append((level, htext))
                b.add(htext, "heading", path())
                if level == 1 and first_h1 is None:
                    first_h1 = htext
            continue
        if name == "pre":
            flush()
            b.add(_text_of(node, memo=memo).replace(_BR, "\n"), "code", path())
            continue
        if name == "tr":
            flush()
            b.add(headers.line(node, lambda c: _collapse(_text_of(c, keep_breaks=False, memo=memo))), "table", path())
            continue
        if name in _BLOCK_TAGS:
            flush()
            kinds.append("list_item" if name == "li" else "paragraph" if name != "pre" else "code")
            work.append((_EXIT,))
            work.extend(reversed(node.contents))
            continue
        work.extend(reversed(node.contents))
    flush()
    return b.build("html", title=title or first_h1, encoding=encoding)
