"""Parsers: exact offsets, structure, real Debian documents, and hostile PDFs in the sandbox."""

from __future__ import annotations

import gzip
import io
import re
import resource
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.normalize import normalize_text
from ingest.parsers import parse_document
from ingest.parsers.markdown import parse_markdown
from ingest.parsers.pdf import build_pdf_document, extract_pdf_pages
from ingest.parsers.text import parse_text
from rag.errors import IngestError
from rag.settings import Settings

from tests.helpers_ingest import (
    DEBIAN_REFERENCE,
    debian_reference_pdf,
    make_pdf,
    parsed_reference_pdf,
    text_stream,
    zlib_zeros,
)

SETTINGS = Settings()


def assert_offsets_exact(doc):
    assert normalize_text(doc.text) == doc.text
    prev_end = 0
    for b in doc.blocks:
        piece = doc.text[b.start:b.end]
        assert piece and piece == piece.strip(), (b, piece)
        assert b.start >= prev_end
        prev_end = b.end
    for p in doc.pages:
        assert 0 <= p.start <= p.end <= len(doc.text)


def expect_error(code, fn, *args, **kwargs):
    with pytest.raises(IngestError) as exc:
        fn(*args, **kwargs)
    assert exc.value.code == code, exc.value.message
    return exc.value


# --------------------------------------------------------------------------- dispatch and errors


def test_zero_bytes_is_empty_file():
    for name in ("a.txt", "a.pdf", "a.md", "a.html"):
        err = expect_error("empty_file", parse_document, b"", name, SETTINGS)
        assert err.status == 422


def test_whitespace_only_text_is_empty_file():
    expect_error("empty_file", parse_document, b" \n\n\t \r\n", "a.txt", SETTINGS)
    expect_error("empty_file", parse_document, b"<html><body><script>x()</script></body></html>", "a.html", SETTINGS)


def test_unsupported_extension_is_415():
    err = expect_error("unsupported_type", parse_document, b"hello", "a.doc", SETTINGS)
    assert err.status == 415


def test_too_large_is_413():
    small = Settings(max_upload_bytes=10)
    err = expect_error("file_too_large", parse_document, b"x" * 11, "a.txt", small)
    assert err.status == 413


# --------------------------------------------------------------------------- text


def test_text_paragraphs_and_list_items():
    raw = "第一段第一行\n第一段第二行。\n\nSecond paragraph,\nstill second.\n\n- apple\n- banana\n  more banana\n1. one\n2) two\n\n一、甲\n（二）乙\n"
    doc = parse_document(raw.encode("utf-8"), "notes.txt", SETTINGS)
    assert_offsets_exact(doc)
    got = [(b.kind, doc.text[b.start:b.end]) for b in doc.blocks]
    assert got == [
        ("paragraph", "第一段第一行第一段第二行。"),  # CJK wrapping removed
        ("paragraph", "Second paragraph,\nstill second."),
        ("list_item", "- apple"),
        ("list_item", "- banana\nmore banana"),
        ("list_item", "1. one"),
        ("list_item", "2) two"),
        ("list_item", "一、甲"),
        ("list_item", "（二）乙"),
    ]
    assert doc.encoding == "utf-8" and doc.format == "text"
    # consecutive list items are joined by one newline
    assert "- apple\n- banana" in doc.text


def test_text_cleans_invisible_characters_and_crlf():
    raw = "a\u200bb\r\nc\u202ed\U000e0041\r\n\r\nnext"
    doc = parse_document(raw.encode("utf-8"), "x.txt", SETTINGS)
    assert doc.text == "ab\ncd\n\nnext"


def test_text_in_gbk_and_big5():
    zh = "中文文本。第二句！"
    assert parse_document(zh.encode("gbk"), "a.txt", SETTINGS).text == zh
    tw = "繁體中文。第二句！"
    doc = parse_document(tw.encode("big5"), "a.txt", SETTINGS)
    assert doc.text == tw and doc.encoding == "big5"


def test_real_debian_reference_text():
    data = gzip.open(f"{DEBIAN_REFERENCE}/debian-reference.zh-tw.txt.gz").read()
    doc = parse_document(data, "debian-reference.zh-tw.txt", SETTINGS)
    assert_offsets_exact(doc)
    assert len(doc.blocks) > 1000
    assert "旨在爲運行" in doc.text


# --------------------------------------------------------------------------- markdown


MD = """---
title: "Front Title"
author: x
---

Intro paragraph with **bold**, *em*, `code_span`, [a link](https://example.com/x) and ![alt text](i.png).

# Chapter One

Text under chapter one.

## Section 1.1

- item one
- item **two**
  continued
1. first

```python
# not a heading
def f():
    return 1
```

Setext Title
============

Sub Setext
----------

| col a | col b |
|-------|-------|
| 1     | 2     |

    indented code

> quoted text
"""


