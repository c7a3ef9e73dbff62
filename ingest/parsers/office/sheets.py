"""XLSX (openpyxl, read-only streaming) and CSV (the csv module): each sheet a section, rows as text.

* Each sheet is one page (1-based, in workbook order) whose section path is the sheet's name; a
  CSV is one sheet without a name.
* The first non-empty row is the header when it looks like one (`tables.looks_like_header`); every
  later row is one `table` block, "row N: header: value | header: value", N being the row's number
  in the sheet, so a citation names the sheet (section path) and the row.
* Formulas give their cached values (``data_only=True``: what Excel last computed; nothing is
  evaluated). A merged range's value fills every cell of the range, so each row carries it.
* Bounded: rows are counted as they stream, empty ones included (a sheet of a million empty rows
  costs nothing to send and a lot to walk), at most `max_rows` per file (`sheet_too_large`);
  columns past `MAX_COLUMNS` are not read. openpyxl parses with defusedxml when it is installed
  (it is a dependency here), and macros (.xlsm) are never loaded (``keep_vba=False``).
"""

from __future__ import annotations

import datetime as dt

from ingest.parsers.office.common import Out, Refused, library_errors
from ingest.parsers.tables import clean_cell, looks_like_header, row_line

MAX_COLUMNS = 256
CSV_SNIFF_BYTES = 64 * 1024


def cell_text(value: object) -> str:
    """A cell value as people read it: 22.0 -> "22", a midnight datetime -> its date."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return clean_cell(value)


class _Rows:
    """Turns a sheet's rows into blocks, counting every row against the file's limit."""

    def __init__(self, out: Out, path: tuple[str, ...], page: int | None, budget: list[int]) -> None:
        self.out, self.path, self.page, self.budget = out, path, page, budget
        self.header: list[str] | None = None
        self.seen_first = False

    def feed(self, number: int, cells: list[str]) -> None:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise Refused("sheet_too_large", f"more than {self.out.limits.max_rows:,} rows")
        while cells and not cells[-1]:
            cells.pop()
        if not any(cells):
            return
        if not self.seen_first:
            self.seen_first = True
            if looks_like_header(cells):
                self.header = cells
                return
        line = row_line(cells, self.header)
        if line:
            self.out.add(f"row {number}: {line}", "table", self.path, self.page)


def _prescan(path: str, max_rows: int) -> dict[str, list[tuple[int, int, int, int]]]:
    """One streaming pass (lxml, C speed) over every worksheet's XML before openpyxl opens the file.

    It refuses a workbook over `max_rows` rows at once: openpyxl itself spends seconds of Python per
    million empty rows (even opening a sheet without a <dimension> reads all of it) before the
    first row would reach our count. And it returns each sheet's merged ranges (min_row, min_col,
    max_row, max_col), which the read-only worksheet does not parse, by member name.
    """
    import zipfile

    from lxml import etree
    from openpyxl.utils.cell import range_boundaries

    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    merged: dict[str, list[tuple[int, int, int, int]]] = {}
    total = 0
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                continue
            ranges = merged.setdefault(name, [])
            last = 0
            with zf.open(name) as src:
                for _, el in etree.iterparse(src, events=("end",), tag=(f"{ns}row", f"{ns}mergeCell"),
                                             resolve_entities=False, no_network=True, huge_tree=False):
                    if el.tag == f"{ns}row":
                        r = el.get("r")
                        step = int(r) - last if r and r.isdigit() and int(r) > last else 1
                        last += step
                        total += step
                        if total > max_rows:
                            raise Refused("sheet_too_large", f"more than {max_rows:,} rows")
                    elif el.get("ref"):
                        try:
                            c1, r1, c2, r2 = range_boundaries(el.get("ref"))
                        except (ValueError, TypeError):
                            continue
                        if r1 and c1 and r2 and c2 and (r2 - r1 + 1) * (c2 - c1 + 1) <= 1_000_000:
                            ranges.append((r1, c1, r2, c2))
                    el.clear()
    return merged


def extract_xlsx(path: str, out: Out) -> None:
    import openpyxl

    with library_errors():
        merged = _prescan(path, out.limits.max_rows)
        # a file object: openpyxl refuses a path whose name does not end in .xlsx/.xlsm
        wb = openpyxl.load_workbook(open(path, "rb"), read_only=True, data_only=True, keep_vba=False, keep_links=False)
        try:
            budget = [out.limits.max_rows]
            for number, ws in enumerate(wb.worksheets, start=1):
                if hasattr(ws, "iter_rows"):  # not a chartsheet
                    _sheet(ws, merged.get(ws._worksheet_path.lstrip("/"), []), _Rows(out, (ws.title,), number, budget))
        finally:
            wb.close()
        title = (wb.properties.title or "").strip() if wb.properties is not None else ""
    out.title = title or None


def _sheet(ws, merged: list[tuple[int, int, int, int]], rows: _Rows) -> None:
    """Stream one sheet's rows into `rows`, a merged range's value copied to each of its cells."""
    anchors = {(r1, c1): (r1, c1, r2, c2) for r1, c1, r2, c2 in merged}
    fills: dict[tuple[int, int], object] = {}
    width = min(ws.max_column or MAX_COLUMNS, MAX_COLUMNS)
    for r, values in enumerate(ws.iter_rows(values_only=True, max_col=width), start=1):
        values = list(values[:MAX_COLUMNS])
        for c in range(1, len(values) + 1):
            span = anchors.get((r, c))
            if span is not None and values[c - 1] is not None:
                for rr in range(span[0], span[2] + 1):
                    for cc in range(span[1], min(span[3], MAX_COLUMNS) + 1):
                        fills[(rr, cc)] = values[c - 1]
        if fills:
            for c in range(1, len(values) + 1):
                if values[c - 1] is None and (r, c) in fills:
                    values[c - 1] = fills.pop((r, c))
        rows.feed(r, [cell_text(v) for v in values])


def extract_csv(path: str, out: Out) -> None:
    import csv
    import io

    from ingest.decode import decode_text

    with open(path, "rb") as fh:
        data = fh.read()
    text, _ = decode_text(data)
    sample = text[:CSV_SNIFF_BYTES]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    csv.field_size_limit(1 << 20)
    rows = _Rows(out, (), None, [out.limits.max_rows])
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text, newline=""), dialect), start=1):
            rows.feed(number, [clean_cell(c) for c in row[:MAX_COLUMNS]])
    except csv.Error as exc:
        raise Refused("document_malformed", f"CSV: {exc}") from None
