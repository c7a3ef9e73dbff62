"""The hostile corpus of issue #12, generated: nothing here is a committed binary.

`corpus()` returns the cases; each builds its bytes only when it is sent (`Case.files()`), so the
whole corpus never sits in memory at once. A case is one upload request:

* `make` -> the files of the request, ``[(name, data)]``; a `bytes` name is sent byte for byte in
  a hand-built multipart body (`raw_multipart`), a `str` name through httpx;
* or `request` -> a `RawRequest` for multipart abuse (headers and body exactly as sent, a
  Content-Length that may lie, a body that may be cut short);
* `expect`: the outcomes allowed, each ``"done"``, or the error code of the refused upload (4xx) or
  of the failed job;
* `text`: for a document that may end `done`, what its chunks must spell (whitespace ignored), so
  that mojibake stored as done fails the test.

The limits the server runs with are below (`SERVER_ENV`); the sizes of the cases are chosen
against them (a "degenerate" file is just under `MAX_UPLOAD_BYTES`, a bomb is over
`MAX_DOCUMENT_CHARS` of text, ...).
"""

from __future__ import annotations

import codecs
import io
import random
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from tests.helpers_ingest import make_pdf, text_stream, zlib_zeros
from tests.test_decoding_corpus import (JA_LONG, JA_SHORT, KO_LONG, KO_SHORT, ZH_CN_LONG, ZH_CN_SHORT, ZH_TW_LONG,
                                        ZH_TW_SHORT)

# --------------------------------------------------------------------------- limits

MAX_UPLOAD_BYTES = 3_000_000
MAX_REQUEST_BYTES = 4_000_000
MAX_FILES_PER_REQUEST = 5
MAX_PDF_PAGES = 50
MAX_DOCUMENT_CHARS = 20_000
MAX_DOCUMENT_CHUNKS = 60
PARSE_CPU_SECONDS = 5
PARSE_WALL_SECONDS = 15
PARSE_MEMORY_MB = 512
MAX_EMBED_SECONDS = 60
MAX_ARCHIVE_BYTES = 50 << 20
MAX_ARCHIVE_MEMBERS = 2000
MAX_SHEET_ROWS = 20_000
MAX_ATTACHMENTS = 100
MAX_ATTACHMENT_DEPTH = 3

SERVER_ENV = {
    "RAG_LOAD_GENERATOR": "false",
    "RAG_EMBEDDER": "all-minilm-l6-v2",
    "RAG_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    "RAG_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
    "RAG_MAX_FILES_PER_REQUEST": str(MAX_FILES_PER_REQUEST),
    "RAG_MAX_PDF_PAGES": str(MAX_PDF_PAGES),
    "RAG_MAX_DOCUMENT_CHARS": str(MAX_DOCUMENT_CHARS),
    "RAG_MAX_DOCUMENT_CHUNKS": str(MAX_DOCUMENT_CHUNKS),
    "RAG_PARSE_CPU_SECONDS": str(PARSE_CPU_SECONDS),
    "RAG_PARSE_WALL_SECONDS": str(PARSE_WALL_SECONDS),
    "RAG_PARSE_MEMORY_MB": str(PARSE_MEMORY_MB),
    "RAG_MAX_EMBED_SECONDS": str(MAX_EMBED_SECONDS),
    "RAG_MAX_ARCHIVE_BYTES": str(MAX_ARCHIVE_BYTES),
    "RAG_MAX_ARCHIVE_MEMBERS": str(MAX_ARCHIVE_MEMBERS),
    "RAG_MAX_SHEET_ROWS": str(MAX_SHEET_ROWS),
    "RAG_MAX_ATTACHMENTS": str(MAX_ATTACHMENTS),
    "RAG_MAX_ATTACHMENT_DEPTH": str(MAX_ATTACHMENT_DEPTH),
    # the corpus sends ~100 MB and polls its jobs: per-key rates are not under test here
    "RAG_UPLOAD_BYTES_PER_MINUTE": str(10 << 30),
    "RAG_REQUESTS_PER_MINUTE": "1000000",
}

REFERENCE_PDF = Path("/usr/share/debian-reference/debian-reference.en.pdf")

# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class RawRequest:
    """An upload request exactly as it goes on the wire (see the test's `send_raw`)."""

    headers: dict[str, str]
    body: bytes
    content_length: int | None = None  # None: the true length; else this (lying) value
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length
    close_after_body: bool = False  # half-close the socket after the body (a body shorter than declared)


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    expect: frozenset[str]
    make: Callable[[], list[tuple[str | bytes, bytes]]] | None = None
    request: Callable[[], RawRequest] | None = None
    text: str | None = None
    stored_name: str | None = None  # the file name a done document must be listed under

    def files(self) -> list[tuple[str | bytes, bytes]]:
        assert self.make is not None
        return self.make()


def _one(name: str | bytes, data: bytes | Callable[[], bytes]) -> Callable[[], list[tuple[str | bytes, bytes]]]:
    return lambda: [(name, data() if callable(data) else data)]


def raw_multipart(files: list[tuple[bytes, bytes]], boundary: bytes = b"----hostile-boundary-5b1e",
                  field: bytes = b"files") -> tuple[bytes, str]:
    """(body, content type) of a multipart body whose file names are sent byte for byte."""
    body = b""
    for name, data in files:
        body += (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + field + b"\"; filename=\""
                 + name + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    body += b"--" + boundary + b"--\r\n"
    return body, "multipart/form-data; boundary=" + boundary.decode("latin-1")


def rng(seed: int) -> random.Random:
    return random.Random(f"hostile-{seed}")


def random_bytes(seed: int, n: int, low: int = 0, high: int = 255) -> bytes:
    """`n` reproducible random bytes, each in [low, high]."""
    data = rng(seed).randbytes(n)
    if (low, high) == (0, 255):
        return data
    return data.translate(bytes(low + b % (high - low + 1) for b in range(256)))


# --------------------------------------------------------------------------- texts

EN_LONG = (
    "The package manager keeps a list of every package that is installed on the system, together with "
    "the version and the files that belong to it. When a new release of a package is published, the "
    "manager downloads the archive, checks its signature against the keys the administrator trusts, "
    "and replaces the old files in one step, so that a power cut in the middle of an upgrade never "
    "leaves half of a program on the disk. Configuration files are treated differently: a file the "
    "administrator has changed is never overwritten without asking, and the new version is saved "
    "beside it for comparison. Pinning lets a machine follow the stable release for most packages "
    "while taking a few newer ones from another suite, with priorities that decide which version wins."
)
RU_LONG = (
    "Менеджер пакетов хранит список всех установленных пакетов вместе с их версиями и файлами. "
    "Когда выходит новая версия пакета, он загружает архив, проверяет подпись по ключам, которым "
    "доверяет администратор, и заменяет старые файлы за один шаг, поэтому отключение питания во "
    "время обновления никогда не оставляет на диске половину программы. Изменённые администратором "
    "файлы настроек не перезаписываются без вопроса, а новая версия сохраняется рядом для сравнения."
)
RU_SHORT = "Сегодня в три часа собрание."
FR_LONG = (
    "Le gestionnaire de paquets conserve la liste de tous les paquets installés sur le système, avec "
    "leur version et les fichiers qui leur appartiennent. Lorsqu'une nouvelle version est publiée, il "
    "télécharge l'archive, vérifie sa signature à l'aide des clés auxquelles l'administrateur fait "
    "confiance, puis remplace les anciens fichiers en une seule étape : une coupure de courant pendant "
    "la mise à jour ne laisse jamais la moitié d'un programme sur le disque. Les fichiers de "
    "configuration modifiés par l'administrateur ne sont jamais écrasés sans son accord préalable."
)
DE_SHORT = "Größere Änderungen: ß, ä, ö, ü."


def note(case_id: str) -> bytes:
    """A small, valid, unique text document (distinct bytes: no dedupe between cases)."""
    return f"A short note about apt pinning, filed as {case_id!r}. It has one sentence more.\n".encode()


# --------------------------------------------------------------------------- PDF building


def pdf_from_objects(objects: list[bytes], *, root: int = 1, header: bytes = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
                     trailer_extra: bytes = b"", size: int | None = None, xref: bool = True) -> bytes:
    """A PDF of `objects` (object i+1 is objects[i]) with an exact xref table, or none (`xref=False`)."""
    out = bytearray(header)
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    start = len(out)
    n = len(objects) + 1
    if xref:
        out += b"xref\n0 %d\n0000000000 65535 f \n" % n
        for off in offsets:
            out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root %d 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        size if size is not None else n, root, trailer_extra, start)
    return bytes(out)