def test_markdown_structure():
    doc = parse_document(MD.encode("utf-8"), "doc.md", SETTINGS)
    assert_offsets_exact(doc)
    assert doc.title == "Front Title"
    blocks = [(b.kind, doc.text[b.start:b.end], b.section_path) for b in doc.blocks]
    assert blocks[0] == ("paragraph", "Intro paragraph with bold, em, code_span, a link and alt text.", ())
    assert ("heading", "Chapter One", ("Chapter One",)) in blocks
    assert ("paragraph", "Text under chapter one.", ("Chapter One",)) in blocks
    assert ("heading", "Section 1.1", ("Chapter One", "Section 1.1")) in blocks
    assert ("list_item", "item one", ("Chapter One", "Section 1.1")) in blocks
    assert ("list_item", "item two\ncontinued", ("Chapter One", "Section 1.1")) in blocks
    assert ("list_item", "1. first", ("Chapter One", "Section 1.1")) in blocks
    code = [t for k, t, _ in blocks if k == "code"]
    assert code[0] == "# not a heading\ndef f():\n    return 1"
    assert code[1] == "indented code"
    assert ("heading", "Setext Title", ("Setext Title",)) in blocks
    assert ("heading", "Sub Setext", ("Setext Title", "Sub Setext")) in blocks
    assert ("table", "col a: 1 | col b: 2", ("Setext Title", "Sub Setext")) in blocks
    assert ("paragraph", "quoted text", ("Setext Title", "Sub Setext")) in blocks
    assert "not a heading" not in [p[-1] for _, _, p in blocks if p]


def test_markdown_title_falls_back_to_first_h1():
    doc = parse_markdown("## sub\n\n# Main Title\n\ntext\n")
    assert doc.title == "Main Title"


# --------------------------------------------------------------------------- html


def test_html_basics():
    html = """<html><head><title> The  Title </title><style>p{}</style><script>var x = "secret";</script></head>
    <body><nav>menu items</nav><header>site banner</header>
    <main><article><header><h1>Article Head</h1></header>
    <p>First   para
    with <b>bold</b> and<br>a break.</p>
    <h2>Part <em>A</em></h2><ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>
    <pre>code  line 1
  code line 2</pre>
    <table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>
    <div hidden>hidden text</div><p style="display:none">invisible</p>
    <h3>Deep</h3><p>中文第一行
    中文第二行</p><h2>Part B</h2><p>b text</p></article></main>
    <footer>copyright footer</footer></body></html>"""
    doc = parse_document(html.encode("utf-8"), "page.html", SETTINGS)
    assert_offsets_exact(doc)
    assert doc.title == "The Title"
    got = [(b.kind, doc.text[b.start:b.end], b.section_path) for b in doc.blocks]
    assert got == [
        ("heading", "Article Head", ("Article Head",)),
        ("paragraph", "First para with bold and\na break.", ("Article Head",)),
        ("heading", "Part A", ("Article Head", "Part A")),
        ("list_item", "one", ("Article Head", "Part A")),
        ("list_item", "two", ("Article Head", "Part A")),
        ("list_item", "nested", ("Article Head", "Part A")),
        ("code", "code  line 1\n  code line 2", ("Article Head", "Part A")),
        ("table", "k: a | v: 1", ("Article Head", "Part A")),
        ("heading", "Deep", ("Article Head", "Part A", "Deep")),
        ("paragraph", "中文第一行中文第二行", ("Article Head", "Part A", "Deep")),
        ("heading", "Part B", ("Article Head", "Part B")),
        ("paragraph", "b text", ("Article Head", "Part B")),
    ]
    for junk in ("secret", "menu", "banner", "hidden text", "invisible", "copyright"):
        assert junk not in doc.text


def test_html_declared_charset():
    html = '<html><head><meta charset="big5"><title>標題</title></head><body><p>繁體中文內容</p></body></html>'
    doc = parse_document(html.encode("big5"), "p.htm", SETTINGS)
    assert doc.text == "繁體中文內容" and doc.title == "標題"


def test_html_deep_nesting_does_not_overflow():
    html = "<div>" * 5000 + "deep text" + "</div>" * 5000
    doc = parse_document(html.encode(), "deep.html", SETTINGS)
    assert "deep text" in doc.text


