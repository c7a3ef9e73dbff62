"""Normalisation, encoding detection, format detection and the error-code table."""

from __future__ import annotations

import codecs
import os
import random
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import errors
from ingest.decode import decode_text
from ingest.detect import clean_filename, detect_format
from ingest.normalize import normalize_text
from rag.errors import IngestError

ZH_CN = (
    "引导加载程序是启动过程的第二阶段，由 UEFI 启动。引导加载程序将系统内核映像和 initrd 映像加载到内存"
    "并将控制权交给它们。我认为学习一个计算机系统，就像学习一门新的外语。虽然教程和文档是有帮助的，但你必须自己练习。"
)
ZH_TW = (
    "這本書是自由且免費的；你可以在與 Debian 自由軟體引導方針（DFSG）兼容的任意版本的 GNU 通用公共許可證的"
    "條款下重新發布和/或修改本書。電腦系統從上電事件到能為使用者提供完整的作業系統功能為止，需要經歷幾個階段。"
)
FORBIDDEN = (
    [chr(c) for c in range(0x00, 0x20) if chr(c) not in "\t\n"]
    + ["\x7f", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200e", "\u200f", "\u061c"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + [chr(c) for c in range(0xE0000, 0xE0080)]
)


# --------------------------------------------------------------------------- normalize


def test_invisible_bidi_and_tag_characters_are_removed():
    dirty = (
        "ab\u200bc\u200cd\u200de\u2060f\ufeffg"  # zero-width
        "\u202eevil\u202c\u2066iso\u2069\u200e\u200f\u061c"  # bidi
        "flag\U000e0067\U000e0062\U000e007f"  # tag characters
        "\x00\x01\x07\x1b[31m\x7f"  # controls
    )
    assert normalize_text(dirty) == "abcdefgevilisoflag[31m"


def test_lone_surrogates_and_c1_controls_are_removed():
    assert normalize_text("a\ud800b\udfffc\x85d\x9be") == "abc\nde"


def test_line_endings_and_tabs():
    assert normalize_text("a\r\nb\rc\nd\te\x0cf\u2028g") == "a\nb\nc\nd\te\nf\ng"
    assert normalize_text("p1\u2029p2") == "p1\n\np2"


def test_nfc_not_nfkc():
    assert normalize_text("e\u0301") == "\u00e9"  # composed
    kept = "ＡＢＣ１２３，。！？（）ﬁ①"  # full-width, ligature, circled: NFKC would rewrite them
    assert normalize_text(kept) == kept
    assert normalize_text("e\u200b\u0301") == "\u00e9"  # an invisible between base and mark


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_normalize_is_idempotent_and_clean(s):
    out = normalize_text(s)
    assert normalize_text(out) == out
    assert unicodedata.is_normalized("NFC", out)
    assert not any(ch in out for ch in FORBIDDEN)
    assert "\r" not in out


# --------------------------------------------------------------------------- decode


@pytest.mark.parametrize("text", [ZH_CN, "中文", "你好，世界！", "English text with 中文 inside."])
def test_gbk_and_gb18030(text):
    for enc in ("gbk", "gb18030"):
        decoded, encoding = decode_text(text.encode(enc))
        assert decoded == text
        assert encoding == "gb18030"


@pytest.mark.parametrize("text", [ZH_TW, "中文", "繁體", "台灣", "這是一個測試", "注意：這個檔案"])
def test_big5_is_not_mistaken_for_gb18030(text):
    data = text.encode("big5")
    assert data.decode("gb18030")  # GB18030 decodes these bytes too, into wrong characters
    decoded, encoding = decode_text(data)
    assert decoded == text
    assert encoding == "big5"


def test_real_big5_and_gbk_documents():
    import gzip

    tw = gzip.open("/usr/share/debian-reference/debian-reference.zh-tw.txt.gz").read().decode("utf-8")
    cn = gzip.open("/usr/share/debian-reference/debian-reference.zh-cn.txt.gz").read().decode("utf-8")
    tw_big5 = tw.encode("big5", errors="ignore")
    assert decode_text(tw_big5) == (tw_big5.decode("big5"), "big5")
    cn_gbk = cn.encode("gbk", errors="ignore")
    assert decode_text(cn_gbk) == (cn_gbk.decode("gbk"), "gb18030")


def test_utf8_with_and_without_bom():
    assert decode_text(ZH_CN.encode("utf-8")) == (ZH_CN, "utf-8")
    assert decode_text(codecs.BOM_UTF8 + ZH_TW.encode("utf-8")) == (ZH_TW, "utf-8-sig")


@pytest.mark.parametrize("codec,name", [("utf-16-le", "utf-16-le"), ("utf-16-be", "utf-16-be")])
def test_utf16_with_bom(codec, name):
    bom = codecs.BOM_UTF16_LE if codec.endswith("le") else codecs.BOM_UTF16_BE
    text = "Hello 世界\n第二行 ünïcode"
    assert decode_text(bom + text.encode(codec)) == (text, name)
    assert decode_text(text.encode("utf-16")) == (text, "utf-16-le" if codecs.BOM_UTF16 == codecs.BOM_UTF16_LE else name)


def test_utf16_without_bom_ascii_heavy():
    assert decode_text("plain ascii text in utf-16".encode("utf-16-le")) == ("plain ascii text in utf-16", "utf-16-le")


def test_utf32_bom():
    text = "UTF-32 文本"
    assert decode_text(codecs.BOM_UTF32_LE + text.encode("utf-32-le")) == (text, "utf-32-le")


@pytest.mark.parametrize("text", ["naïve café résumé élan", "Straße", "Grüße aus Köln", "Preis: 5€ – “quoted”"])
def test_western_single_byte_text(text):
    assert decode_text(text.encode("cp1252")) == (text, "cp1252")


def test_empty_is_empty_file():
    with pytest.raises(IngestError) as exc:
        decode_text(b"")
    assert exc.value.code == "empty_file"


@pytest.mark.parametrize(
    "data",
    [
        os.urandom(4096) + b"\x00\x00",  # binary with NULs
        bytes(random.Random(1).randrange(0x80, 0x100) for _ in range(4096)) + b"\x01\x02\x03" * 200,
        b"\x00\x01\x02\x03" * 1000,
    ],
)
def test_binary_is_undecodable(data):
    with pytest.raises(IngestError) as exc:
        decode_text(data)
    assert exc.value.code == "undecodable_text"
    assert exc.value.status == 422


def test_invalid_utf16_after_bom_is_undecodable():
    with pytest.raises(IngestError) as exc:
        decode_text(codecs.BOM_UTF16_LE + b"\x00\xd8\x41")  # lone surrogate, odd length
    assert exc.value.code == "undecodable_text"


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_any_utf8_round_trips(s):
    if not s or any(0xD800 <= ord(c) <= 0xDFFF for c in s):
        return
    if _garbage(s):
        return
    assert decode_text(s.encode("utf-8"))[0] == s


def _garbage(s: str) -> bool:
    bad = sum(1 for c in s if c == "\ufffd" or (ord(c) < 32 and c not in "\t\n\r\x0c") or 0x7F <= ord(c) <= 0x9F)
    return bad > 0.02 * len(s) or "\x00" in s


# --------------------------------------------------------------------------- detect


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("a.pdf", "pdf"),
        ("A.PDF", "pdf"),
        ("notes.txt", "text"),
        ("README.md", "markdown"),
        ("x.markdown", "markdown"),
        ("page.html", "html"),
        ("page.HTM", "html"),
    ],
)
def test_detect_by_extension(name, fmt):
    head = b"%PDF-1.7\n" if fmt == "pdf" else b"hello"
    assert detect_format(name, head) == fmt