def stream(body: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d%s >>\nstream\n" % (len(body), extra) + body + b"\nendstream"


FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
SAY = text_stream("The quick brown fox jumps over the lazy dog.")
FOX = "quick brown fox jumps over the lazy dog"


def one_page_pdf(page_extra: bytes = b"", contents: bytes = SAY, resources: bytes = b"/Font << /F1 4 0 R >>",
                 more: list[bytes] | None = None, pages_extra: bytes = b"") -> bytes:
    """Catalog 1, Pages 2, Page 3, Font 4, Contents 5, then `more` (objects 6...)."""
    return pdf_from_objects([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1%s >>" % pages_extra,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << %s >> /Contents 5 0 R%s >>"
        % (resources, page_extra),
        FONT,
        stream(contents),
        *(more or []),
    ])


def flate_bomb_pdf(total: int, layers: int = 1, pages: int = 1) -> bytes:
    data = zlib_zeros(total)
    for _ in range(layers - 1):
        data = zlib.compress(data, 9)
    filt = b"/FlateDecode" if layers == 1 else b"[" + b" ".join([b"/FlateDecode"] * layers) + b"]"
    return make_pdf([data] * pages, raw_filter=filt)


def filtered_bomb_pdf(total: int, wrap: str) -> bytes:
    """A Flate bomb behind an ASCII filter: [/ASCIIHexDecode /FlateDecode] or [/ASCII85Decode /FlateDecode]."""
    import base64

    data = zlib_zeros(total)
    if wrap == "hex":
        return make_pdf([data.hex().encode() + b">"], raw_filter=b"[/ASCIIHexDecode /FlateDecode]")
    return make_pdf([base64.a85encode(data) + b"~>"], raw_filter=b"[/ASCII85Decode /FlateDecode]")


def xobject_bomb_pdf(total: int) -> bytes:
    """The page draws a form XObject whose stream is a Flate bomb."""
    bomb = zlib_zeros(total)
    return one_page_pdf(contents=b"/X0 Do", resources=b"/Font << /F1 4 0 R >> /XObject << /X0 6 0 R >>",
                        more=[stream(bomb, b" /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Filter /FlateDecode")])


def tounicode_bomb_pdf(total: int) -> bytes:
    """The page's font has a /ToUnicode CMap that is a Flate bomb (read when text is extracted)."""
    bomb = zlib_zeros(total)
    return pdf_from_objects([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        stream(SAY),
        stream(bomb, b" /Filter /FlateDecode"),
    ])


def xref_stream_bomb_pdf(total: int) -> bytes:
    """The cross-reference is a stream (/Type /XRef) that inflates to `total` zero bytes."""
    bomb = zlib_zeros(total)
    head = b"%PDF-1.7\n"
    obj = b"1 0 obj\n" + stream(bomb, b" /Type /XRef /Size 2 /W [1 4 2] /Root 1 0 R /Filter /FlateDecode") + b"\nendobj\n"
    return head + obj + b"startxref\n%d\n%%%%EOF\n" % len(head)


def contents_amplification_pdf(refs: int, inflated: int = 4 << 20) -> bytes:
    """/Contents is an array naming one compressed stream `refs` times: text extraction reads
    `refs` x `inflated` bytes of operators out of a few KB."""
    body = (b"BT /F1 12 Tf 72 720 Td (lol) Tj ET\n" * (inflated // 35 + 1))[:inflated]
    return one_page_pdf(page_extra=b"", more=[stream(zlib.compress(body, 9), b" /Filter /FlateDecode")]).replace(
        b"/Contents 5 0 R", b"/Contents [" + b"6 0 R " * refs + b"]")


def laughs_pdf(levels: int, fanout: int = 10) -> bytes:
    """"Billion laughs": form X1 draws X2 `fanout` times, ... the last one shows text."""
    more = []
    first = 6
    for i in range(levels):
        me = first + i
        if i == levels - 1:
            body, res = b"BT /F1 12 Tf (lol) Tj ET", b"/Font << /F1 4 0 R >>"
        else:
            body, res = b"/X Do " * fanout, b"/XObject << /X %d 0 R >>" % (me + 1)
        more.append(stream(body, b" /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << %s >>" % res))
    return one_page_pdf(contents=b"/X Do", resources=b"/Font << /F1 4 0 R >> /XObject << /X 6 0 R >>", more=more)


def text_bomb_pdf(chars_per_page: int, pages: int, line_chars: int = 81) -> bytes:
    """Legitimate-looking text, a lot of it: each page shows `chars_per_page` letters (compressed),
    in lines of `line_chars` (one Tj operator each)."""
    words = b"lorem ipsum dolor sit amet "
    line = b"(" + (words * (line_chars // len(words) + 1))[:line_chars] + b") Tj T*\n"
    body = b"BT /F1 10 Tf 72 720 Td 12 TL\n" + line * (chars_per_page // line_chars + 1) + b"ET"
    return make_pdf([body] * pages)


def runlength_bomb_pdf(total: int) -> bytes:
    """RunLengthDecode: 2 bytes -> 128 bytes; about `total` zero bytes."""
    return make_pdf([b"\x81\x00" * (total // 128) + b"\x80"], raw_filter=b"/RunLengthDecode")


def encrypted_pdf(algorithm: str, user: str, owner: str = "owner-pw") -> bytes:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(make_pdf([text_stream(f"Minutes of the board, sealed with {algorithm}.")])))
    writer = pypdf.PdfWriter()
    writer.append(reader)
    writer.encrypt(user_password=user, owner_password=owner, algorithm=algorithm)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def blank_pdf(pages: int) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


@lru_cache(maxsize=1)
def real_pdf() -> bytes:
    """Six pages of the Debian Reference (real fonts, real content streams), rewritten by pypdf;
    a generated 6-page PDF where the package is not installed."""
    if not REFERENCE_PDF.is_file():
        return make_pdf([text_stream(*(f"Page {p}, line {i}: a sentence about apt pinning." for i in range(40)))
                         for p in range(6)])
    import pypdf

    reader = pypdf.PdfReader(str(REFERENCE_PDF))
    writer = pypdf.PdfWriter()
    for i in range(28, 34):
        writer.add_page(reader.pages[i])
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def nested(depth: int, open_: bytes, close: bytes, inner: bytes = b"0") -> bytes:
    return open_ * depth + inner + close * depth


# --------------------------------------------------------------------------- the corpus

ANY_PDF_FAILURE = frozenset({"pdf_malformed", "pdf_no_text", "pdf_resource_limit", "pdf_too_many_pages"})
TEXT_OR_REFUSAL = frozenset({"done", "undecodable_text"})
BOUNDED = frozenset({"done", "document_too_long", "too_many_chunks", "repetitive_text", "no_text", "empty_file"})
BINARY = frozenset({"unsupported_type", "undecodable_text"})


def pdf_cases() -> list[Case]:
    c: list[Case] = []
    bomb = frozenset({"pdf_resource_limit"})

    def add(id_: str, expect, make, text: str | None = None, name: str = "") -> None:
        c.append(Case("pdf/" + id_, "pdf", frozenset(expect), _one(name or id_.replace("/", "-") + ".pdf", make), text=text))

    # decompression bombs: sizes, layers, places
    for total, layers in ((96 << 20, 1), (256 << 20, 1), (1 << 30, 1), (2 << 30, 2), (4 << 30, 2), (16 << 30, 3)):
        add(f"flate-bomb-{total >> 20}m-x{layers}", bomb, lambda t=total, l=layers: flate_bomb_pdf(t, l))
    add("flate-bomb-96m-x5-pages", bomb, lambda: flate_bomb_pdf(96 << 20, 1, pages=5))
    add("flate-bomb-hex", bomb, lambda: filtered_bomb_pdf(96 << 20, "hex"))
    add("flate-bomb-ascii85", bomb, lambda: filtered_bomb_pdf(96 << 20, "a85"))
    add("flate-bomb-form-xobject", {"pdf_resource_limit", "pdf_no_text"}, lambda: xobject_bomb_pdf(256 << 20))
    add("flate-bomb-tounicode", bomb, lambda: tounicode_bomb_pdf(256 << 20))
    add("flate-bomb-xref-stream", {"pdf_resource_limit", "pdf_malformed"}, lambda: xref_stream_bomb_pdf(256 << 20))
    add("runlength-bomb", {"pdf_resource_limit", "pdf_no_text"}, lambda: runlength_bomb_pdf(160 << 20))
    add("contents-amplification", bomb, lambda: contents_amplification_pdf(20_000))
    add("billion-laughs-xobjects", {"pdf_resource_limit", "done", "repetitive_text"}, lambda: laughs_pdf(10))
    add("text-bomb-one-page", {"pdf_resource_limit", "document_too_long"}, lambda: text_bomb_pdf(30_000_000, 1))
    add("text-bomb-40-pages", {"pdf_resource_limit", "document_too_long"}, lambda: text_bomb_pdf(500_000, 40))
    add("text-bomb-24m-chars", {"pdf_resource_limit", "document_too_long"},
        lambda: text_bomb_pdf(8_000_000, 3, line_chars=1_000_000))
    add("text-bomb-21m-chars", {"pdf_resource_limit", "document_too_long"},
        lambda: text_bomb_pdf(7_000_000, 3, line_chars=1_000_000))

    # reference cycles
    cyc = ANY_PDF_FAILURE | {"done"}
    add("cycle-pages-own-kid", cyc, lambda: one_page_pdf().replace(b"/Kids [3 0 R]", b"/Kids [2 0 R 3 0 R]"), text=FOX)
    add("cycle-pages-only-own-kid", cyc, lambda: one_page_pdf().replace(b"/Kids [3 0 R]", b"/Kids [2 0 R]"), text=FOX)
    add("cycle-kids-a-b-a", cyc, lambda: one_page_pdf(
        more=[b"<< /Type /Pages /Kids [7 0 R] /Count 1 /Parent 2 0 R >>",
              b"<< /Type /Pages /Kids [6 0 R] /Count 1 /Parent 6 0 R >>"]).replace(b"/Kids [3 0 R]", b"/Kids [6 0 R]"), text=FOX)
    add("cycle-parent-is-self", cyc, lambda: one_page_pdf().replace(b"/Parent 2 0 R", b"/Parent 3 0 R"), text=FOX)
    add("cycle-parent-loop", cyc, lambda: one_page_pdf(
        pages_extra=b" /Parent 6 0 R", more=[b"<< /Type /Pages /Kids [2 0 R] /Count 1 /Parent 2 0 R >>"]), text=FOX)
    add("cycle-root-pages-is-catalog", cyc, lambda: one_page_pdf().replace(b"/Pages 2 0 R >>", b"/Pages 1 0 R >>", 1), text=FOX)
    add("cycle-object-is-its-own-ref", cyc, lambda: one_page_pdf(more=[b"6 0 R"]).replace(b"/Contents 5 0 R", b"/Contents 6 0 R"), text=FOX)
    add("cycle-length-refers-to-itself", cyc, lambda: one_page_pdf(more=[b"6 0 R"]).replace(
        b"<< /Length %d >>" % len(SAY), b"<< /Length 6 0 R >>"), text=FOX)
    add("cycle-form-draws-itself", cyc, lambda: one_page_pdf(
        contents=b"/X0 Do", resources=b"/Font << /F1 4 0 R >> /XObject << /X0 6 0 R >>",
        more=[stream(b"BT /F1 12 Tf (again) Tj ET /X0 Do",
                     b" /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> /XObject << /X0 6 0 R >> >>")]))
    add("cycle-resources-dict", cyc, lambda: one_page_pdf(
        resources=b"/Font << /F1 4 0 R >> /Self 6 0 R", more=[b"<< /Font << /F1 4 0 R >> /Self 6 0 R /Again [6 0 R 6 0 R] >>"]), text=FOX)
    add("cycle-xref-prev-is-itself", cyc, lambda: _prev_loop(self_loop=True), text=FOX)
    add("cycle-xref-prev-ping-pong", cyc, lambda: _prev_loop(self_loop=False), text=FOX)
    add("cycle-outlines", {"done"}, lambda: one_page_pdf(more=[
        b"<< /Type /Outlines /First 7 0 R /Last 7 0 R /Count 1 >>",
        b"<< /Title (loop) /Parent 6 0 R /Next 7 0 R /Prev 7 0 R /First 7 0 R /Last 7 0 R /Count 1 >>"]).replace(
        b"/Type /Catalog /Pages 2 0 R", b"/Type /Catalog /Pages 2 0 R /Outlines 6 0 R"), text=FOX)
    add("count-claims-a-million-pages", cyc, lambda: one_page_pdf().replace(b"/Count 1", b"/Count 1000000"), text=FOX)

    # deep nesting
    for depth in (1_000, 100_000, 1_000_000):
        add(f"nested-arrays-{depth}", cyc, lambda d=depth: one_page_pdf(page_extra=b" /Deep " + nested(d, b"[", b"]")), text=FOX)
    for depth in (10_000, 300_000):
        add(f"nested-dicts-{depth}", cyc, lambda d=depth: one_page_pdf(page_extra=b" /Deep " + nested(d, b"<< /A ", b" >>")), text=FOX)
    add("nested-arrays-in-trailer", cyc, lambda: one_page_pdf().replace(b"trailer\n<< ", b"trailer\n<< /Deep " + nested(200_000, b"[", b"]") + b" "), text=FOX)
    add("nested-tj-operand", cyc, lambda: one_page_pdf(contents=b"BT /F1 12 Tf " + nested(200_000, b"[", b"]", b"(deep)") + b" TJ ET"))
    add("nested-q-500k", cyc, lambda: one_page_pdf(contents=b"q " * 500_000 + SAY), text=FOX)
    add("deep-page-tree-5000", cyc, lambda: _deep_page_tree(5_000), text=FOX)

    # cross-reference tables that lie about their size
    add("xref-claims-ten-million", cyc, lambda: one_page_pdf().replace(b"xref\n0 6\n", b"xref\n0 10000000\n"), text=FOX)
    add("trailer-size-2-31", cyc, lambda: one_page_pdf().replace(b"/Size 6", b"/Size 2147483647"), text=FOX)
    add("xref-stream-index-100m", cyc, lambda: _xref_stream_pdf(b"/Size 100000000 /Index [0 100000000] /W [1 4 2]"), text=FOX)
    add("xref-stream-wide-fields", cyc, lambda: _xref_stream_pdf(b"/Size 6 /W [1 2000000000 2]"), text=FOX)
    add("xref-120k-free-entries", cyc, lambda: one_page_pdf().replace(
        b"xref\n0 6\n", b"xref\n0 6\n").replace(b"trailer\n", b"6 120000\n" + b"0000000000 65535 f \n" * 120_000 + b"trailer\n"), text=FOX)
    add("startxref-beyond-eof", cyc, lambda: _set_startxref(one_page_pdf(), b"999999999999"), text=FOX)
    add("startxref-negative", cyc, lambda: _set_startxref(one_page_pdf(), b"-5"), text=FOX)
    add("object-number-2-32", cyc, lambda: one_page_pdf().replace(b"5 0 obj", b"4294967295 0 obj"), text=FOX)

    # a real PDF cut short at twenty places
    cuts = (5, 9, 16, 64, 256, 1024, 4096) + tuple(f / 20 for f in range(1, 20, 2)) + (-40, -20, -6)
    for cut in cuts:
        label = f"{cut:.2f}".replace("0.", "f") if isinstance(cut, float) else str(cut)
        add(f"truncated/{label}", {"pdf_malformed"}, lambda k=cut: _truncate(real_pdf(), k))

    # encryption: every algorithm pypdf writes, with and without a user password
    for algorithm in ("RC4-40", "RC4-128", "AES-128", "AES-256-R5", "AES-256"):
        add(f"encrypted-{algorithm}-user-pw", {"pdf_encrypted"}, lambda a=algorithm: encrypted_pdf(a, "user-pw"))
        add(f"encrypted-{algorithm}-empty-user-pw", {"done"}, lambda a=algorithm: encrypted_pdf(a, ""),
            text=f"sealed with {algorithm}")
    add("encrypted-unknown-handler", {"pdf_encrypted", "pdf_malformed"}, lambda: encrypted_pdf("RC4-128", "").replace(
        b"/Filter /Standard", b"/Filter /HostileSecurity"))

    # nothing to read
    for pages in (1, 3, MAX_PDF_PAGES):
        add(f"blank-{pages}-pages", {"pdf_no_text"}, lambda p=pages: blank_pdf(p))
    add(f"blank-{MAX_PDF_PAGES + 1}-pages", {"pdf_too_many_pages"}, lambda: blank_pdf(MAX_PDF_PAGES + 1))
    add("whitespace-text-only", {"pdf_no_text"}, lambda: make_pdf([b"BT /F1 12 Tf (   ) Tj ET"]))

    # garbage
    for seed, n in ((1, 10), (2, 1_000), (3, 100_000), (4, 2_000_000)):
        add(f"garbage-after-header-{n}", {"pdf_malformed"}, lambda s=seed, k=n: b"%PDF-1.7\n" + random_bytes(s, k))
    add("zeros-after-header", {"pdf_malformed"}, lambda: b"%PDF-1.7\n" + bytes(1_000_000))
    add("header-only", {"pdf_malformed"}, lambda: b"%PDF-1.7")
    add("garbage-between-objects", {"done", "pdf_malformed"}, lambda: _garbage_inside(real_pdf()),
        text=None)
    add("garbage-after-eof", {"done"}, lambda: make_pdf([SAY]) + random_bytes(5, 500_000), text=FOX)
    add("header-after-1000-bytes-of-junk", {"done"}, lambda: b"J" * 1000 + make_pdf([SAY]), text=FOX)
    c.append(Case("pdf/header-after-2000-bytes", "pdf", frozenset({"pdf_malformed"}),
                  _one("late.pdf", lambda: b"J" * 2000 + make_pdf([SAY]))))
    c.append(Case("pdf/pdf-under-txt-name", "pdf", frozenset({"done"}), _one("actually-a-pdf.txt", lambda: make_pdf([SAY])),
                  text=FOX))
    c.append(Case("pdf/no-header-pdf-name", "pdf", frozenset({"pdf_malformed"}), _one("plain.pdf", b"just text, not a PDF")))
    return c


def _truncate(data: bytes, cut: int | float) -> bytes:
    if isinstance(cut, float):
        return data[: int(len(data) * cut)]
    return data[:cut] if cut > 0 else data[:cut]


def _garbage_inside(data: bytes) -> bytes:
    """Random bytes written over the middle third of a real PDF (same length, xref offsets intact)."""
    third = len(data) // 3
    return data[:third] + random_bytes(6, third) + data[2 * third:]


def _set_startxref(data: bytes, value: bytes) -> bytes:
    head, _, tail = data.rpartition(b"startxref\n")
    return head + b"startxref\n" + value + b"\n%%EOF\n"


def _prev_loop(self_loop: bool) -> bytes:
    """The trailer's /Prev names its own section, or a second section whose /Prev names the first."""
    base = one_page_pdf()
    start = int(base.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    if self_loop:
        return base.replace(b"/Root 1 0 R", b"/Root 1 0 R /Prev %d" % start)
    base = base.replace(b"/Root 1 0 R", b"/Root 1 0 R /Prev 0000000000")
    second = len(base)
    base = base.replace(b"/Prev 0000000000", b"/Prev %010d" % second)
    return base + (b"xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size 6 /Root 1 0 R /Prev %d >>\n"
                   b"startxref\n%d\n%%%%EOF\n" % (start, second))


def _deep_page_tree(depth: int) -> bytes:
    """A page tree `depth` /Pages nodes deep, each with one kid; the leaf is a page with text."""
    objs = [b"<< /Type /Catalog /Pages 3 0 R >>", FONT]
    first = 3
    for i in range(depth):
        me = first + i
        parent = b" /Parent %d 0 R" % (me - 1) if i else b""
        objs.append(b"<< /Type /Pages /Kids [%d 0 R] /Count 1%s >>" % (me + 1, parent))
    page = first + depth
    objs.append(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 2 0 R >> >> "
                b"/Contents %d 0 R >>" % (page - 1, page + 1))
    objs.append(stream(SAY))
    return pdf_from_objects(objs)


def _xref_stream_pdf(fields: bytes) -> bytes:
    base = one_page_pdf()
    body = base[: base.index(b"xref\n")]
    offsets = [body.index(b"%d 0 obj" % i) for i in range(1, 6)]
    rows = b"\x00\x00\x00\x00\x00\xff\xff" + b"".join(b"\x01" + o.to_bytes(4, "big") + b"\x00\x00" for o in offsets)
    start = len(body)
    obj = b"6 0 obj\n" + stream(zlib.compress(rows), b" /Type /XRef %s /Root 1 0 R /Filter /FlateDecode" % fields) + b"\nendobj\n"
    return body + obj + b"startxref\n%d\n%%%%EOF\n" % start


# --------------------------------------------------------------------------- text in every encoding, and none


def encoding_cases() -> list[Case]:
    c: list[Case] = []

    def add(id_: str, name: str, data: Callable[[], bytes], expect, text: str | None) -> None:
        c.append(Case("text/" + id_, "encoding", frozenset(expect), _one(name, data), text=text))

    long_texts = {"en": EN_LONG, "zh-cn": ZH_CN_LONG, "zh-tw": ZH_TW_LONG, "ja": JA_LONG, "ko": KO_LONG,
                  "ru": RU_LONG, "fr": FR_LONG}
    for lang, text in long_texts.items():
        add(f"utf-8/{lang}", f"utf8-{lang}.txt", lambda t=text: t.encode("utf-8"), {"done"}, text)
    for lang in ("en", "zh-cn", "ru"):
        add(f"utf-8-bom/{lang}", f"utf8bom-{lang}.txt", lambda t=long_texts[lang]: codecs.BOM_UTF8 + t.encode("utf-8"),
            {"done"}, long_texts[lang])
    for codec, bom in (("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)):
        for label, text in (("zh-cn", ZH_CN_LONG), ("en", EN_LONG), ("zh-cn-short", ZH_CN_SHORT)):
            add(f"{codec}-bom/{label}", f"{codec}-bom-{label}.txt", lambda t=text, k=codec, b=bom: b + t.encode(k),
                {"done"}, text)
            short = label.endswith("short")
            add(f"{codec}-no-bom/{label}", f"{codec}-{label}.txt", lambda t=text, k=codec: t.encode(k),
                TEXT_OR_REFUSAL if short else {"done"}, text)
    for codec, bom in (("utf-32-le", codecs.BOM_UTF32_LE), ("utf-32-be", codecs.BOM_UTF32_BE)):
        add(f"{codec}-bom/zh-cn", f"{codec}-bom.txt", lambda k=codec, b=bom: b + ZH_CN_LONG.encode(k), {"done"}, ZH_CN_LONG)
    legacy = (
        ("gb18030", ZH_CN_LONG, ZH_CN_SHORT), ("gbk", ZH_CN_LONG, ZH_CN_SHORT), ("big5", ZH_TW_LONG, ZH_TW_SHORT),
        ("euc-jp", JA_LONG, JA_SHORT), ("shift_jis", JA_LONG, JA_SHORT), ("euc-kr", KO_LONG, KO_SHORT),
        ("cp1252", FR_LONG, DE_SHORT), ("koi8-r", RU_LONG, RU_SHORT), ("cp1251", RU_LONG, RU_SHORT),
    )
    for codec, long_text, short_text in legacy:
        add(f"{codec}/long", f"{codec}-long.txt", lambda t=long_text, k=codec: t.encode(k), {"done"}, long_text)
        add(f"{codec}/short", f"{codec}-short.txt", lambda t=short_text, k=codec: t.encode(k), TEXT_OR_REFUSAL, short_text)
    # the same texts as Markdown and HTML
    add("gb18030/markdown", "gb.md", lambda: f"# 长城\n\n{ZH_CN_LONG}\n".encode("gb18030"), {"done"}, ZH_CN_LONG)
    add("shift_jis/markdown", "sjis.md", lambda: f"# 東京\n\n{JA_LONG}\n".encode("shift_jis"), {"done"}, JA_LONG)
    add("big5/html-meta", "big5.html", lambda: (
        f'<html><head><meta charset="big5"><title>臺北</title></head><body><p>{ZH_TW_LONG}</p></body></html>'
    ).encode("big5"), {"done"}, ZH_TW_LONG)
    add("utf-16-le-bom/html", "u16.html", lambda: codecs.BOM_UTF16_LE + (
        f"<html><body><p>{ZH_CN_LONG}</p></body></html>").encode("utf-16-le"), {"done"}, ZH_CN_LONG)
    add("koi8-r/html-no-meta", "koi8.html", lambda: f"<html><body><p>{RU_LONG}</p></body></html>".encode("koi8-r"),
        {"done"}, RU_LONG)
    add("utf-8/html-lying-meta-utf-16", "liar.html", lambda: (
        f'<html><head><meta charset="utf-16"></head><body><p>{EN_LONG}</p></body></html>').encode(), {"done"}, EN_LONG)
    # encodings we do not accept: decoded correctly or refused, never stored as mojibake
    add("utf-32-le-no-bom/zh-cn", "u32.txt", lambda: ZH_CN_LONG.encode("utf-32-le"), TEXT_OR_REFUSAL, ZH_CN_LONG)
    add("utf-32-be-no-bom/en", "u32be.txt", lambda: EN_LONG.encode("utf-32-be"), TEXT_OR_REFUSAL, EN_LONG)
    add("cp500-ebcdic/en", "ebcdic.txt", lambda: EN_LONG.encode("cp500"), TEXT_OR_REFUSAL, EN_LONG)
    add("cp037-ebcdic/fr", "ebcdic-fr.txt", lambda: FR_LONG.encode("cp037"), TEXT_OR_REFUSAL, FR_LONG)
    add("mac-roman/fr", "macroman.txt", lambda: FR_LONG.encode("mac_roman"), TEXT_OR_REFUSAL, FR_LONG)
    # 7-bit encodings are ASCII by construction: stored, if at all, as exactly those ASCII bytes
    add("utf-7/zh-cn", "utf7.txt", lambda: ZH_CN_LONG.encode("utf-7"), TEXT_OR_REFUSAL, ZH_CN_LONG.encode("utf-7").decode())
    add("hz/zh-cn", "hz.txt", lambda: ZH_CN_LONG.encode("hz"), TEXT_OR_REFUSAL, ZH_CN_LONG.encode("hz").decode())
    return c


_MAGIC = (
    ("png", b"\x89PNG\r\n\x1a\n"), ("zip", b"PK\x03\x04"), ("elf", b"\x7fELF\x02\x01\x01"), ("gzip", b"\x1f\x8b\x08\x00"),
    ("jpeg", b"\xff\xd8\xff\xe0"), ("gif", b"GIF89a"), ("exe", b"MZ\x90\x00"), ("ole", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),
    ("7z", b"7z\xbc\xaf\x27\x1c"), ("xz", b"\xfd7zXZ\x00"), ("bzip2", b"BZh91AY&SY"), ("rtf", b"{\\rtf1"),
    ("tiff", b"II*\x00"), ("mp4", b"\x00\x00\x00\x18ftypmp42"),
)


def binary_cases() -> list[Case]:
    import gzip

    c: list[Case] = []
    exts = (".txt", ".md", ".html")
    for i, (what, magic) in enumerate(_MAGIC):
        ext = exts[i % 3]
        c.append(Case(f"binary/{what}-as{ext}", "binary", frozenset({"unsupported_type"}),
                      _one(f"{what}{ext}", lambda m=magic, s=i: m + random_bytes(100 + s, 4096))))
    c.append(Case("binary/real-gzip-of-text.txt", "binary", frozenset({"unsupported_type"}),
                  _one("notes.txt", lambda: gzip.compress(EN_LONG.encode() * 20))))
    c.append(Case("binary/sqlite.txt", "binary", frozenset({"undecodable_text"}),
                  _one("db.txt", lambda: b"SQLite format 3\x00" + random_bytes(7, 8192))))
    for seed, n, ext in ((11, 16, ".txt"), (12, 4096, ".md"), (13, 1_000_000, ".html"), (14, MAX_UPLOAD_BYTES, ".txt"),
                         (15, 65_536, ".md")):
        c.append(Case(f"binary/random-{n}{ext}", "binary", BINARY, _one(f"random-{n}{ext}", lambda s=seed, k=n: random_bytes(s, k))))
    c.append(Case("binary/random-high-bytes.txt", "binary", BINARY,
                  _one("high.txt", lambda: random_bytes(16, 4096, 0x80, 0xFF))))
    c.append(Case("binary/random-a1-fe-bytes.txt", "binary", BINARY,
                  _one("a1fe.txt", lambda: random_bytes(17, 4096, 0xA1, 0xFE))))
    c.append(Case("binary/random-a1-fe-bytes.html", "binary", BINARY,
                  _one("a1fe.html", lambda: random_bytes(19, 200, 0xA1, 0xFE))))
    c.append(Case("binary/nul-bytes.txt", "binary", frozenset({"undecodable_text"}), _one("nul.txt", bytes(1_000_000))))
    c.append(Case("binary/all-byte-values.md", "binary", frozenset({"undecodable_text"}),
                  _one("bytes.md", bytes(range(256)) * 64)))
    # random private-use characters are valid UTF-16: stored, if at all, as exactly those characters
    r = rng(18)
    pua = "".join(chr(r.randint(0xE000, 0xF8FF)) for _ in range(2000))
    c.append(Case("binary/utf-16-of-random-private-use.txt", "binary", TEXT_OR_REFUSAL,
                  _one("pua.txt", pua.encode("utf-16-le")), text=pua))
    return c


# --------------------------------------------------------------------------- HTML and Markdown bombs


def html_cases() -> list[Case]:
    c: list[Case] = []

    def add(id_: str, expect, make: Callable[[], str | bytes], text: str | None = None) -> None:
        def data(m=make) -> bytes:
            out = m()
            return out if isinstance(out, bytes) else out.encode()
        c.append(Case("html/" + id_, "html", frozenset(expect), _one(id_ + ".html", data), text=text))

    for tag, n in (("div", 100_000), ("span", 30_000), ("header", 30_000), ("blockquote", 30_000), ("article", 30_000)):
        add(f"nested-{tag}-{n}", BOUNDED, lambda t=tag, k=n: f"<body>{('<' + t + '>') * k}deep text{('</' + t + '>') * k}</body>")
    add("unclosed-b-100k", BOUNDED, lambda: "<p>" + "<b>" * 100_000 + "bold at the bottom")
    add("nested-table-20k", BOUNDED, lambda: "<table><tr><td>" * 20_000 + "cell" + "</td></tr></table>" * 20_000)
    add("nested-lists-50k", BOUNDED, lambda: "<ul><li>" * 50_000 + "item" + "</li></ul>" * 50_000)
    add("nested-headings-in-headings", BOUNDED, lambda: "".join(f"<h{i % 6 + 1}>h{i}" for i in range(20_000)))
    add("nested-header-in-article-100k", {"done"}, lambda: (
        "<body><article>" + "<header>" * 100_000 + "Deep text." + "</header>" * 100_000 + "</article></body>"),
        text="Deep text.")
    add("10k-headers-under-10k-divs", BOUNDED, lambda: "<body>" + "<div>" * 10_000 + "<header>banner</header>" * 10_000)
    add("amp-200k-one-paragraph", {"document_too_long"}, lambda: "<p>" + "&amp;" * 200_000 + "</p>")
    add("invalid-numeric-refs-200k", {"document_too_long"}, lambda: "<p>" + "&#x110000;" * 200_000 + "</p>")
    add("attribute-2mb", {"done"}, lambda: '<p title="' + "a" * 2_000_000 + '">A short visible sentence.</p>',
        text="A short visible sentence.")
    add("200k-attributes", {"done"}, lambda: "<p " + " ".join(f"a{i}=1" for i in range(200_000)) + ">Visible text.</p>",
        text="Visible text.")
    add("hidden-2mb", {"done"}, lambda: '<div style="display:none">' + "secret " * 280_000 + "</div><p>Visible text.</p>",
        text="Visible text.")
    add("unclosed-comment", {"done"}, lambda: "<p>Before the comment.</p><!--" + "commented out " * 100_000,
        text="Before the comment.")
    add("unclosed-script", {"done"}, lambda: "<p>Before the script.</p><script>" + "var a = 1;\n" * 200_000,
        text="Before the script.")
    add("unclosed-style", {"done"}, lambda: "<p>Before the style.</p><style>" + "p { color: red }\n" * 100_000,
        text="Before the style.")
    add("unclosed-title", BOUNDED, lambda: "<html><head><title>" + "title words " * 150_000)
    add("table-50k-cells", {"document_too_long"}, lambda: "<table><tr>" + "<td>cell</td>" * 50_000 + "</tr></table>")
    add("table-20k-rows", {"document_too_long"}, lambda: "<table>" + "<tr><td>row</td></tr>" * 20_000 + "</table>")
    add("br-50k", {"document_too_long"}, lambda: "<p>" + "a<br>" * 50_000 + "</p>")
    add("headings-50k", {"document_too_long"}, lambda: "<h2>heading</h2>" * 50_000)
    add("one-text-node-2mb", {"document_too_long"}, lambda: "<p>" + "word " * 400_000 + "</p>")
    add("xml-billion-laughs", BOUNDED, lambda: (
        '<?xml version="1.0"?><!DOCTYPE html [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(9))
        + ']><html><body><p>&j;</p><p>Laughs.</p></body></html>'))
    add("lt-1mb", BOUNDED, lambda: "<" * 1_000_000)
    add("open-tags-without-close-1mb", BOUNDED, lambda: "<a " * 330_000)
    add("pre-2mb", {"document_too_long"}, lambda: "<pre>" + "code line\n" * 200_000 + "</pre>")
    add("meta-charset-bomb", BOUNDED, lambda: '<meta charset="' + "x" * 100_000 + '"><p>Text.</p>')
    return c


def markdown_cases() -> list[Case]:
    c: list[Case] = []

    def add(id_: str, expect, make: Callable[[], str], text: str | None = None) -> None:
        c.append(Case("markdown/" + id_, "markdown", frozenset(expect), _one(id_ + ".md", lambda m=make: m().encode()),
                      text=text))

    add("backticks-2mb", BOUNDED, lambda: "`" * 2_000_000)
    add("backtick-spans-2mb", BOUNDED, lambda: "`a` ``b`` " * 200_000)
    add("blockquotes-10k-nested", {"done"}, lambda: "> " * 10_000 + "Deep quote.\n", text="Deep quote.")
    add("blockquotes-2m-nested", BOUNDED, lambda: ">" * 2_000_000 + "x\n")
    add("blockquote-1000-lines-of-1000", BOUNDED, lambda: ("> " * 1_000 + "quoted line\n") * 1_000)
    add("lists-10k-nested-one-line", BOUNDED, lambda: "- " * 10_000 + "item\n")
    add("lists-10k-nested-lines", BOUNDED, lambda: "".join("  " * (i % 7) + "- item\n" for i in range(10_000)))
    add("unterminated-fence-1mb", {"document_too_long"}, lambda: "Intro.\n\n```python\n" + "print('x')\n" * 100_000)
    add("fences-100k", BOUNDED, lambda: "```\n" * 100_000)
    add("headings-20k", {"document_too_long"}, lambda: "".join(f"# Heading {i}\n\n" for i in range(20_000)))
    add("heading-levels-20k", BOUNDED, lambda: "".join("#" * (i % 6 + 1) + f" h{i}\n" for i in range(20_000)))
    add("atx-heading-1mb-spaces", BOUNDED, lambda: "# " + " " * 1_000_000 + "x #\n")
    add("emphasis-stars-1mb", BOUNDED, lambda: "*" * 1_000_000)
    add("strong-open-300k", BOUNDED, lambda: "**a " * 300_000)
    add("underscores-1mb", BOUNDED, lambda: "_a" * 500_000)
    add("brackets-2mb", BOUNDED, lambda: "[" * 1_000_000 + "]" * 1_000_000)
    add("link-openers-300k", BOUNDED, lambda: "[a](" * 300_000)
    add("image-openers-500k", BOUNDED, lambda: "![" * 500_000)
    add("html-openers-500k", BOUNDED, lambda: "<a " * 500_000)
    add("backslashes-2mb", BOUNDED, lambda: "\\" * 2_000_000)
    add("table-50k-rows", {"document_too_long"}, lambda: "| a | b |\n|---|---|\n" + "| cell | cell |\n" * 50_000)
    add("table-row-1mb", BOUNDED, lambda: "|" + " x |" * 250_000 + "\n")
    add("setext-2mb", BOUNDED, lambda: "Title\n" + "=" * 2_000_000 + "\n")
    add("thematic-1mb", BOUNDED, lambda: "- " * 500_000 + "\n")
    add("front-matter-unterminated", BOUNDED, lambda: "---\n" + "title: x\n" * 100_000)
    return c


# --------------------------------------------------------------------------- degenerate documents


def degenerate_cases() -> list[Case]:
    c: list[Case] = []
    limit = MAX_UPLOAD_BYTES

    def add(id_: str, name: str, expect, make: Callable[[], bytes], text: str | None = None) -> None:
        c.append(Case("degenerate/" + id_, "degenerate", frozenset(expect), _one(name, make), text=text))

    sentence = "The mirror is synced every six hours and the index is signed. "
    add("one-line-15k", "line15k.txt", {"done"}, lambda: (sentence * 800).encode()[:15_000].strip())
    add("one-line-500k", "line500k.txt", {"document_too_long"}, lambda: (sentence * 8_000).encode()[:500_000])
    add("one-line-at-upload-limit", "line-max.txt", {"document_too_long"}, lambda: (sentence * 50_000).encode()[:limit])
    add("one-line-over-upload-limit", "line-over.txt", {"file_too_large"}, lambda: (sentence * 50_000).encode()[:limit + 1])
    add("one-line-markdown-500k", "line.md", {"document_too_long"}, lambda: (sentence * 8_000).encode()[:500_000])
    add("one-line-html-500k", "line.html", {"document_too_long"}, lambda: b"<p>" + (sentence * 8_000).encode()[:500_000])
    add("one-char", "a.txt", {"done"}, lambda: b"a", text="a")
    add("one-word", "word.txt", {"done"}, lambda: b"supercalifragilistic", text="supercalifragilistic")
    add("one-word-markdown", "word.md", {"done"}, lambda: b"# Word", text="Word")
    add("one-word-html", "word.html", {"done"}, lambda: b"<b>word</b>", text="word")
    add("one-cjk-char", "zh.txt", TEXT_OR_REFUSAL, lambda: "长".encode(), text="长")
    add("one-word-10k-letters", "long-word.txt", {"done"}, lambda: b"a" * 10_000)
    add("one-word-just-under-char-limit", "longer-word.txt", {"done", "too_many_chunks", "repetitive_text"},
        lambda: b"b" * (MAX_DOCUMENT_CHARS - 10))
    add("one-word-at-upload-limit", "huge-word.txt", {"document_too_long"}, lambda: b"c" * limit)
    add("cjk-no-punctuation-under-char-limit", "cjk.txt", {"done", "too_many_chunks", "repetitive_text"},
        lambda: ("长城" * (MAX_DOCUMENT_CHARS // 2 - 10)).encode())
    add("cjk-900k", "cjk-big.txt", {"document_too_long"}, lambda: ("长" * 900_000).encode())
    add("digits-at-upload-limit", "digits.txt", {"document_too_long"}, lambda: b"7" * limit)
    add("emoji-700k", "emoji.txt", {"document_too_long"}, lambda: ("\U0001F600" * 700_000).encode())
    add("same-word-just-under-char-limit", "words.txt", {"done", "too_many_chunks", "repetitive_text"},
        lambda: b" ".join([b"word"] * (MAX_DOCUMENT_CHARS // 5)))
    add("spaces-1mb", "spaces.txt", {"empty_file", "no_text"}, lambda: b" " * 1_000_000)
    add("newlines-1mb", "newlines.txt", {"empty_file", "no_text"}, lambda: b"\n" * 1_000_000)
    add("one-newline", "nl.txt", {"empty_file", "no_text"}, lambda: b"\n")
    add("zero-width-only", "zw.txt", {"empty_file", "no_text"}, lambda: ("\u200b" * 100_000).encode())
    add("empty-html", "empty.html", {"empty_file", "no_text"}, lambda: b"<html><body></body></html>")
    add("markup-only-markdown", "rules.md", {"empty_file", "no_text"}, lambda: b"---\n***\n___\n" * 1000)
    add("zero-bytes", "zero.txt", {"empty_file"}, lambda: b"")
    return c


# --------------------------------------------------------------------------- hostile file names


def filename_cases() -> list[Case]:
    import unicodedata

    c: list[Case] = []

    def add(id_: str, name: str | bytes, expect, stored: str | None = None) -> None:
        cid = "filename/" + id_
        c.append(Case(cid, "filename", frozenset(expect), _one(name, note(cid)), text="apt pinning", stored_name=stored))

    def ok(id_: str, name: str) -> None:  # sent as UTF-8 bytes, stored NFC and stripped
        add(id_, name.encode(), {"done"}, unicodedata.normalize("NFC", name.strip()))

    bad = {"bad_filename"}
    # paths
    for id_, name in (("absolute", "/etc/passwd.txt"), ("subdir", "a/b.txt"), ("dot-dot-in-path", "dir/../x.txt"),
                      ("windows-drive-path", "C:\\Windows\\x.txt"), ("unc", "\\\\server\\share\\x.txt"),
                      ("dot", "."), ("dot-dot", ".."), ("dot-dot-padded", " .. ")):
        add(id_, name.encode(), bad)
    # invisible, bidi and control characters
    for id_, name in (("rtl-override", "invoice\u202etxt.exe.txt"), ("rtl-override-first", "\u202egnp.txt"),
                      ("lrm", "a\u200eb.txt"), ("zero-width-space", "fi\u200ble.txt"), ("zwj", "a\u200db.txt"),
                      ("bom", "\ufeffbom.txt"), ("word-joiner", "a\u2060b.txt"), ("soft-hyphen", "soft\u00adhyphen.txt"),
                      ("tag-character", "tag\U000e0041.txt"), ("bidi-isolate", "a\u2066b\u2069.txt"),
                      ("c0-soh", "a\x01b.txt"), ("c0-unit-separator", "a\x1fb.txt"), ("del", "a\x7fb.txt"),
                      ("tab", "tab\there.txt"), ("escape-sequence", "\x1b[31mred.txt"),
                      ("nul-middle", "a\x00b.txt"), ("nul-before-extension", "evil.txt\x00.pdf"),
                      ("line-separator", "a\u2028b.txt"), ("paragraph-separator", "a\u2029b.txt")):
        add(id_, name.encode(), bad)
    # C1 controls reach the server through the multipart parser's Latin-1 fallback for bytes that are not UTF-8
    add("c1-nel-latin1", b"a\x85b.txt", bad)
    add("c1-csi-latin1", b"\x9b31mred.txt", bad)
    add("c1-nel-utf8", "a\u0085b.txt".encode(), bad)
    # line breaks inside the quoted name: the part's header is broken
    add("newline", b"new\nline.txt", {"bad_filename", "invalid_request", "no_files"})
    add("carriage-return", b"carriage\rreturn.txt", {"bad_filename", "invalid_request", "no_files"})
    add("crlf-header-injection", b"x.txt\"\r\nX-Injected: 1\r\n\r\nzzz", {"bad_filename", "invalid_request", "no_files", "done"})
    # quotes and characters that mean something elsewhere
    ok("single-quote", "it's a note.txt")
    add("double-quote-escaped", b'say \\"hi\\".txt', {"done", "bad_filename"})
    c.append(Case("filename/double-quote-via-httpx", "filename", frozenset({"done"}),
                  _one('say "hi".txt', note("filename/double-quote-via-httpx")), text="apt pinning"))
    ok("semicolon-and-equals", "a;b=c.txt")
    ok("shell-metacharacters", "$(rm -rf ~)`id`|&;<>.txt")
    ok("percent-encoded-traversal", "..%2f..%2fevil.txt")
    add("html-closing-tag-in-name", b"<script>alert(1)</script>.txt", bad)  # "/" is a path separator
    ok("html-in-name", "<img src=x onerror=alert(1)>.txt")
    add("windows-drive-path-escaped", b"C:\\\\Windows\\\\x.txt", bad)
    ok("sql-in-name", "x'); DROP TABLE documents;--.txt")
    # length
    ok("255-chars", "n" * 251 + ".txt")
    add("256-chars", ("n" * 252 + ".txt").encode(), bad)
    ok("255-cjk-chars", "长" * 251 + ".txt")
    add("256-cjk-chars", ("长" * 252 + ".txt").encode(), bad)
    add("300-chars", ("n" * 296 + ".txt").encode(), bad)
    # reserved and odd names (metadata only: the bytes are stored under the job id)
    for name in ("CON.txt", "NUL.txt", "PRN.md", "AUX.html", "COM1.txt", "LPT9.md", "con.TXT", "x.txt::$DATA.txt",
                 "x.txt.", "x.txt ", "  padded.txt  ", "....txt", "a..b.txt"):
        if name.endswith("."):
            add("reserved-" + name, name.encode(), {"unsupported_type"})
        else:
            ok("reserved-" + name.strip().replace(" ", "_"), name)
    for id_, name in (("hidden", ".hidden"), ("only-extension", ".txt"), ("three-dots", "..."), ("no-extension", "README"),
                      ("fullwidth-dot", "file\uff0etxt"), ("cyrillic-extension", "file.t\u0445t"),
                      ("combining-in-extension", "file.tx\u0301t"), ("ads", "x.txt::$DATA")):
        add(id_, name.encode(), {"unsupported_type"})
    for id_, name in (("spaces-only", "   "), ("ideographic-space", "\u3000"), ("nbsp-only", "\u00a0\u00a0")):
        add(id_, name.encode(), bad)
    add("nbsp-then-extension", "\u00a0.txt".encode(), {"unsupported_type"})
    # Unicode normalisation: stored as NFC, compatibility forms untouched
    ok("nfd-accents", "cafe\u0301 re\u0301sume\u0301.txt")
    ok("nfc-accents", "café.txt")
    ok("hangul-jamo-nfd", unicodedata.normalize("NFD", "한국어.txt"))
    ok("ligature-fi", "\ufb01le.txt")
    ok("fullwidth-letters", "\uff46\uff49\uff4c\uff45.txt")
    ok("fullwidth-solidus", "a\uff0fb.txt")
    ok("division-slash", "..\u2215evil.txt")
    ok("zalgo-200-marks", "z" + "\u0301" * 200 + ".txt")
    ok("emoji", "\U0001F4C4 notes \U0001F600.txt")
    ok("upper-extension", "REPORT.TXT")
    ok("right-to-left-script", "\u05de\u05e1\u05de\u05da.txt")
    # not UTF-8 at all: read as Latin-1 by the multipart parser
    add("latin1-bytes", b"caf\xe9.txt", {"done"}, "café.txt")
    return c


# --------------------------------------------------------------------------- multipart abuse


def _mp(parts: list[tuple[bytes, bytes]], boundary: bytes = b"----hostile-boundary-5b1e") -> bytes:
    """A multipart body from (part headers, part body) pairs."""
    body = b"".join(b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n" for headers, data in parts)
    return body + b"--" + boundary + b"--\r\n"


def _file_part(name: bytes, data: bytes, field: bytes = b"files") -> tuple[bytes, bytes]:
    return (b'Content-Disposition: form-data; name="' + field + b'"; filename="' + name + b'"\r\n'
            b"Content-Type: application/octet-stream", data)


MP = "multipart/form-data; boundary=----hostile-boundary-5b1e"


def multipart_cases() -> list[Case]:
    c: list[Case] = []

    def add(id_: str, expect, request: Callable[[], RawRequest]) -> None:
        c.append(Case("multipart/" + id_, "multipart", frozenset(expect), request=request))

    def req(body: bytes, content_type: str = MP, **kw) -> Callable[[], RawRequest]:
        return lambda: RawRequest({"content-type": content_type}, body, **kw)

    good = note("multipart")
    add("no-files-field", {"no_files"}, req(_mp([_file_part(b"a.txt", good, field=b"file")])))
    add("files-as-string-field", {"no_files"}, req(_mp([(b'Content-Disposition: form-data; name="files"', b"hello")])))
    add("files-urlencoded", {"no_files"}, req(b"files=hello.txt", "application/x-www-form-urlencoded"))
    add("part-without-filename", {"no_files"}, req(_mp([(b'Content-Disposition: form-data; name="files"\r\n'
                                                          b"Content-Type: application/pdf", make_pdf([SAY]))])))
    add("empty-filename", {"bad_filename", "no_files"}, req(_mp([_file_part(b"", good)])))
    add("too-many-files", {"too_many_files"}, req(_mp([_file_part(b"f%d.txt" % i, note(f"mp-{i}"))
                                                       for i in range(MAX_FILES_PER_REQUEST + 1)])))
    add("exactly-max-files", {"done"}, req(_mp([_file_part(b"max%d.txt" % i, note(f"mp-max-{i}"))
                                                for i in range(MAX_FILES_PER_REQUEST)])))
    over = _mp([_file_part(b"big%d.txt" % i, b"x" * (MAX_UPLOAD_BYTES - 10)) for i in range(2)])
    add("body-over-request-limit", {"body_too_large"}, lambda: RawRequest({"content-type": MP}, over))
    add("body-over-request-limit-chunked", {"body_too_large"}, lambda: RawRequest({"content-type": MP}, over, chunked=True))
    add("content-length-over-limit-body-tiny", {"body_too_large"},
        lambda: RawRequest({"content-type": MP}, _mp([_file_part(b"a.txt", good)]), content_length=MAX_REQUEST_BYTES + 1,
                           close_after_body=True))
    whole = _mp([_file_part(b"cut.txt", b"A note that is cut off before the closing boundary. " * 50)])
    add("truncated-before-closing-boundary", {"invalid_request", "no_files"}, req(whole[:-40]))
    add("truncated-in-part-headers", {"invalid_request", "no_files"}, req(whole[:60]))
    add("truncated-after-first-boundary", {"invalid_request", "no_files"}, req(whole[:len(b"------hostile-boundary-5b1e\r\n")]))
    add("wrong-boundary", {"invalid_request", "no_files"}, req(whole, "multipart/form-data; boundary=not-the-boundary"))
    add("missing-boundary", {"invalid_request", "no_files"}, req(whole, "multipart/form-data"))
    add("empty-boundary", {"invalid_request", "no_files"}, req(whole, 'multipart/form-data; boundary=""'))
    add("boundary-200-chars", {"done", "invalid_request"}, lambda: RawRequest(
        {"content-type": "multipart/form-data; boundary=" + "b" * 200},
        _mp([_file_part(b"longb.txt", note("mp-long-boundary"))], boundary=b"b" * 200)))
    add("text-plain-content-type", {"no_files"}, req(whole, "text/plain"))
    add("empty-body", {"invalid_request", "no_files"}, req(b""))
    add("2000-fields", {"invalid_request"}, req(_mp([(b'Content-Disposition: form-data; name="f%d"' % i, b"v")
                                                     for i in range(2000)] + [_file_part(b"a.txt", good)])))
    add("part-header-over-4kb", {"bad_filename", "invalid_request"}, req(_mp([
        (b'Content-Disposition: form-data; name="files"; filename="h.txt"\r\nX-Padding: ' + b"p" * 8000, good)])))
    add("filename-star-traversal", {"done", "bad_filename"}, req(_mp([
        (b'Content-Disposition: form-data; name="files"; filename="safe.txt"; filename*=UTF-8\'\'..%2F..%2Fevil.txt',
         note("mp-filename-star"))])))
    add("two-filename-params", {"done", "bad_filename"}, req(_mp([
        (b'Content-Disposition: form-data; name="files"; filename="first.txt"; filename="../evil.txt"', note("mp-two"))])))
    add("nested-multipart-mixed", {"no_files", "invalid_request", "done", "unsupported_type"}, req(_mp([
        (b'Content-Disposition: form-data; name="files"\r\nContent-Type: multipart/mixed; boundary=inner',
         b"--inner\r\nContent-Disposition: file; filename=\"inner.txt\"\r\n\r\ninner\r\n--inner--")])))
    add("lying-content-length-longer", {"no_response", "invalid_request", "no_files"},
        lambda: RawRequest({"content-type": MP}, whole, content_length=len(whole) + 5000, close_after_body=True))
    add("lying-content-length-shorter", {"invalid_request", "no_files", "done"},
        lambda: RawRequest({"content-type": MP}, whole, content_length=len(whole) // 2))
    return c


def office_cases() -> list[Case]:
    """Office, EPUB and e-mail files (#26): ZIP bombs, entity attacks, huge sheets, nesting, macros,
    encryption, attachment floods. Each is built by `tests.helpers_formats` when it is sent."""
    from tests import helpers_formats as fm

    c: list[Case] = []

    def add(id_: str, name: str, expect: set[str], make, text: str | None = None) -> None:
        c.append(Case("office/" + id_, "office", frozenset(expect), _one(name, make), text=text))

    add("zip-bomb-60mb-member", "bomb.docx", {"archive_limit"}, lambda: fm.zip_bomb_docx(MAX_ARCHIVE_BYTES + (10 << 20)))
    add("zip-3000-members", "members.docx", {"archive_limit"}, lambda: fm.many_members_docx(MAX_ARCHIVE_MEMBERS + 1000))
    add("billion-laughs-docx", "laughs.docx", {"xml_forbidden"}, fm.laughs_docx)
    add("external-entity-xlsx", "xxe.xlsx", {"xml_forbidden"}, fm.external_entity_xlsx)
    add("million-empty-rows-xlsx", "empty.xlsx", {"sheet_too_large"}, lambda: fm.empty_rows_xlsx(1_000_000))
    add("shared-strings-60mb-xlsx", "sst.xlsx", {"archive_limit"}, lambda: fm.huge_shared_strings_xlsx(MAX_ARCHIVE_BYTES + (10 << 20)))
    add("nested-tables-40-docx", "nested40.docx", {"parse_resource_limit"}, lambda: fm.nested_tables_docx(40))
    add("nested-tables-1000-docx", "nested1000.docx", {"parse_resource_limit"}, lambda: fm.nested_tables_docx(1000))
    add("macro-enabled-xlsm", "macro.xlsm", {"done"}, fm.macro_xlsm)
    add("macro-enabled-docm", "macro.docm", {"done"}, fm.macro_docm)
    add("encrypted-docx", "locked.docx", {"document_encrypted"}, fm.encrypted_docx)
    add("encrypted-under-xlsx-name", "locked.xlsx", {"document_encrypted"}, fm.encrypted_docx)
    add("eml-500-attachments", "flood.eml", {"too_many_attachments"}, lambda: fm.eml_many_attachments(500))
    add("eml-nested-10-deep", "deep.eml", {"attachments_too_deep"}, lambda: fm.eml_nested(10))
    add("truncated-docx", "cut.docx", {"document_malformed"}, lambda: fm.docx_bytes()[:5000])
    add("docx-named-pptx", "wrong.pptx", {"document_malformed"}, fm.docx_bytes)
    add("text-named-xlsx", "plain.xlsx", {"document_malformed"}, lambda: b"port,service\n22,ssh\n")
    add("text-named-msg", "plain.msg", {"document_malformed"}, lambda: b"From: a@b\n\nnot an Outlook file")
    add("image-30000x30000", "huge.png", {"image_too_large"}, lambda: fm.png_header_only(30_000, 30_000))
    add("tiff-10000-pages", "pages.tiff", {"ocr_too_many_pages"}, lambda: fm.many_page_tiff(10_000))
    add("text-named-png", "plain.png", {"document_malformed"}, lambda: b"not an image at all")
    return c


def corpus() -> list[Case]:
    cases = (pdf_cases() + encoding_cases() + binary_cases() + html_cases() + markdown_cases() + degenerate_cases()
             + filename_cases() + multipart_cases() + office_cases())
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    return cases
