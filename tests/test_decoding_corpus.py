"""A corpus of encoded uploads, generated here: each case is a realistic paragraph (long) or a
sentence of about twenty characters (short, where detection is hardest) in one encoding, and the
exact text it must decode to, or the specific refusal. Every case goes through `decode_text` and
through `parse_document`, the entry point the upload path uses (`rag.service.pipeline.Pipeline`).

The rule under test (issue #12): correct text or a clear `undecodable_text`; never mojibake stored
as done.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import pytest

from ingest.decode import decode_text
from ingest.normalize import normalize_text
from ingest.parsers import parse_document
from ingest.parsers.html import declared_charset
from rag.errors import IngestError
from rag.settings import Settings

SETTINGS = Settings()

ZH_CN_LONG = (
    "长城是中国古代的军事防御工程，修筑历史可上溯到西周时期。春秋战国时期，各国为了防御邻国的进攻，"
    "纷纷在边境修筑长城。秦始皇统一六国后，把原来各国的长城连接起来，形成了西起临洮、东至辽东的万里长城。"
    "今天我们看到的长城，大部分是明朝修建的。"
)
ZH_CN_SHORT = "今天下午三点在会议室开会，请准时参加。"
ZH_CN_MIXED = "Linux 内核 6.1 版本发布了，新增了对 Rust 语言的支持。"
ZH_TW_LONG = (
    "臺北是臺灣最大的都市，也是政治、經濟與文化的中心。市區內有許多著名的景點，例如國立故宮博物院、"
    "臺北一零一大樓以及中正紀念堂。每年都有數以百萬計的觀光客來到這裡，品嚐道地的小吃，感受熱鬧的夜市氣氛。"
)
ZH_TW_SHORT = "請在週五之前繳交期末報告，謝謝大家。"
JA_LONG = (
    "日本の首都は東京です。東京には多くの観光地があり、毎年たくさんの人が訪れます。春には桜が咲き、"
    "公園で花見を楽しむ人々の姿が見られます。また、日本料理は世界中で人気があり、寿司やラーメンはよく知られています。"
)
JA_SHORT = "今日はとても良い天気ですね。散歩に行きましょう。"
KO_LONG = (
    "서울은 대한민국의 수도이며 가장 큰 도시입니다. 한강이 도시를 가로질러 흐르고, 많은 사람들이 "
    "강변 공원에서 산책을 즐깁니다. 경복궁과 같은 역사적인 건물과 현대적인 고층 빌딩이 함께 어우러져 있습니다."
)
KO_SHORT = "오늘은 날씨가 정말 좋네요. 산책하러 갈까요?"
EN_CONTROLS = (
    "Chapter one ends here.\f"
    "Chapter two starts on a new page.\x0bA vertical tab separates these lines. "
    "\x1b[1mBold\x1b[0m text from a terminal log, and a bell\x07 in the middle."
)

PARAGRAPHS = {
    "zh-cn-long": ZH_CN_LONG,
    "zh-cn-short": ZH_CN_SHORT,
    "zh-cn-mixed": ZH_CN_MIXED,
    "zh-tw-long": ZH_TW_LONG,
    "zh-tw-short": ZH_TW_SHORT,
}


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    filename: str
    text: str | None  # the exact decoded text (None: refused)
    encoding: str | None = None  # the encoding reported by decode_text (None: not checked)
    parsed: str | None = None  # doc.text when it differs from normalize_text(text)
    refusal: str | None = None  # a fragment of the undecodable_text message


def _html(title: str, body: str, charset: str | None) -> str:
    meta = f'<meta charset="{charset}">' if charset else ""
    return f"<!DOCTYPE html><html><head>{meta}<title>{title}</title></head><body><p>{body}</p></body></html>"


def _cases() -> list[Case]:
    out: list[Case] = []
    for name, text in PARAGRAPHS.items():
        out.append(Case(f"utf-8/{name}", text.encode("utf-8"), "a.txt", text, "utf-8"))
        out.append(Case(f"utf-8-bom/{name}", codecs.BOM_UTF8 + text.encode("utf-8"), "a.txt", text, "utf-8-sig"))
        for codec, bom in (("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)):
            out.append(Case(f"{codec}-bom/{name}", bom + text.encode(codec), "a.txt", text, codec))
            out.append(Case(f"{codec}-no-bom/{name}", text.encode(codec), "a.txt", text, codec))
    for name in ("zh-cn-long", "zh-cn-short", "zh-cn-mixed"):
        text = PARAGRAPHS[name]
        out.append(Case(f"gb18030/{name}", text.encode("gb18030"), "a.txt", text, "gb18030"))
        out.append(Case(f"gbk/{name}", text.encode("gbk"), "a.txt", text, "gb18030"))
    for name in ("zh-tw-long", "zh-tw-short"):
        text = PARAGRAPHS[name]
        out.append(Case(f"big5/{name}", text.encode("big5"), "a.txt", text, "big5"))
        out.append(Case(f"big5-markdown/{name}", f"# 公告\n\n{text}\n".encode("big5"), "a.md", f"# 公告\n\n{text}\n",
                        "big5", parsed=f"公告\n\n{text}"))

    # Japanese and Korean: decoded as what they are (never as Big5 / GB18030 mojibake).
    for name, text in (("ja-long", JA_LONG), ("ja-short", JA_SHORT)):
        out.append(Case(f"euc-jp/{name}", text.encode("euc-jp"), "a.txt", text, "euc-jp"))
        out.append(Case(f"shift_jis/{name}", text.encode("shift_jis"), "a.txt", text, "shift_jis"))
        out.append(Case(f"iso-2022-jp/{name}", text.encode("iso-2022-jp"), "a.txt", text, "iso-2022-jp"))
    for name, text in (("ko-long", KO_LONG), ("ko-short", KO_SHORT)):
        out.append(Case(f"euc-kr/{name}", text.encode("euc-kr"), "a.txt", text, "euc-kr"))
        out.append(Case(f"cp949/{name}", text.encode("cp949"), "a.txt", text, "euc-kr"))
        out.append(Case(f"utf-16-le-no-bom/{name}", text.encode("utf-16-le"), "a.txt", text, "utf-16-le"))

    # Plain ASCII with harmless control characters: accepted; FF and VT become line breaks, ESC and BEL go.
    out.append(Case("ascii-controls", EN_CONTROLS.encode("ascii"), "log.txt", EN_CONTROLS, "utf-8",
                    parsed=normalize_text(EN_CONTROLS)))
    short_ff = "Page one.\fPage two.\x0bEnd\x1b[0m"
    out.append(Case("ascii-controls-short", short_ff.encode("ascii"), "a.txt", short_ff, "utf-8",
                    parsed="Page one.\nPage two.\nEnd[0m"))

    # HTML: a correct declaration in GB18030 and Big5, a wrong one over UTF-8 bytes.
    for charset, codec, title, body, encoding in (
        ("gb18030", "gb18030", "长城", ZH_CN_LONG, "gb18030"),
        ("gb2312", "gb18030", "会议", ZH_CN_SHORT, "gb18030"),
        ("big5", "big5", "臺北", ZH_TW_LONG, "big5"),
        ("big5", "big5", "報告", ZH_TW_SHORT, "big5"),
    ):
        html = _html(title, body, charset)
        out.append(Case(f"html-meta-{charset}/{len(body)}", html.encode(codec), "p.html", html, encoding, parsed=body))
    for charset in ("gb18030", "big5", "shift_jis", "euc-kr", "iso-8859-1"):
        html = _html("长城", "长城是中国古代的军事防御工程。", charset)
        out.append(Case(f"html-wrong-meta-{charset}-over-utf-8", html.encode("utf-8"), "p.html", html, "utf-8",
                        parsed="长城是中国古代的军事防御工程。"))
    html = _html("長城", ZH_TW_SHORT, "gb18030")
    out.append(Case("html-wrong-meta-gb18030-over-big5", html.encode("big5"), "p.html", html, "big5", parsed=ZH_TW_SHORT))

    # Refusals: binary content, and bytes too short to tell Chinese from Japanese.
    out.append(Case("binary-nul", b"\x89ZZ\x00\x00\x01\x02\x00" * 64, "a.txt", None, refusal="NUL"))
    out.append(Case("ambiguous-two-characters", "失敗".encode("big5"), "a.txt", None, refusal="too little text"))
    return out


CASES = _cases()


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


def _decode(case: Case) -> tuple[str, str]:
    declared = declared_charset(case.data) if case.filename.endswith(".html") else None
    return decode_text(case.data, declared=declared)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_decode_text(case: Case):
    if case.text is None:
        with pytest.raises(IngestError) as exc:
            _decode(case)
        assert exc.value.code == "undecodable_text"
        assert case.refusal in exc.value.message
        assert "Tried" in exc.value.message or "tried" in exc.value.message
        return
    text, encoding = _decode(case)
    assert text == case.text
    if case.encoding is not None:
        assert encoding == case.encoding


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_parse_document(case: Case):
    if case.text is None:
        with pytest.raises(IngestError) as exc:
            parse_document(case.data, case.filename, SETTINGS)
        assert exc.value.code == "undecodable_text"
        return
    doc = parse_document(case.data, case.filename, SETTINGS)
    expected = case.parsed if case.parsed is not None else normalize_text(case.text)
    assert doc.text == expected
    if case.encoding is not None:
        assert doc.encoding == case.encoding


def test_corpus_covers_every_case_of_the_issue():
    ids = " ".join(_ids(CASES))
    for needle in (
        "euc-jp/", "shift_jis/", "iso-2022-jp/", "euc-kr/", "cp949/", "utf-8/", "utf-8-bom/",
        "utf-16-le-bom/", "utf-16-be-bom/", "utf-16-le-no-bom/", "utf-16-be-no-bom/", "gb18030/", "gbk/",
        "big5/", "ascii-controls", "html-meta-gb18030", "html-meta-big5", "html-wrong-meta-gb18030-over-utf-8",
        "big5-markdown/",
    ):
        assert needle in ids, needle
    short = [c for c in CASES if c.text is not None and "short" in c.id]
    assert short and all(len(c.text) <= 30 for c in short)


def test_euc_jp_and_euc_kr_are_not_stored_as_chinese():
    """The probe's cases: EUC-JP was stored as Big5, EUC-KR as GB18030."""
    for text, codec in ((JA_LONG, "euc-jp"), (JA_SHORT, "euc-jp"), (KO_LONG, "euc-kr"), (KO_SHORT, "euc-kr")):
        data = text.encode(codec)
        assert data.decode("big5", "ignore") != text and data.decode("gb18030", "ignore") != text
        assert decode_text(data) == (text, codec)