def test_pdf_magic_wins_over_the_extension():
    assert detect_format("looks-like-text.txt", b"%PDF-1.4\n%\xe2\xe3") == "pdf"
    assert detect_format("noext", b"\n\n%PDF-1.4\n") == "pdf"


@pytest.mark.parametrize("name", ["a.doc", "b.exe", "c", "d.pdf.zip", "archive.tar.gz", "img.gif", "deck.ppt"])
def test_unsupported_extension_is_415(name):
    with pytest.raises(IngestError) as exc:
        detect_format(name, b"some bytes")
    assert exc.value.code == "unsupported_type"
    assert exc.value.status == 415
    for ext in (".pdf", ".txt", ".md", ".markdown", ".html", ".htm"):
        assert ext in exc.value.message


def test_binary_content_under_a_text_name_is_unsupported():
    with pytest.raises(IngestError) as exc:
        detect_format("report.txt", b"PK\x03\x04\x14\x00\x06\x00")
    assert exc.value.code == "unsupported_type"
    assert "ZIP" in exc.value.message


def test_pdf_name_without_pdf_header_is_malformed():
    with pytest.raises(IngestError) as exc:
        detect_format("report.pdf", b"just text")
    assert exc.value.code == "pdf_malformed"


@pytest.mark.parametrize("name", ["", "   ", "a\x00b.txt", "x\n.txt", "dir/", "..", "../etc/passwd", "..\\x.txt", "a" * 10_000 + ".txt", "x\u202e.txt", None])
def test_bad_filenames(name):
    with pytest.raises(IngestError) as exc:
        clean_filename(name)
    assert exc.value.code == "bad_filename"
    assert exc.value.status == 400


# --------------------------------------------------------------------------- error table


def test_every_code_has_a_factory_with_its_status():
    made = {
        errors.empty_file(): 422,
        errors.unsupported_type("x.doc"): 415,
        errors.undecodable_text(): 422,
        errors.pdf_encrypted(): 422,
        errors.pdf_malformed("x"): 422,
        errors.pdf_no_text(): 422,
        errors.pdf_too_many_pages(3000, 2000): 422,
        errors.pdf_resource_limit("cpu"): 422,
        errors.repetitive_text(40, 100): 422,
        errors.file_too_large(10, 5): 413,
        errors.bad_filename("x"): 400,
        errors.no_text(): 422,
        errors.document_too_long(2_000_000, 1_000_000): 422,
        errors.too_many_chunks(20_000, 10_000): 422,
        errors.embed_time_limit(600.0, 10, 20): 422,
        errors.job_cancelled(): 409,
        **{errors.worker_refusal(code, "detail"): 422 for code in errors.WORKER_CODES - {errors.EMPTY_FILE}},
        # Job-only codes (never an HTTP response): the service's fault, not the input's.
        errors.interrupted(): 500,
        errors.internal("boom"): 500,
    }
    assert {e.code for e in made} == set(errors.ERROR_STATUS)
    for err, status in made.items():
        assert isinstance(err, IngestError)
        assert err.status == status == errors.ERROR_STATUS[err.code]
        assert err.to_dict() == {"code": err.code, "message": err.message} and err.message
