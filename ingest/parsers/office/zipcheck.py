"""Checks a ZIP container (DOCX, XLSX, PPTX, EPUB) before any library opens it.

* member count and total declared uncompressed size are bounded (`archive_limit`): a ZIP bomb is
  refused before one byte is inflated; a member that lies about its size is stopped by the
  worker's memory and CPU limits instead;
* an encrypted member is `document_encrypted`;
* every XML part is read up to its root element: a DTD or an entity declaration there is
  `xml_forbidden` (billion laughs, external entities). Office XML never carries a DTD; EPUB's XHTML
  may carry ``<!DOCTYPE html ...>`` but never needs an ``<!ENTITY``. The libraries parse with
  entity resolution off as well (python-docx, python-pptx) or with defusedxml (openpyxl): two locks.
* an OLE2 file under an Office name is an encrypted OOXML package (it has an ``EncryptedPackage``
  stream: `document_encrypted`) or a legacy binary document (`document_malformed`).
"""

from __future__ import annotations

import re
import zipfile

from ingest.detect import OLE_MAGIC
from ingest.parsers.office.common import Refused, WorkerLimits

_XML_NAMES = re.compile(r"\.(xml|rels|opf|ncx|xhtml|html?|svg)$", re.IGNORECASE)
_PROLOG_BYTES = 64 * 1024
_ROOT_START = re.compile(rb"<[A-Za-z_]")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def check_ole(path: str) -> None:
    """Refuse an OLE2 file given an OOXML/EPUB name, saying which kind it is."""
    import olefile

    try:
        with olefile.OleFileIO(path) as ole:
            encrypted = ole.exists("EncryptedPackage")
    except Exception as exc:
        raise Refused("document_malformed", f"an OLE2 file that cannot be read: {type(exc).__name__}") from None
    if encrypted:
        raise Refused("document_encrypted", "an encrypted Office package")
    raise Refused("document_malformed", "a legacy binary Office file (.doc/.xls/.ppt); save it as .docx/.xlsx/.pptx")


def _prolog(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes up to its root element (at most 64 KB)."""
    head = b""
    with zf.open(info) as fh:
        while len(head) < _PROLOG_BYTES:
            piece = fh.read(4096)
            if not piece:
                break
            head += piece
            if _ROOT_START.search(head.replace(b"\x00", b"")):
                break
    return head


def check_zip(path: str, limits: WorkerLimits, *, allow_doctype: bool = False) -> None:
    with open(path, "rb") as fh:
        if fh.read(8) == OLE_MAGIC:
            check_ole(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise Refused("document_malformed", f"not a readable ZIP container: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise Refused("archive_limit", f"{len(infos):,} members; at most {limits.max_members:,}")
        total = sum(i.file_size for i in infos)
        if total > limits.max_unpacked:
            raise Refused("archive_limit", f"unpacks to {total:,} bytes; at most {limits.max_unpacked:,}")
        for info in infos:
            if info.flag_bits & 0x1:
                raise Refused("document_encrypted", f"the member {info.filename!r} is encrypted")
        for info in infos:
            if not _XML_NAMES.search(info.filename):
                continue
            try:
                head = _prolog(zf, info)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
                raise Refused("document_malformed", f"the member {info.filename!r} cannot be read: {exc}") from None
            if head.startswith(_UTF16_BOMS) or b"\x00" in head[:64]:
                head = head.replace(b"\x00", b"")
            upper = head.upper()
            if b"<!ENTITY" in upper or (not allow_doctype and b"<!DOCTYPE" in upper):
                raise Refused("xml_forbidden", f"in {info.filename!r}")
            if allow_doctype and b"<!DOCTYPE" in upper and b"[" in upper.split(b"<!DOCTYPE", 1)[1].split(b">", 1)[0]:
                raise Refused("xml_forbidden", f"an internal DTD subset in {info.filename!r}")