def test_real_zh_tw_reference_html_headings_become_section_paths():
    data = open(f"{DEBIAN_REFERENCE}/ch03.zh-tw.html", "rb").read()
    doc = parse_document(data, "ch03.zh-tw.html", SETTINGS)
    assert_offsets_exact(doc)
    assert doc.title == "章 3. 系統初始化"
    headings = {doc.text[b.start:b.end]: b.section_path for b in doc.blocks if b.kind == "heading"}
    assert headings["3.1.1. 第一階段：UEFI"] == ("章 3. 系統初始化", "3.1. 啓動過程概述", "3.1.1. 第一階段：UEFI")
    assert headings["3.2. Systemd 初始化"] == ("章 3. 系統初始化", "3.2. Systemd 初始化")
    uefi = [b for b in doc.blocks if b.kind == "paragraph" and "統一可擴充套件韌體介面" in doc.text[b.start:b.end]]
    assert uefi and uefi[0].section_path[-1] == "3.1.1. 第一階段：UEFI"
    assert "前一頁" not in doc.text  # DocBook navigation dropped
    assert any(b.kind == "table" for b in doc.blocks) and any(b.kind == "code" for b in doc.blocks)


def test_real_zh_cn_faq_html():
    import glob

    files = sorted(glob.glob("/usr/share/doc/debian/FAQ/zh-cn/*.html"))
    assert files
    for path in files[:5]:
        doc = parse_document(open(path, "rb").read(), path.rsplit("/", 1)[-1], SETTINGS)
        assert_offsets_exact(doc)
        assert any(b.kind == "heading" for b in doc.blocks)


# --------------------------------------------------------------------------- pdf: real documents


def test_real_zh_cn_reference_pdf_pages_and_structure():
    import pypdf

    doc = parsed_reference_pdf("zh-cn")
    assert_offsets_exact(doc)
    reader = pypdf.PdfReader(debian_reference_pdf("zh-cn"))
    assert doc.page_count == len(reader.pages) == 251
    assert [p.number for p in doc.pages] == list(range(1, 252))
    assert doc.title == "Debian 参考手册"
    for b in doc.blocks:
        span = doc.pages[b.page - 1]
        assert span.start <= b.start and b.end <= span.end
    # a distinctive passage of page N, read by pypdf directly, lies on page N of the document
    for n in (30, 101, 200):
        page_text = reader.pages[n - 1].extract_text()
        line = max(re.findall("[\u4e00-\u9fff，。、；：“”（）]+", page_text), key=len)
        assert len(line) >= 12
        at = doc.text.find(line)
        assert at >= 0 and doc.text.find(line, at + 1) < 0, line
        span = doc.pages[n - 1]
        assert span.start <= at < span.end
        block = next(b for b in doc.blocks if b.start <= at < b.end)
        assert block.page == n
    headings = [doc.text[b.start:b.end] for b in doc.blocks if b.kind == "heading"]
    assert "1.1.1 shell 提示符" in headings and "Chapter 1 GNU/Linux 教程" in headings
    sample = next(b for b in doc.blocks if "引导加载程序是启动过程的第二阶段" in doc.text[b.start:b.end])
    assert sample.section_path[-1] == "3.1.2 第二阶段：引载加载程序"
    assert "Debian 参考手册 73/ 223" not in doc.text  # running header dropped


def test_pdf_words_keep_their_spaces():
    doc = parsed_reference_pdf("en")
    assert "helpful, you have to practice it yourself" in doc.text


def test_faq_pdf_via_parse_document():
    data = gzip.open("/usr/share/doc/debian/FAQ/debian-faq.en.pdf.gz").read()
    doc = parse_document(data, "debian-faq.en.pdf", SETTINGS)
    assert_offsets_exact(doc)
    assert doc.page_count > 20 and len(doc.text) > 50_000


# --------------------------------------------------------------------------- pdf: generated


def test_generated_pdf_pages():
    data = make_pdf([text_stream("Hello page one.", "Second line."), text_stream("Page two here.")])
    doc = parse_document(data, "two.pdf", SETTINGS)
    assert_offsets_exact(doc)
    assert [(p.number, doc.text[p.start:p.end]) for p in doc.pages] == [
        (1, "Hello page one.\nSecond line."),
        (2, "Page two here."),
    ]
    assert [b.page for b in doc.blocks] == [1, 2]


def test_truncated_pdf_is_malformed():
    data = open(debian_reference_pdf("en"), "rb").read()
    expect_error("pdf_malformed", parse_document, data[: int(len(data) * 0.3)], "cut.pdf", SETTINGS)


def test_garbage_after_pdf_header_is_malformed():
    expect_error("pdf_malformed", parse_document, b"%PDF-1.7\n" + b"garbage " * 100, "g.pdf", SETTINGS)


def test_blank_pdf_has_no_text():
    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_blank_page(612, 792)
    buf = io.BytesIO()
    writer.write(buf)
    err = expect_error("pdf_no_text", parse_document, buf.getvalue(), "scan.pdf", SETTINGS)
    assert "OCR" in err.message


def _has_cryptography() -> bool:
    import importlib.util

    return importlib.util.find_spec("cryptography") is not None


