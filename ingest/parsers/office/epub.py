"""EPUB with ebooklib: the spine's XHTML documents in reading order, each read by the HTML parser
(`ingest.parsers.html`), so headings, lists and tables behave as they do in HTML. The container was
checked first (`zipcheck`, DOCTYPEs allowed, entity declarations not)."""

from __future__ import annotations

from ingest.parsers.office.common import Out, library_errors


def extract_epub(path: str, out: Out) -> None:
    import ebooklib
    from ebooklib import epub

    from ingest.parsers.html import parse_html

    with library_errors("EPUB: "):
        book = epub.read_epub(path, options={"ignore_ncx": True})
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        out.add_parsed(parse_html(item.get_content()))
    titles = book.get_metadata("DC", "title")
    out.title = str(titles[0][0]).strip() if titles and titles[0] and titles[0][0] else None
