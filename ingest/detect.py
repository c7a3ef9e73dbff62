"""Which parser a file goes to: by extension, with the content's magic bytes as the deciding vote.

Rules, in order:

1. The name must be usable (`clean_filename`), else `bad_filename`.
2. Content with a PDF header (``%PDF-`` within the first 1,024 bytes, where PDF readers look for it)
   is a PDF whatever its name says.
3. The extension decides (`EXTENSIONS`): .pdf, .txt, .md/.markdown, .html/.htm, .docx/.docm,
   .xlsx/.xlsm, .csv, .pptx/.pptm, .epub, .eml, .msg, .png/.jpg/.jpeg/.tif/.tiff (OCR). Any other
   extension, or none, is
   `unsupported_type` (415).
4. A .pdf without a PDF header is `pdf_malformed`; a DOCX/XLSX/PPTX/EPUB that is neither a ZIP nor
   an OLE2 file (encrypted Office packages are OLE2), or a .msg that is not OLE2, is
   `document_malformed`; a text/Markdown/HTML/CSV/EML name whose content starts with a well-known
   binary signature (ZIP/Office, PNG, JPEG, GIF, gzip, OLE, ...) is `unsupported_type`, naming what
   the content looks like.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

from ingest import errors

Format = Literal["pdf", "text", "markdown", "html", "docx", "xlsx", "csv", "pptx", "epub", "eml", "msg", "image"]

EXTENSIONS: dict[str, Format] = {
    ".pdf": "pdf",
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".docx": "docx",
    ".docm": "docx",  # macro-enabled: the text is read, the macros never run
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".csv": "csv",
    ".pptx": "pptx",
    ".pptm": "pptx",
    ".epub": "epub",
    ".eml": "eml",
    ".msg": "msg",
    ".png": "image",  # read by OCR
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
}

#: Formats in a ZIP container: their content must start with a ZIP signature (or be an OLE2 file,
#: which the worker tells apart: an encrypted Office package or a legacy binary document).
ZIP_FORMATS: frozenset[str] = frozenset({"docx", "xlsx", "pptx", "epub"})
#: Formats that are OLE2 compound files.
OLE_FORMATS: frozenset[str] = frozenset({"msg"})
IMAGE_MAGIC: tuple[bytes, ...] = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive or Office document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"BZh91AY&SY", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office document"),
    (b"\x7fELF", "an executable"),
    (b"MZ\x90\x00", "an executable"),
    (b"{\\rtf", "an RTF document"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x00\x18ftyp", "an MP4/HEIC media file"),
    (b"\x00\x00\x00\x20ftyp", "an MP4/HEIC media file"),
)

MAX_FILENAME_CHARS = 255
#: Unicode categories refused in a file name: controls (C0, DEL and C1: a multipart header that is
#: not UTF-8 is read as Latin-1, so bytes 0x80-0x9F arrive as C1 controls), format characters
#: (zero-width, bidi overrides, tags) and the line and paragraph separators U+2028/U+2029.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def clean_filename(filename: str | None) -> str:
    """The uploaded file name, validated; it is display metadata only and never touches the disk.

    Raises `bad_filename` when it is missing, empty, over 255 characters, has control or invisible
    characters, or carries a path (`/`, `\\`, `..`): a client sending a path is told so rather than
    having it silently cut.
    """
    if filename is None:
        raise errors.bad_filename("no file name")
    if not isinstance(filename, str):
        raise errors.bad_filename("not a string")
    if "\x00" in filename:
        raise errors.bad_filename("the name contains a NUL character")
    if len(filename) > MAX_FILENAME_CHARS:
        raise errors.bad_filename(f"the name is {len(filename):,} characters long; the limit is {MAX_FILENAME_CHARS}")
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in filename):
        raise errors.bad_filename("control or invisible characters in the name")
    if "/" in filename or "\\" in filename:
        raise errors.bad_filename("the name contains a path separator (/ or \\); send the bare file name")
    base = filename.strip()
    if not base or base in (".", ".."):
        raise errors.bad_filename("empty name")
    return unicodedata.normalize("NFC", base)


def extension(filename: str) -> str:
    """Lower-case extension with the dot (``"report.PDF"`` -> ``".pdf"``), or ``""``."""
    base = clean_filename(filename)
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


def has_pdf_header(head: bytes) -> bool:
    return b"%PDF-" in head[:1024]


def detect_format(filename: str, head: bytes) -> Format:
    """Format of an upload from its name and its first bytes (pass at least 1,024 of them)."""
    ext = extension(filename)
    if has_pdf_header(head):
        return "pdf"
    fmt = EXTENSIONS.get(ext)
    if fmt is None:
        raise errors.unsupported_type(clean_filename(filename), f"extension {ext!r}" if ext else "no extension")
    if fmt == "pdf":
        raise errors.pdf_malformed("no %PDF- header in the first 1024 bytes")
    if fmt in ZIP_FORMATS:
        if head.startswith(ZIP_MAGIC) or head.startswith(OLE_MAGIC):
            return fmt
        raise errors.document_malformed(f"a {ext} file must be a ZIP container; this one is not")
    if fmt == "image":
        if head.startswith(IMAGE_MAGIC):
            return fmt
        raise errors.document_malformed(f"a {ext} file must be a PNG, JPEG or TIFF image; this one is not")
    if fmt in OLE_FORMATS:
        if head.startswith(OLE_MAGIC):
            return fmt
        raise errors.document_malformed(f"a {ext} file must be an OLE2 compound file; this one is not")
    for magic, what in _BINARY_MAGIC:
        if head.startswith(magic):
            raise errors.unsupported_type(clean_filename(filename), f"the content is {what}")
    return fmt
