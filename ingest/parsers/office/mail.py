"""E-mail: EML (the standard library's `email`, policy.default) and Outlook MSG (extract-msg).

* The headers people search by (From, To, Cc, Date, Subject) make the first block, one per line;
  the subject is the title.
* The body: text/plain, else text/html read by the HTML parser.
* Each attached document of a supported type is read in this same worker and its blocks follow
  under the section path ("Attachment: name", ...); an attached e-mail is read the same way, one
  level deeper. Other attachments (images, archives) are skipped, and so is a damaged or
  encrypted attached document.
* Bounded: `max_attachments` over all levels (`too_many_attachments`), `max_depth` levels
  (`attachments_too_deep`).
"""

from __future__ import annotations

from ingest.parsers.office.common import Out, Refused, library_errors

HEADERS = ("From", "To", "Cc", "Date", "Subject")
#: An attachment refused with one of these is skipped and the message still read: a damaged or
#: password-protected attachment is common and says nothing about the message itself.
SKIPPED_ATTACHMENT_CODES = frozenset({"document_malformed", "document_encrypted"})


def _header_block(out: Out, pairs: list[tuple[str, str]], prefix: tuple[str, ...]) -> None:
    lines = [f"{name}: {' '.join(str(value).split())}" for name, value in pairs if value and str(value).strip()]
    out.add("\n".join(lines), "paragraph", prefix)


def _body(out: Out, plain: str | None, html: str | bytes | None, prefix: tuple[str, ...]) -> None:
    from ingest.parsers.html import parse_html
    from ingest.parsers.text import parse_text

    if plain and plain.strip():
        out.add_parsed(parse_text(plain), prefix)
    elif html:
        out.add_parsed(parse_html(html), prefix)


def _attachment(out: Out, name: str, data: bytes, prefix: tuple[str, ...], depth: int) -> None:
    """Read one attached file if its type is supported (else skip it)."""
    from ingest.detect import detect_format
    from rag.errors import IngestError

    out.attachments += 1
    if out.attachments > out.limits.max_attachments:
        raise Refused("too_many_attachments", f"more than {out.limits.max_attachments}")
    if not data:
        return
    try:
        fmt = detect_format(name, data[:2048])
    except IngestError:
        return  # an archive, a legacy format: not a document we read
    if fmt == "image":
        return  # logos and signatures: OCR of every attached picture would cost more than it finds
    from ingest.parsers.doc_worker import extract_into

    try:
        extract_into(fmt, data, out, prefix + (f"Attachment: {name}",), depth + 1)
    except Refused as exc:
        if exc.code not in SKIPPED_ATTACHMENT_CODES:
            raise  # a limit (size, depth, count, time) or an attack stops the whole message


def _check_depth(out: Out, depth: int) -> None:
    if depth > out.limits.max_depth:
        raise Refused("attachments_too_deep", f"more than {out.limits.max_depth} levels")


def extract_eml(data: bytes, out: Out, prefix: tuple[str, ...] = (), depth: int = 0) -> None:
    import email
    from email import policy

    _check_depth(out, depth)
    with library_errors("e-mail: "):
        msg = email.message_from_bytes(data, policy=policy.default)
        pairs = [(h, str(msg.get(h, "") or "")) for h in HEADERS]
        body = msg.get_body(preferencelist=("plain", "html"))
        plain = html = None
        if body is not None:
            content = body.get_content()
            if body.get_content_type() == "text/html":
                html = content
            else:
                plain = content
        attachments = []
        for part in msg.iter_attachments():
            if part.get_content_type() == "message/rfc822":
                inner = part.get_payload()
                inner = inner[0] if isinstance(inner, list) and inner else inner
                raw = inner.as_bytes() if hasattr(inner, "as_bytes") else b""
                attachments.append(((part.get_filename() or "message.eml"), raw, True))
            else:
                payload = part.get_payload(decode=True) or b""
                attachments.append((part.get_filename() or "attachment", payload, False))
    _header_block(out, pairs, prefix)
    _body(out, plain, html, prefix)
    if depth == 0:
        out.title = " ".join(pairs[-1][1].split()) or None
    for name, payload, is_mail in attachments:
        if is_mail:
            out.attachments += 1
            if out.attachments > out.limits.max_attachments:
                raise Refused("too_many_attachments", f"more than {out.limits.max_attachments}")
            extract_eml(payload, out, prefix + (f"Attachment: {name}",), depth + 1)
        else:
            _attachment(out, name, payload, prefix, depth)


def _msg_message(msg, out: Out, prefix: tuple[str, ...], depth: int) -> None:
    _check_depth(out, depth)
    pairs = [("From", msg.sender), ("To", msg.to), ("Cc", msg.cc), ("Date", msg.date), ("Subject", msg.subject)]
    _header_block(out, [(k, "" if v is None else str(v)) for k, v in pairs], prefix)
    html = None
    if not (msg.body or "").strip():
        try:
            html = msg.htmlBody
        except Exception:
            html = None
    _body(out, msg.body, html, prefix)
    if depth == 0:
        out.title = " ".join(str(msg.subject or "").split()) or None
    for att in msg.attachments:
        name = getattr(att, "longFilename", None) or getattr(att, "shortFilename", None) or "attachment"
        data = att.data
        if hasattr(data, "attachments"):  # an attached Outlook message
            out.attachments += 1
            if out.attachments > out.limits.max_attachments:
                raise Refused("too_many_attachments", f"more than {out.limits.max_attachments}")
            _msg_message(data, out, prefix + (f"Attachment: {name}",), depth + 1)
        elif isinstance(data, bytes):
            _attachment(out, name, data, prefix, depth)


def extract_msg(path: str, out: Out, prefix: tuple[str, ...] = (), depth: int = 0) -> None:
    import logging

    import extract_msg

    logging.getLogger("extract_msg").setLevel(logging.CRITICAL)
    with library_errors("Outlook message: "):
        msg = extract_msg.openMsg(path, delayAttachments=False)
        try:
            _msg_message(msg, out, prefix, depth)
        finally:
            msg.close()