def _encrypted(user_password: str, algorithm: str = "RC4-128") -> bytes:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(make_pdf([text_stream("Top secret text.")])))
    writer = pypdf.PdfWriter()
    writer.append(reader)
    writer.encrypt(user_password=user_password, owner_password="owner-pw", algorithm=algorithm)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def test_encrypted_pdf_with_user_password():
    expect_error("pdf_encrypted", parse_document, _encrypted("user-pw"), "locked.pdf", SETTINGS)


def test_encrypted_pdf_with_empty_user_password_is_read():
    doc = parse_document(_encrypted(""), "owner-only.pdf", SETTINGS)
    assert doc.text == "Top secret text."


@pytest.mark.skipif(not _has_cryptography(), reason="AES needs the cryptography package")
def test_aes_encrypted_pdf():
    expect_error("pdf_encrypted", parse_document, _encrypted("user-pw", "AES-256"), "aes.pdf", SETTINGS)
    assert parse_document(_encrypted("", "AES-256"), "aes-open.pdf", SETTINGS).text == "Top secret text."


def test_too_many_pages():
    data = make_pdf([text_stream(f"page {i}") for i in range(3)])
    err = expect_error("pdf_too_many_pages", parse_document, data, "p.pdf", Settings(max_pdf_pages=2))
    assert "3" in err.message


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_flate_bomb_is_refused_with_bounded_parent_memory():
    bomb = zlib_zeros(2 << 30)  # inflates to 2 GiB
    assert len(bomb) < 4 << 20
    data = make_pdf([bomb], raw_filter=b"/FlateDecode")
    before = _peak_rss_mb()
    t0 = time.monotonic()
    err = expect_error("pdf_resource_limit", extract_pdf_pages, data, wall_seconds=20, memory_mb=512, cpu_seconds=10)
    assert time.monotonic() - t0 < 20
    assert _peak_rss_mb() - before < 50
    assert err.status == 422


def test_memory_limit_of_the_worker():
    # 70 MB of zeros: under pypdf's own 75 MB inflate limit, over a 100 MB address-space limit.
    data = make_pdf([zlib_zeros(70 << 20)], raw_filter=b"/FlateDecode")
    before = _peak_rss_mb()
    err = expect_error("pdf_resource_limit", extract_pdf_pages, data, memory_mb=100, wall_seconds=30)
    assert "memory" in err.message
    assert _peak_rss_mb() - before < 50
    # the same limit is plenty for an ordinary PDF
    assert [p.strip() for p in extract_pdf_pages(make_pdf([text_stream("ok")]), memory_mb=100).pages] == ["ok"]


def test_cpu_limit_of_the_worker():
    data = open(debian_reference_pdf("en"), "rb").read()
    t0 = time.monotonic()
    err = expect_error("pdf_resource_limit", extract_pdf_pages, data, cpu_seconds=1, wall_seconds=60)
    assert "CPU" in err.message
    assert time.monotonic() - t0 < 15


def test_wall_clock_limit_of_the_worker():
    data = open(debian_reference_pdf("en"), "rb").read()
    t0 = time.monotonic()
    err = expect_error("pdf_resource_limit", extract_pdf_pages, data, cpu_seconds=100, wall_seconds=1.0)
    assert "wall-clock" in err.message
    assert time.monotonic() - t0 < 5


def test_settings_limits_reach_the_worker():
    data = open(debian_reference_pdf("en"), "rb").read()
    expect_error("pdf_resource_limit", parse_document, data, "en.pdf", Settings(parse_cpu_seconds=1, parse_wall_seconds=60))


# --------------------------------------------------------------------------- properties

_PIECES = st.sampled_from(
    ["中文句子。", "没有标点的中文", "Hello world.", " ", "\n", "\n\n", "- item", "1. step", "# 标题", "## Sub",
     "```", "    code", "> quote", "**bold**", "e.g. this", "3.14", "\u200b", "\r\n", "\t", "|a|b|", "===", "---",
     "<b>x</b>", "繁體字", "\U000e0041", "é", "e\u0301"]
)


@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=40))
@settings(max_examples=150, deadline=None)
def test_offsets_are_exact_for_any_text_and_markdown(pieces):
    raw = "".join(pieces)
    for doc in (parse_text(raw), parse_markdown(raw)):
        assert_offsets_exact(doc)


@given(st.lists(st.sampled_from(["Line one.", "第二行", "", "  ", "Chapter 1", "Intro", "1.1 Basics", "1.2 More"]), max_size=30), st.integers(1, 4))
@settings(max_examples=100, deadline=None)
def test_pdf_structure_offsets_are_exact(lines, n_pages):
    pages = ["\n".join(lines[i::n_pages]) for i in range(n_pages)]
    doc = build_pdf_document(pages)
    assert_offsets_exact(doc)
    assert [p.number for p in doc.pages] == list(range(1, n_pages + 1))
    for b in doc.blocks:
        span = doc.pages[b.page - 1]
        assert span.start <= b.start and b.end <= span.end
