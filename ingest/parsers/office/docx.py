"""DOCX with python-docx: the body in document order.

* paragraphs; a heading (style "Heading N"/"Title", or an outline level in the paragraph or its
  style) sets the section path; a numbered or bulleted paragraph (``w:numPr``, or a "List" style)
  is a list item;
* tables become rows with their header names (`ingest.parsers.tables`); a horizontally merged cell
  counts once; nested tables follow their row, walked with an explicit stack (no recursion);
* headers and footers are not part of the body and are dropped; footnotes and endnotes are kept at
  the end, each as "[n] text";
* macros (.docm) are never run: only the XML text is read.
"""

from __future__ import annotations

import re

from ingest.parsers.office.common import Out, Refused, library_errors

_HEADING_STYLE = re.compile(r"^(?:heading|标题|標題)\s*(\d)$", re.IGNORECASE)
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MACRO_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"
_DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
MAX_TABLE_DEPTH = 32


def _open(path: str):
    """The document of a .docx or .docm (python-docx's `Document()` refuses the macro-enabled
    content type; the part is the same WordprocessingML, so it is read as one)."""
    from docx.opc.part import PartFactory
    from docx.package import Package
    from docx.parts.document import DocumentPart

    PartFactory.part_type_for.setdefault(_MACRO_MAIN, DocumentPart)
    with library_errors():
        try:
            part = Package.open(path).main_document_part
        except Exception as exc:  # libxml2 stops at 256 levels: tables in tables in tables
            if "Excessive depth" in str(exc):
                raise Refused("parse_resource_limit", "XML nested more than 256 levels deep") from None
            raise
        if part.content_type not in (_DOCX_MAIN, _MACRO_MAIN):
            raise Refused("document_malformed", f"not a Word document (content type {part.content_type})")
        return part.document


def _heading_level(p) -> int | None:
    try:
        name = p.style.name if p.style is not None else ""
    except Exception:
        name = ""
    if name and name.lower() == "title":
        return 1
    m = _HEADING_STYLE.match(name or "")
    if m:
        return int(m.group(1))
    lvl = p._p.find(f"{_W}pPr/{_W}outlineLvl")
    if lvl is not None:
        try:
            value = int(lvl.get(f"{_W}val"))
        except (TypeError, ValueError):
            return None
        return value + 1 if 0 <= value < 9 else None
    return None


def _is_list(p) -> bool:
    if p._p.find(f"{_W}pPr/{_W}numPr") is not None:
        return True
    try:
        return bool(p.style is not None and p.style.name and p.style.name.lower().startswith("list"))
    except Exception:
        return False


def _rows(table) -> tuple[list[list[str]], list]:
    """The cell texts of each row (a merged cell once) and the tables nested in its cells."""
    rows: list[list[str]] = []
    nested: list = []
    for row in table.rows:
        seen: set[int] = set()
        cells: list[str] = []
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append("\n".join(p.text for p in cell.paragraphs))
            nested.extend(cell.tables)
        rows.append(cells)
    return rows, nested


def _tables(out: Out, table, path: tuple[str, ...]) -> None:
    stack = [(table, 0)]
    while stack:
        t, depth = stack.pop()
        if depth > MAX_TABLE_DEPTH:
            raise Refused("parse_resource_limit", f"tables nested more than {MAX_TABLE_DEPTH} deep")
        rows, nested = _rows(t)
        out.add_table(rows, path)
        stack.extend((n, depth + 1) for n in reversed(nested))


def _notes(doc, out: Out) -> None:
    """Footnotes and endnotes, each "[n] text", read from their parts with python-docx's safe parser."""
    from docx.oxml.parser import parse_xml

    for rel in doc.part.rels.values():
        if rel.is_external or not rel.reltype.endswith(("/footnotes", "/endnotes")):
            continue
        root = parse_xml(rel.target_part.blob)
        for note in root.iterchildren(f"{_W}footnote", f"{_W}endnote"):
            if note.get(f"{_W}type") in ("separator", "continuationSeparator", "continuationNotice"):
                continue
            text = " ".join("".join(t.text or "" for t in p.iter(f"{_W}t")) for p in note.iter(f"{_W}p")).strip()
            if text:
                out.add(f"[{note.get(f'{_W}id')}] {text}")


def extract_docx(path: str, out: Out) -> None:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    doc = _open(path)
    sections: list[tuple[int, str]] = []
    first_heading = None
    body = doc.element.body
    for child in body.iterchildren():
        if child.tag == f"{_W}p":
            p = Paragraph(child, doc)
            text = p.text
            level = _heading_level(p)
            if level is not None and text.strip():
                heading = " ".join(text.split())
                while sections and sections[-1][0] >= level:
                    sections.pop()
                sections.append((level, heading))
                out.add(heading, "heading", tuple(t for _, t in sections))
                first_heading = first_heading or heading
            else:
                out.add(text, "list_item" if _is_list(p) else "paragraph", tuple(t for _, t in sections))
        elif child.tag == f"{_W}tbl":
            _tables(out, Table(child, doc), tuple(t for _, t in sections))
    _notes(doc, out)
    title = (doc.core_properties.title or "").strip()
    out.title = title or first_heading
