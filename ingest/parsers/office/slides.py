"""PPTX with python-pptx: one page per slide, its title as the section ("Slide 3: Title").

* text boxes and placeholders in reading order: top to bottom, then left to right (by their
  position on the slide; a group's shapes are read in place, with an explicit stack);
* a paragraph indented one level or more is a list item;
* tables become rows with their header names;
* the speaker notes follow the slide under the section path (slide, "Notes");
* macros (.pptm) are never run: python-pptx reads the XML only.
"""

from __future__ import annotations

from ingest.parsers.office.common import Out, Refused, library_errors

MAX_GROUP_DEPTH = 32


def _ordered(shapes) -> list:
    return sorted(shapes, key=lambda s: ((s.top or 0), (s.left or 0)))


def _walk(out: Out, shapes, path: tuple[str, ...], page: int, skip_id: int | None) -> None:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    stack = [(shape, 0) for shape in reversed(_ordered(shapes))]
    while stack:
        shape, depth = stack.pop()
        if skip_id is not None and shape.shape_id == skip_id and depth == 0:
            continue
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            if depth >= MAX_GROUP_DEPTH:
                raise Refused("parse_resource_limit", f"shapes grouped more than {MAX_GROUP_DEPTH} deep")
            stack.extend((s, depth + 1) for s in reversed(_ordered(shape.shapes)))
            continue
        if getattr(shape, "has_table", False) and shape.has_table:
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
            out.add_table(rows, path, page)
            continue
        if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            for p in shape.text_frame.paragraphs:
                out.add(p.text, "list_item" if p.level > 0 else "paragraph", path, page)


def extract_pptx(path: str, out: Out) -> None:
    import pptx

    with library_errors():
        prs = pptx.Presentation(path)
    first_title = None
    for number, slide in enumerate(prs.slides, start=1):
        title_shape = slide.shapes.title
        title = " ".join((title_shape.text_frame.text if title_shape is not None else "").split())
        first_title = first_title or title or None
        path = (f"Slide {number}: {title}" if title else f"Slide {number}",)
        out.add(title, "heading", path, number)
        _walk(out, slide.shapes, path, number, title_shape.shape_id if title_shape is not None else None)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None:
                for p in notes.paragraphs:
                    out.add(p.text, "paragraph", path + ("Notes",), number)
    title = (prs.core_properties.title or "").strip()
    out.title = title or first_title
