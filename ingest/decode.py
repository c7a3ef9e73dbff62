"""Bytes of a text upload -> str, with the encoding that was used.

The rule: correct text or a clear refusal (`undecodable_text`, saying what was tried); never
mojibake marked done. A candidate encoding is taken only when the bytes decode *strictly* with it
and the decoded text *reads plausibly*; a declared charset (HTML ``<meta>``, XML declaration) is
one more candidate, checked against the bytes like the others, never trusted.

Order:

1. Empty -> `empty_file`.
2. A byte-order mark: UTF-8 (``utf-8-sig``), UTF-32 LE/BE, UTF-16 LE/BE. The rest must decode
   strictly and not be mostly controls or replacement characters, else `undecodable_text`.
3. ISO-2022-JP / ISO-2022-KR: 7-bit text with their escape sequences (``ESC $ B`` ...), decoded
   strictly. The escapes are structural proof; plain strict UTF-8 would keep them as ESC bytes.
4. Strict UTF-8 (ASCII included) without NUL bytes. Valid UTF-8 with non-ASCII characters is
   strong evidence on its own; it loses only to a *declared* legacy charset whose reading is
   clearly more plausible (it never does on real text: see `_declared_beats_utf8`).
5. Everything else is a competition between the strict decodings in `_CANDIDATES`: UTF-16 LE/BE
   without a BOM, GB18030 (GBK, GB2312), Big5 (cp950, then Big5-HKSCS), EUC-JP, Shift_JIS (cp932),
   EUC-KR (CP949), and the declared charset if any. Each reading gets a plausibility score
   (`plausibility`): the weighted share of its non-ASCII characters that belong to the frequent
   repertoire of that encoding's language, with structural checks on top of frequency:

   * which byte ranges and lead/trail pairs are valid is settled by the strict decode;
   * Japanese must contain kana (Japanese prose is roughly a third kana; Chinese has none), and
     its small kana (ゃ, ゅ, ァ ...) and long-vowel mark must follow a kana, as they do in real text;
   * Korean must be Hangul (modern Korean uses almost no Hanja; GB2312 Chinese read as EUC-KR is
     half Hanja) from the KS X 1001 repertoire (the 2,350 syllables in everyday use);
   * Chinese must have neither kana nor Hangul, and Han characters separated by spaces (how
     Korean words are written, never Chinese prose) count against it;
   * a single CJK character glued inside a Latin word ("l誕ppareil") is how an accented Western
     letter reads in a two-byte encoding, and counts against every CJK reading;
   * private-use, unassigned and control characters count as garbage in every reading.

   The best reading wins if it reaches `MIN_SCORE`. When readings of other languages come within
   `AMBIGUITY_MARGIN` of it, frequency sets cannot decide (EUC-KR Hangul are GB2312 level-1 bytes;
   EUC-JP kana read as Big5 are frequent characters), so chardet's byte-bigram models, trained
   on real text, do (`bigram_scores`): Chinese wins a tie when the other language scores under
   `ZH_BIGRAM_RATIO` of it, Japanese or Korean only under `OTHER_BIGRAM_RATIO` and with at least
   `MIN_OTHER_LETTERS` characters of evidence (Chinese is the product's language, so the prior
   favours it). Otherwise the bytes are refused, not guessed ("失敗" in Big5 is also ア英 in
   EUC-JP). Simplified against Traditional goes to the bigram winner, else to the frequency score.
   NUL bytes that no UTF-16 reading explains mean binary content -> `undecodable_text`.
   Every CJK winner must also beat the single-byte code pages on chardet's bigram models (see 6):
   Cyrillic letter pairs in cp1251 are valid GB18030 too.
   UTF-16 without a BOM is not considered for NUL-free bytes that look like ASCII text (spaces,
   letter pairs: "Bush hid the facts"); legacy readings are not considered when there are NULs.
6. Single-byte code pages (`_SINGLE_BYTE`: Windows-1252 first, then Cyrillic, Central European,
   Greek, Turkish), each only if its reading is alphabetic in the shape of real words
   (`_alphabetic`); a later one replaces an earlier one only when chardet's bigram model fits it
   twice as well. A declared code page of another kind (``windows-1251``) is used before that if
   it decodes into letters.
7. chardet as a last resort for other code pages (Hebrew, Arabic, Thai ...); its answer is taken
   only if it is not a CJK or Unicode encoding (all judged above) and reads as letters.

Japanese and Korean are not languages the product answers in, but their legacy encodings
(EUC-JP, Shift_JIS, ISO-2022-JP, EUC-KR/CP949) are *decoded as what they are* rather than refused:
UTF-8 Japanese and Korean have always been accepted, so refusing the same text in its legacy
encoding would make the decoder, not the product, decide what languages are allowed; a Chinese
document quoting Japanese must not be refused; and the text stored is then exactly the text
written, never mojibake. What is refused is the *ambiguous* case (too little text to tell
Japanese or Korean from Chinese), with a message naming the encodings that were tried.

Harmless control characters (form feed, vertical tab, ESC, backspace, DOS end-of-file) are kept
for `ingest.normalize.normalize_text`, which turns form feed and vertical tab into line breaks and
drops the others. A text is refused as binary only when more than 2% of it is NUL, replacement,
C1 or other C0 control characters.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from ingest import errors
from rag.errors import IngestError

MIN_SCORE = 0.75
AMBIGUITY_MARGIN = 0.1
#: A tie between languages is settled by the bigram statistics when the loser scores at most this
#: share of the winner: more generously for Chinese (the product's language) than for the others.
ZH_BIGRAM_RATIO = 0.7
OTHER_BIGRAM_RATIO = 0.5
MIN_OTHER_LETTERS = 4
KANALESS_JAPANESE = 0.92
MAX_GARBAGE_RATIO = 0.02
_SAMPLE_CHARS = 200_000

_CJK_PUNCT = frozenset(
    "，。、；：？！“”‘’（）《》〈〉【】「」『』〔〕〖〗—…·～￥％＃＆＊＋－／＝＠　・ー〃々〆〇〜※"
    "．＿｜＜＞［］｛｝＂＇＄＾｀０１２３４５６７８９︰︱﹁﹂﹃﹄"
)
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")
# NUL, replacement character, C1 controls and the C0 controls that never occur in text. Form feed,
# vertical tab, ESC (ANSI colours), backspace (overstrike) and SUB (DOS end of file) are harmless.
_GARBAGE_RE = re.compile("[\x00-\x07\x0e-\x19\x1c-\x1f\x7f-\x9f\ufffd]")
_HAN_SPACE_HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff] +(?=[\u3400-\u4dbf\u4e00-\u9fff])")
# One CJK character between ASCII letters, or starting a word that goes on in ASCII letters: what an
# accented Western letter and the ASCII letter after it become when read as a two-byte encoding
# ("l’appareil" in cp1252 read as Shift_JIS is "l誕ppareil"). Real text glues whole CJK words to
# ASCII ("用Python写代码", "USB에서"), not single characters inside a Latin word.
_GLUED_RE = re.compile(r"(?:(?<=[A-Za-z])|(?<![^\s(\"'])|^)[^\x00-\x7f](?=[A-Za-z])")
_ISO2022_ESC_RE = re.compile(rb"\x1b(?:\$[@AB(]|\$\)C|\(J|\(I)")
_SMALL_VOWELS = frozenset("ぁぃぅぇぉゎァィゥェォヮ")  # follow a kana (ファ, ティ, ウォ)
_SMALL_YA = frozenset("ゃゅょャュョ")  # follow a kana of the i column (きゃ, シュ, ニョ)
_I_COLUMN = frozenset("きしちにひみりぎじぢびぴキシチニヒミリギジヂビピヴ")
_SMALL_TSU = frozenset("っッ")  # follows a kana or kanji (言って, あっ)
_LONG_MARK = "ー"

_LANG_NAMES = {"zh-Hans": "Simplified Chinese", "zh-Hant": "Traditional Chinese", "ja": "Japanese", "ko": "Korean"}


# --------------------------------------------------------------------------- character repertoires


def _rows(codec: str, leads: range, trails: range) -> frozenset[str]:
    out: set[str] = set()
    for lead in leads:
        for trail in trails:
            try:
                out.add(bytes((lead, trail)).decode(codec))
            except UnicodeDecodeError:
                pass
    return frozenset(c for c in out if len(c) == 1)


@lru_cache(maxsize=None)
def _repertoire(name: str) -> frozenset[str]:
    """Character sets taken from the national standards through Python's own codecs.

    gb1/gb2: GB2312 levels 1 and 2 (3,755 frequent / 3,008 less frequent Simplified characters);
    big5_1/big5_2: Big5 levels 1 and 2 (5,401 / 7,652 Traditional); jis1/jis2: JIS X 0208 levels 1
    and 2 (2,965 / 3,390 kanji); ks_hangul: the 2,350 Hangul syllables of KS X 1001; ks_hanja: its
    4,888 Hanja.
    """
    hi = range(0xA1, 0xFF)
    big5_trails = range(0x40, 0xFF)
    if name == "gb1":
        return _rows("gb2312", range(0xB0, 0xD8), hi)
    if name == "gb2":
        return _rows("gb2312", range(0xD8, 0xF8), hi)
    if name == "big5_1":
        return frozenset(c for c in _rows("cp950", range(0xA4, 0xC7), big5_trails) if "\u3400" <= c)
    if name == "big5_2":
        return frozenset(c for c in _rows("cp950", range(0xC9, 0xFA), big5_trails) if "\u3400" <= c)
    if name == "jis1":
        return _rows("euc_jp", range(0xB0, 0xD0), hi)
    if name == "jis2":
        return _rows("euc_jp", range(0xD0, 0xF5), hi)
    if name == "ks_hangul":
        return _rows("euc_kr", range(0xB0, 0xC9), hi)
    if name == "ks_hanja":
        return _rows("euc_kr", range(0xCA, 0xFE), hi)
    raise KeyError(name)


def _is_han(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" or "\uf900" <= c <= "\ufaff" or c >= "\U00020000"


def _is_kana(c: str) -> bool:
    return "\u3041" <= c <= "\u30fa" or c == _LONG_MARK


def _is_hangul(c: str) -> bool:
    return "\uac00" <= c <= "\ud7a3"


def _is_garbage(c: str) -> bool:
    """Never part of a plausible reading: controls, replacement, private-use, unassigned, surrogates."""
    return _GARBAGE_RE.match(c) is not None or unicodedata.category(c) in ("Cn", "Co", "Cs")


def _weight(c: str, lang: str) -> float:
    """How typical one non-ASCII character is of running text in `lang` (0: impossible, 1: common)."""
    if _is_garbage(c):
        return 0.0
    if c in _CJK_PUNCT:
        return 1.0
    if _is_han(c):
        if lang == "zh-Hans":
            return 1.0 if c in _repertoire("gb1") else 0.7 if c in _repertoire("gb2") else 0.4
        if lang == "zh-Hant":
            return 1.0 if c in _repertoire("big5_1") else 0.7 if c in _repertoire("big5_2") else 0.4
        if lang == "ja":
            return 1.0 if c in _repertoire("jis1") else 0.7 if c in _repertoire("jis2") else 0.4
        if lang == "ko":
            return 0.5 if c in _repertoire("ks_hanja") else 0.2
        # any: the best of the four
        return max(_weight(c, lang) for lang in ("zh-Hans", "zh-Hant", "ja"))
    if _is_kana(c):
        return 1.0 if lang in ("ja", "any") else 0.0
    if _is_hangul(c):
        if lang in ("ko", "any"):
            return 1.0 if c in _repertoire("ks_hangul") else 0.4
        return 0.0
    if "\uff61" <= c <= "\uff9f":  # half-width katakana: Shift_JIS has them, other text does not
        return 0.6 if lang in ("ja", "any") else 0.0
    if "\u3131" <= c <= "\u318e":  # Hangul compatibility jamo (ㅋㅋ)
        return 0.5 if lang in ("ko", "any") else 0.0
    if "\u3105" <= c <= "\u312f":  # bopomofo: Taiwanese annotations, rare in running text
        return 0.3 if lang in ("zh-Hant", "any") else 0.1
    cat = unicodedata.category(c)
    if cat[0] == "L":
        if "\u00c0" <= c <= "\u024f":  # accented Latin: quoted Western names
            return 0.5 if lang == "any" else 0.3
        return 0.5 if lang == "any" else 0.1  # Greek/Cyrillic letters that CJK tables carry
    if cat[0] in "PZ":
        return 0.8
    return 0.3  # symbols: arrows, circled numbers, box drawing


def _kana_order_faults(text: str) -> int:
    """Kana that cannot stand where they do in Japanese: a small ゃ/ゅ/ょ not after an i-column kana,
    a small vowel or long-vowel mark not after a kana, a small っ not after a kana or kanji.
    Chinese bytes read as Japanese land on kana rows at random and break these rules."""
    faults = 0
    prev = ""
    for c in text:
        if c in _SMALL_YA:
            faults += prev not in _I_COLUMN
        elif c in _SMALL_VOWELS or c == _LONG_MARK:
            faults += not _is_kana(prev)
        elif c in _SMALL_TSU:
            faults += not (_is_kana(prev) or _is_han(prev))
        prev = c
    return faults


@dataclass(frozen=True)
class Reading:
    """One candidate decoding of the bytes."""

    encoding: str  # the name reported (``gb18030``, ``big5``, ``euc-jp`` ...)
    lang: str  # zh-Hans | zh-Hant | ja | ko | any
    text: str
    score: float


def plausibility(text: str, lang: str) -> float:
    """How plausible `text` is as running text in `lang` ("any": any supported script), 0..1.

    The weighted share of its non-ASCII characters (a sample) that are typical of the language,
    then the language's structural checks (see the module docstring). Pure-ASCII text scores 1.
    """
    sample = text[:_SAMPLE_CHARS]
    non_ascii = _NON_ASCII_RE.findall(sample)
    if not non_ascii:
        return 1.0
    counts = Counter(non_ascii)
    total = len(non_ascii)
    score = sum(_weight(c, lang) * n for c, n in counts.items()) / total
    if lang != "any":
        score -= len(_GLUED_RE.findall(sample)) / total
    if lang == "ja":
        kana = sum(n for c, n in counts.items() if _is_kana(c))
        han = sum(n for c, n in counts.items() if _is_han(c))
        if kana < 0.15 * (kana + han):
            score *= KANALESS_JAPANESE  # with (almost) no kana, Japanese looks like Chinese
        score -= _kana_order_faults(sample) / total
    elif lang == "ko":
        hangul = sum(n for c, n in counts.items() if _is_hangul(c))
        han = sum(n for c, n in counts.items() if _is_han(c))
        if hangul < 0.8 * (hangul + han):
            score *= 0.5
    elif lang in ("zh-Hans", "zh-Hant"):
        han = sum(n for c, n in counts.items() if _is_han(c))
        if han:
            spaced = len(_HAN_SPACE_HAN_RE.findall(sample))
            score *= max(0.5, 1.0 - spaced / han)
    elif lang == "any":
        # A UTF-16 reading: ASCII it produced counts too, and must be text (not NUL or controls).
        ascii_chars = len(sample) - total
        ascii_garbage = sum(1 for c in _GARBAGE_RE.findall(sample) if c < "\x80")
        score = (score * total + ascii_chars - ascii_garbage) / len(sample)
    return max(0.0, min(1.0, score))


# --------------------------------------------------------------------------- decoding helpers


def _garbage_ratio(text: str) -> float:
    if not text:
        return 0.0
    sample = text[:_SAMPLE_CHARS]
    return len(_GARBAGE_RE.findall(sample)) / len(sample)


def _checked(text: str, encoding: str) -> tuple[str, str]:
    if _garbage_ratio(text) > MAX_GARBAGE_RATIO:
        raise errors.undecodable_text(
            f"decoded as {encoding}, the result is mostly control or replacement characters"
        )
    return text, encoding


def _strict(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),  # before UTF-16 LE: FF FE 00 00 starts with FF FE
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
)

# (codecs tried in order, the narrow one first; names reported for each; language). The first codec
# that decodes strictly gives the reading, so EUC-KR text is reported as euc-kr, not cp949.
_CANDIDATES: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("gb18030",), ("gb18030",), "zh-Hans"),
    (("cp950", "big5hkscs"), ("big5", "big5hkscs"), "zh-Hant"),
    (("euc_jp",), ("euc-jp",), "ja"),
    (("shift_jis", "cp932"), ("shift_jis", "cp932"), "ja"),
    (("euc_kr", "cp949"), ("euc-kr", "cp949"), "ko"),
)

#: Declared charset labels of CJK and UTF-16 encodings -> (Python codec, language). Labels follow
#: the WHATWG Encoding Standard (gb2312 and gbk mean GB18030, big5 means cp950, euc-kr means CP949).
_DECLARED: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("gb2312", "gbk", "x-gbk", "gb18030", "chinese", "csgb2312", "gb_2312-80"), ("gb18030", "zh-Hans")),
    **dict.fromkeys(("big5", "cn-big5", "x-x-big5", "csbig5", "cp950"), ("cp950", "zh-Hant")),
    "big5-hkscs": ("big5hkscs", "zh-Hant"),
    **dict.fromkeys(("euc-jp", "x-euc-jp", "cseucpkdfmtjapanese"), ("euc_jp", "ja")),
    **dict.fromkeys(("shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "windows-31j", "cp932"), ("cp932", "ja")),
    **dict.fromkeys(("euc-kr", "ks_c_5601-1987", "korean", "windows-949", "cp949"), ("cp949", "ko")),
    **dict.fromkeys(("utf-16", "utf-16le"), ("utf-16-le", "any")),
    "utf-16be": ("utf-16-be", "any"),
}
_CODEC_NAMES = {
    "gb18030": "gb18030", "cp950": "big5", "big5hkscs": "big5hkscs", "euc_jp": "euc-jp",
    "cp932": "shift_jis", "cp949": "euc-kr", "utf-16-le": "utf-16-le", "utf-16-be": "utf-16-be",
}
#: Labels that say UTF-8 (HTML treats a declared ASCII or UTF-16 in a byte stream as UTF-8 too).
_UTF8_LABELS = frozenset({"utf-8", "utf8", "unicode-1-1-utf-8", "ascii", "us-ascii"})
#: Latin-1 labels mean windows-1252 (as browsers read them).
_LATIN1_LABELS = dict.fromkeys(("iso-8859-1", "iso8859-1", "latin1", "l1", "windows-1252"), "cp1252")


def _tried() -> str:
    return "UTF-8, UTF-16 LE/BE, GB18030, Big5, Big5-HKSCS, EUC-JP, Shift_JIS, EUC-KR/CP949 and Windows-1252"


def _declared_beats_utf8(utf8_text: str, declared: Reading | None) -> bool:
    """Whether a declared legacy charset should win over bytes that are valid UTF-8.

    Valid UTF-8 with non-ASCII characters almost never happens by accident in legacy CJK bytes
    (長城 in UTF-8 is 闀垮煄 in GB18030: implausible, rare characters), so the declared reading
    wins only when the UTF-8 reading is implausible and the declared one clearly is not.
    """
    if declared is None or declared.lang == "any":
        return False
    return plausibility(utf8_text, "any") < 0.5 and declared.score >= MIN_SCORE + AMBIGUITY_MARGIN


_WESTERN_EXTRA = frozenset("\u00a0¡¢£§©«®°±²³´µ¶·¹º»¼½¾¿“”‘’‚„–—…•€™")


def _western_text(text: str) -> bool:
    """Whether a cp1252 reading is Western text: mostly ASCII, and every other character a Latin-1
    letter or common punctuation.

    Short Western texts are where detectors guess worst (Mac or Central European code pages for
    "café"); this check runs after the CJK ones, which it would otherwise shadow (GBK bytes read as
    cp1252 are Latin-1 letters too).
    """
    sample = text[:_SAMPLE_CHARS]
    non_ascii = _NON_ASCII_RE.findall(sample)
    if len(non_ascii) > 0.5 * len(sample):
        return False
    return all("\u00c0" <= c <= "\u00ff" and c not in "\u00d7\u00f7" or c in _WESTERN_EXTRA for c in non_ascii)


def _utf16_ascii_pattern(data: bytes) -> str | None:
    """UTF-16 without a BOM recognised by its NUL bytes: every other byte NUL (ASCII-heavy text)."""
    if len(data) < 4 or len(data) % 2:
        return None
    sample = data[:65536]
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    pairs = len(sample) // 2
    if odd_nuls > 0.3 * pairs and even_nuls < 0.05 * pairs:
        return "utf-16-le" if _strict(data, "utf-16-le") is not None else None
    if even_nuls > 0.3 * pairs and odd_nuls < 0.05 * pairs:
        return "utf-16-be" if _strict(data, "utf-16-be") is not None else None
    return None


_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _looks_ascii(data: bytes) -> bool:
    """Whether NUL-free bytes are ASCII-like text rather than UTF-16: spaces and line breaks (about
    one byte in six of ASCII text; UTF-16's own would bring NUL bytes), or two-letter pairs (how
    "biélorusse" in cp1252 reads as UTF-16: 楢泩牯獵敳; Chinese UTF-16 has few such code units)."""
    sample = data[:65536]
    spaces = sum(sample.count(b) for b in (b" ", b"\n", b"\r", b"\t"))
    if spaces > 0.03 * len(sample):
        return True
    units = len(sample) // 2
    pairs = sum(1 for i in range(0, 2 * units, 2) if sample[i] in _ALNUM and sample[i + 1] in _ALNUM)
    return pairs > 0.5 * units


def _readings(data: bytes) -> list[Reading]:
    """Every strict decoding of `data` in `_CANDIDATES` and UTF-16 LE/BE, with its plausibility."""
    out: list[Reading] = []
    has_nul = b"\x00" in data
    if len(data) % 2 == 0 and (has_nul or not _looks_ascii(data)):
        # Without NUL bytes a UTF-16 reading has no ASCII at all; mostly-ASCII bytes read as UTF-16
        # give CJK-looking pairs ("Bush hid the facts"), so such bytes are not UTF-16.
        for codec in ("utf-16-le", "utf-16-be"):
            text = _strict(data, codec)
            if text is not None:
                out.append(Reading(codec, "any", text, plausibility(text, "any")))
    for codecs_, names, lang in () if has_nul else _CANDIDATES:  # NUL bytes are no legacy text
        for codec, name in zip(codecs_, names):
            text = _strict(data, codec)
            if text is not None:
                out.append(Reading(name, lang, text, plausibility(text, lang)))
                break
    return out


def _declared_reading(data: bytes, declared: str | None) -> Reading | None:
    if not declared:
        return None
    codec, lang = _DECLARED.get(declared, (None, None))
    if codec is None:
        return None
    text = _strict(data, codec)
    if text is None:
        return None
    return Reading(_CODEC_NAMES[codec], lang, text, plausibility(text, lang))


def _group(lang: str) -> str:
    return "zh" if lang.startswith("zh") else lang


#: chardet's byte-bigram model for each reading's encoding.
_BIGRAM_MODELS = {
    "gb18030": "gb18030", "big5": "big5hkscs", "big5hkscs": "big5hkscs", "euc-jp": "euc_jis_2004",
    "shift_jis": "cp932", "cp932": "cp932", "euc-kr": "cp949", "cp949": "cp949",
}
_BIGRAM_BYTES = 65536


def bigram_scores(data: bytes, readings: list[Reading]) -> list[float] | None:
    """How much the bytes look like real text of each reading's encoding and language, by chardet's
    byte-bigram models (cosine similarity, trained on real text); `None` if unavailable.

    Frequency sets cannot settle every case: Korean EUC-KR Hangul rows are GB2312's level-1 rows
    byte for byte, and EUC-JP kana read as Big5 are its most frequent characters. Which *pairs* of
    characters follow each other can: real Korean read as Chinese is a string of unrelated
    frequent characters.
    """
    try:
        from chardet.models import score_best_language
    except ImportError:  # pragma: no cover - chardet is a dependency; without it ties are refused
        return None
    out: list[float] = []
    for r in readings:
        model = _BIGRAM_MODELS.get(r.encoding)
        if model is None:
            return None
        try:
            score, _ = score_best_language(data[:_BIGRAM_BYTES], model)
        except Exception:  # pragma: no cover - an internal API of chardet 7: refuse rather than fail
            return None
        out.append(float(score))
    return out


def _letters(text: str) -> int:
    return sum(1 for c in _NON_ASCII_RE.findall(text[:_SAMPLE_CHARS]) if _is_han(c) or _is_kana(c) or _is_hangul(c))


def _ambiguous(best: Reading, other: Reading) -> IngestError:
    return errors.undecodable_text(
        f"the bytes read as {_LANG_NAMES.get(best.lang, best.lang)} ({best.encoding}) and as "
        f"{_LANG_NAMES.get(other.lang, other.lang)} ({other.encoding}) equally well; too little text to tell "
        f"which. Tried {_tried()}"
    )


def _choose(data: bytes, readings: list[Reading], declared: Reading | None = None) -> Reading | None:
    """The reading to keep; `None` when none is plausible; raises `undecodable_text` on a tie
    between languages that the bigram statistics cannot settle either (see the module docstring)."""
    pool = [r for r in readings if r.score >= MIN_SCORE]
    if declared is not None and declared.score >= MIN_SCORE:
        # A declared charset that reads plausibly wins unless another reading is clearly better.
        best_other = max((r.score for r in pool if r.text != declared.text), default=0.0)
        if declared.score + AMBIGUITY_MARGIN >= best_other:
            return declared
    if not pool:
        return None
    # Stable sort: on equal scores the order of `_CANDIDATES` decides (GB18030 before Big5).
    pool.sort(key=lambda r: -r.score)
    best = pool[0]
    if best.lang == "any":
        return best
    # The best reading of each other language that comes within the margin.
    contenders = [best]
    for r in pool[1:]:
        if (
            best.score - r.score < AMBIGUITY_MARGIN
            and r.lang != "any"
            and r.text != best.text
            and all(r.lang != c.lang for c in contenders)
        ):
            contenders.append(r)
    if len(contenders) == 1:
        return best
    stats = bigram_scores(data, contenders)
    if stats is None:
        if all(_group(c.lang) == "zh" for c in contenders):
            return best
        raise _ambiguous(contenders[0], contenders[1])
    stat = {id(c): s for c, s in zip(contenders, stats)}
    ranked = sorted(contenders, key=lambda c: -stat[id(c)])
    top = ranked[0]

    def ratio(a: Reading, b: Reading) -> float:
        return stat[id(b)] / stat[id(a)] if stat[id(a)] > 0 else 1.0

    cross = next((c for c in ranked if _group(c.lang) != _group(top.lang)), None)
    if cross is not None:
        # Chinese is what this service is for, so the statistics need less margin to pick it than
        # to pick Japanese or Korean, which must also show a few characters of their own script.
        if _group(top.lang) == "zh":
            settled = ratio(top, cross) < ZH_BIGRAM_RATIO
        else:
            settled = ratio(top, cross) < OTHER_BIGRAM_RATIO and _letters(top.text) >= MIN_OTHER_LETTERS
        if not settled:
            raise _ambiguous(top, cross)
    same = [c for c in contenders if _group(c.lang) == _group(top.lang)]
    if len(same) == 1:
        return top
    # Simplified against Traditional (GB18030 against Big5): the statistics if they are clear,
    # else the frequency score (ties: GB18030).
    runner_up = next(c for c in ranked if c is not top and c in same)
    if ratio(top, runner_up) < ZH_BIGRAM_RATIO:
        return top
    return same[0]


def choose(data: bytes, readings: list[Reading], declared: Reading | None = None) -> Reading | None:
    """The reading to keep (see `_choose`), unless the bytes look far more like a single-byte
    code page: Cyrillic or accented Western letters come in pairs that also decode as plausible
    Han characters ("Ангола" in cp1251 is 理泐豚 in GB18030), and only the bigram statistics
    tell them apart."""
    best = _choose(data, readings, declared)
    if best is None or best is declared or best.lang == "any":
        return best
    own = bigram_scores(data, [best])
    single = _best_single_byte(_single_byte_readings(data))
    if own is not None and single is not None and single.score > SINGLE_BYTE_RATIO * own[0]:
        return None
    return best


#: Single-byte code pages judged after the CJK readings, most common first (Western, Cyrillic,
#: Central European, Greek, Turkish); chardet has a bigram model for each.
_SINGLE_BYTE = ("cp1252", "cp1251", "cp1250", "koi8-r", "cp1253", "cp1254", "cp866")
_LATIN_PAGES = frozenset({"cp1252", "cp1250", "cp1254"})
#: A later code page replaces an earlier one only when its bigram model fits this many times better,
#: and only on this many non-ASCII characters of evidence.
SINGLE_BYTE_RATIO = 2.0
MIN_SINGLE_BYTE_EVIDENCE = 3
_NON_ASCII_RUN_RE = re.compile(r"[^\x00-\x7f]+")
_WORD_RE = re.compile(r"[^\W\d_]+")


def _alphabetic(text: str, codec: str | None = None) -> bool:
    """Whether a single-byte reading reads as alphabetic text.

    At least 90% of the non-ASCII characters must be letters (or common Western punctuation): CJK
    bytes read as a code page give symbols, numbers and box drawing among the letters. Then the
    shape of words: in a Latin code page accented letters sit one or two at a time inside ASCII
    words (three in a row is how Cyrillic or CJK bytes look in cp1252: "Ñâÿçàííûé"); in a Cyrillic
    or Greek one, a word does not mix ASCII letters with the page's own ("Dщfini" is French read
    as cp866).
    """
    sample = text[:_SAMPLE_CHARS]
    non_ascii = _NON_ASCII_RE.findall(sample)
    if not non_ascii:
        return True
    letters = sum(1 for c in non_ascii if c in _WESTERN_EXTRA or unicodedata.category(c).startswith("L"))
    if letters < 0.9 * len(non_ascii):
        return False
    if codec is None:
        return True
    if codec in _LATIN_PAGES:
        in_long_runs = sum(len(run) for run in _NON_ASCII_RUN_RE.findall(sample) if len(run) >= 3)
        return in_long_runs <= 0.3 * len(non_ascii)
    words = [w for w in _WORD_RE.findall(sample) if not w.isascii()]
    mixed = sum(1 for w in words if any(c.isascii() for c in w))
    return mixed <= 0.1 * len(words)


def _single_byte_readings(data: bytes) -> list[Reading]:
    """The alphabetic readings of `data` in `_SINGLE_BYTE`, each scored by its bigram model."""
    try:
        from chardet.models import score_best_language
    except ImportError:  # pragma: no cover - chardet is a dependency
        score_best_language = None
    out: list[Reading] = []
    for codec in _SINGLE_BYTE:
        text = _strict(data, codec)
        if text is None or text.isascii() or not _alphabetic(text, codec):
            continue
        score = 0.0
        if score_best_language is not None:
            try:
                score = float(score_best_language(data[:_BIGRAM_BYTES], codec)[0])
            except Exception:  # pragma: no cover - see bigram_scores
                score = 0.0
        out.append(Reading(codec, "latin" if codec in ("cp1252", "cp1250", "cp1254") else "other", text, score))
    return out


def _best_single_byte(readings: list[Reading]) -> Reading | None:
    """The first reading in `_SINGLE_BYTE` order, replaced by a later one whose bigram model fits
    `SINGLE_BYTE_RATIO` times better on enough evidence. A Windows-1252 reading must also pass
    `_western_text`."""
    readings = [r for r in readings if r.encoding != "cp1252" or _western_text(r.text)]
    if not readings:
        return None
    best = readings[0]
    evidence = len(_NON_ASCII_RE.findall(best.text[:_SAMPLE_CHARS]))
    for r in readings[1:]:
        if evidence >= MIN_SINGLE_BYTE_EVIDENCE and r.score > SINGLE_BYTE_RATIO * best.score:
            best = r
    return best


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode a text upload. Returns ``(text, encoding)``; raises `empty_file` or `undecodable_text`.

    `declared` is a charset label the document states about itself (HTML ``<meta charset>``, an
    XML declaration); it is a candidate checked against the bytes, not an order. The text is not
    normalised here (see `ingest.normalize.normalize_text`); a BOM is dropped.
    """
    if not data:
        raise errors.empty_file()

    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            text = _strict(data, codec)
            if text is None:
                raise errors.undecodable_text(f"invalid {name} after its byte-order mark")
            if codec == "utf-8-sig":
                return _checked(text, "utf-8-sig")
            text = text.lstrip("\ufeff")
            return _checked(text, codec)

    if data.isascii() and _ISO2022_ESC_RE.search(data):
        for codec, name in (("iso2022_jp_2", "iso-2022-jp"), ("iso2022_kr", "iso-2022-kr")):
            text = _strict(data, codec)
            if text is not None and not text.isascii():
                return _checked(text, name)

    label = declared.strip().lower() if declared else None
    declared_reading = _declared_reading(data, label) if label and label not in _UTF8_LABELS else None

    text = _strict(data, "utf-8")
    if text is not None and "\x00" not in text:
        if text.isascii():
            return _checked(text, "utf-8")
        if not _declared_beats_utf8(text, declared_reading):
            return _checked(text, "utf-8")

    if b"\x00" in data:
        codec = _utf16_ascii_pattern(data)
        if codec:
            return _checked(data.decode(codec), codec)

    best = choose(data, _readings(data), declared_reading)
    if best is not None:
        return _checked(best.text, best.encoding)

    if b"\x00" in data:
        raise errors.undecodable_text(f"binary content (NUL bytes that no UTF-16 reading explains); tried {_tried()}")

    if label and label not in _DECLARED:
        # Another declared charset (windows-1251, koi8-r, iso-8859-2 ...): used when it decodes
        # strictly into letters, since no CJK reading was plausible and a guess could only be worse.
        codec = _LATIN1_LABELS.get(label, label)
        declared_text = _strict(data, codec)
        if declared_text is not None and _alphabetic(declared_text):
            return _checked(declared_text, codec)

    single = _best_single_byte(_single_byte_readings(data))
    if single is not None:
        return _checked(single.text, single.encoding)

    return _last_resort(data)


_CJK_CODEC_RE = re.compile(r"gb|big5|euc|jis|sjis|cp9(32|36|49|50)|hz|iso2022|johab|ks|utf", re.IGNORECASE)


def _last_resort(data: bytes) -> tuple[str, str]:
    """chardet's answer among the encodings not judged above (single-byte code pages)."""
    try:
        import chardet

        found = chardet.detect(data, compat_names=False, prefer_superset=True)
    except Exception:  # pragma: no cover - defensive: a detector bug must not become a 500
        found = {"encoding": None}
    encoding = found.get("encoding")
    if not encoding or _CJK_CODEC_RE.search(encoding):
        # CJK and Unicode encodings were all judged above: a detector's guess here is one the checks rejected.
        raise errors.undecodable_text(f"no encoding gives plausible text; tried {_tried()} and single-byte code pages")
    text = _strict(data, encoding)
    if text is None or not _alphabetic(text):
        raise errors.undecodable_text(f"no encoding gives plausible text; tried {_tried()} and {encoding}")
    return _checked(text, encoding)