def test_utf8_under_a_wrong_meta_charset_is_utf8():
    """长城 in UTF-8 is 闀垮煄 in GB18030: the declaration loses to the bytes."""
    html = '<html><head><meta charset="gb18030"></head><body><p>长城</p></body></html>'
    doc = parse_document(html.encode("utf-8"), "p.html", SETTINGS)
    assert doc.text == "长城" and doc.encoding == "utf-8"


def test_utf16_without_bom_chinese_has_no_nul_pattern_to_go_by():
    """Pure Chinese UTF-16 has no NUL bytes at all; with a few ASCII characters it has some, but not
    in every other byte. Both are UTF-16 (the probe got "binary content (NUL bytes)")."""
    for text in (ZH_TW_SHORT, ZH_CN_LONG, "第1章\n" + ZH_CN_SHORT):
        for codec in ("utf-16-le", "utf-16-be"):
            assert decode_text(text.encode(codec)) == (text, codec)


def test_mostly_ascii_bytes_are_not_read_as_utf16():
    """ "Bush hid the facts": ASCII letter pairs read as UTF-16 are CJK characters."""
    text = "Minolta MRW raw ファイル"
    assert decode_text(text.encode("shift_jis")) == (text, "shift_jis")
    assert decode_text(b"Bush hid the facts") == ("Bush hid the facts", "utf-8")


def test_single_byte_cyrillic_is_not_read_as_chinese():
    for text in ("Ангола", "Сведения о системе", "Карузи"):
        decoded, encoding = decode_text(text.encode("cp1251"))
        assert decoded == text and encoding == "cp1251"


def test_refusal_names_what_was_tried():
    with pytest.raises(IngestError) as exc:
        decode_text("失敗".encode("big5"))
    message = exc.value.message
    assert exc.value.code == "undecodable_text" and exc.value.status == 422
    for name in ("UTF-8", "GB18030", "Big5", "EUC-JP", "Shift_JIS", "EUC-KR"):
        assert name in message
