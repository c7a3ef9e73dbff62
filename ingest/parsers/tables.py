"""Tables as rows: one line per row, each value with its column's header ("端口: 22 | 服务: ssh").

Why: a question about one row ("which port does ssh use?") must retrieve that row, and a row read
alone ("22 | ssh") does not say what its numbers are. Repeating the header names in every row makes
each row a self-contained passage, whichever chunk it lands in. Every parser with tables (HTML,
Markdown, DOCX, XLSX, CSV, PPTX) goes through `row_lines`.
"""

from __future__ import annotations

import re

_WS = re.compile(r"\s+")
_NUMBERISH = re.compile(r"^[\s\d.,:%+\-/()¥$€£]*$")
SEPARATOR = " | "


def clean_cell(text: object) -> str:
    """A cell's text on one line (a row is one line)."""
    return _WS.sub(" ", str(text or "")).strip()


def looks_like_header(row: list[str]) -> bool:
    """Whether a first row names its columns: two or more cells, all filled, none a bare number or date.
    Used where the format does not mark headers (DOCX, XLSX, CSV); HTML and Markdown mark them."""
    cells = [clean_cell(c) for c in row]
    return len(cells) >= 2 and all(cells) and not any(_NUMBERISH.match(c) for c in cells)


def row_line(row: list[str], header: list[str] | None) -> str:
    """One row as text: "header: value" for each filled cell (a cell without a header stays bare)."""
    parts = []
    for i, raw in enumerate(row):
        value = clean_cell(raw)
        if not value:
            continue
        name = clean_cell(header[i]) if header is not None and i < len(header) else ""
        parts.append(f"{name}: {value}" if name and name != value else value)
    return SEPARATOR.join(parts)


def row_lines(rows: list[list[str]], header: list[str] | None = None) -> list[str]:
    """Each row of a table (header row excluded when `header` is given) as one line; empty rows dropped.
    With no header, cells are joined with " | " and the first row is kept as it is."""
    out = []
    for row in rows:
        line = row_line(row, header)
        if line:
            out.append(line)
    return out


def table_lines(rows: list[list[str]], *, header_rows: int | None = None) -> list[str]:
    """Lines of a whole table. `header_rows`: how many leading rows are headers (HTML <th>/<thead>,
    Markdown's row above the delimiter); None guesses with `looks_like_header`. Several header rows
    are joined per column ("2024 / Q1")."""
    rows = [r for r in rows if any(clean_cell(c) for c in r)]
    if not rows:
        return []
    if header_rows is None:
        header_rows = 1 if len(rows) >= 2 and looks_like_header(rows[0]) else 0
    if header_rows <= 0 or header_rows >= len(rows):
        return row_lines(rows)
    width = max(len(r) for r in rows[:header_rows])
    header = []
    for i in range(width):
        names: list[str] = []
        for r in rows[:header_rows]:
            name = clean_cell(r[i]) if i < len(r) else ""
            if name and name not in names:
                names.append(name)
        header.append(" / ".join(names))
    return row_lines(rows[header_rows:], header)
