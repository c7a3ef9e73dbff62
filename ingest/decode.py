"""Bytes of a text upload -> str, with the encoding that was used.

Order:

1. Empty -> `empty_file`.
2. A byte-order mark decides: UTF-8 (``utf-8-sig``), UTF-32 LE/BE, UTF-16 LE/BE (strict).
3. Strict UTF-8 (ASCII included).
4. UTF-16 without a BOM, only when NUL bytes sit in every other position (ASCII-heavy UTF-16).
   Any other NUL byte means binary content -> `undecodable_text`.
5. Strict GB18030 and strict Big5 (cp950, then Big5-HKSCS). GB18030 decodes almost every Big5
   byte string too (its two-byte space contains Big5's), so strictness alone cannot tell them
   apart: each result is scored by the share of its non-ASCII characters that are frequent
   characters of its own encoding or CJK punctuation (GB2312 level 1 for GB18030, Big5 level 1
   for Big5). The right decoding scores ~0.9+; the wrong one lands on kana, bopomofo, Cyrillic,
   private-use or rare characters and scores far lower. The higher score wins (ties: GB18030) if
   it reaches `MIN_CJK_SCORE`.
6. cp1252 when the text is mostly ASCII and every other character is a Latin-1 letter or common
   punctuation (accented Western European text).
7. charset-normalizer as a last resort (Latin-1/cp1252, Shift-JIS, KOI8-R, ...).

The result is rejected (`undecodable_text`) when more than 2% of it is replacement characters or
control characters other than tab/newline/CR/FF.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

from ingest import errors

MIN_CJK_SCORE = 0.5
MAX_GARBAGE_RATIO = 0.02
_SAMPLE_CHARS = 200_000

_CJK_PUNCT = frozenset("，。、；：？！“”‘’（）《》〈〉【】「」『』〔〕—…·～￥％＃＆＊＋－／＝＠　")
_GARBAGE_RE = re.compile("[\ufffd\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")


@lru_cache(maxsize=2)
def _common_chars(script: str) -> frozenset[str]:
    """Frequent characters native to an encoding: GB2312 level 1 ("gb") or Big5 level 1 ("big5")."""
    chars: set[str] = set(_CJK_PUNCT)
    if script == "gb":
        # GB2312 level 1: rows 0xB0-0xD7, the 3,755 most frequent Simplified characters.
        pairs = [(lead, trail) for lead in range(0xB0, 0xD8) for trail in range(0xA1, 0xFF)]
        codec = "gb2312"
    else:
        # Big5 level 1: 0xA440-0xC67E, the 5,401 frequent Traditional characters.
        pairs = [
            (lead, trail)
            for lead in range(0xA4, 0xC7)
            for trail in list(range(0x40, 0x7F)) + ([] if lead == 0xC6 else list(range(0xA1, 0xFF)))
        ]
        codec = "cp950"
    for lead, trail in pairs:
        try:
            chars.add(bytes((lead, trail)).decode(codec))
        except UnicodeDecodeError:
            pass
    return frozenset(chars)


def cjk_score(text: str, script: str = "gb") -> float:
    """Share of the non-ASCII characters (in a sample) that are frequent characters of `script`.

    Scoring against the encoding's own frequent set (not both) keeps a Western text that happens to
    decode as one rare GBK character ("Straße" -> "Stra遝") from looking Chinese.
    """
    sample = _NON_ASCII_RE.findall(text[:_SAMPLE_CHARS])
    if not sample:
        return 1.0
    common = _common_chars(script)
    return sum(1 for c in sample if c in common) / len(sample)


def _garbage_ratio(text: str) -> float:
    if not text:
        return 0.0
    sample = text[:_SAMPLE_CHARS]
    return len(_GARBAGE_RE.findall(sample)) / len(sample)


def _checked(text: str, encoding: str) -> tuple[str, str]:
    if _garbage_ratio(text) > MAX_GARBAGE_RATIO:
        raise errors.undecodable_text(f"decoded as {encoding}, the result is mostly control or replacement characters")
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


_WESTERN_EXTRA = frozenset("\u00a0¡¢£§©«®°±²³´µ¶·¹º»¼½¾¿“”‘’‚„–—…•€™")


def _western(data: bytes) -> str | None:
    """cp1252 for mostly-ASCII text whose other characters are all Latin-1 letters or common punctuation.

    Short Western texts are where charset-normalizer guesses worst (it picks Mac or Central
    European code pages for "café"); this check runs after the Chinese ones, which it would
    otherwise shadow (GBK bytes read as cp1252 are Latin-1 letters too).
    """
    text = _strict(data, "cp1252")
    if text is None:
        return None
    sample = text[:_SAMPLE_CHARS]
    non_ascii = _NON_ASCII_RE.findall(sample)
    if len(non_ascii) > 0.5 * len(sample):
        return None
    if all("\u00c0" <= c <= "\u00ff" and c not in "\u00d7\u00f7" or c in _WESTERN_EXTRA for c in non_ascii):
        return text
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    if len(data) < 4 or len(data) % 2:
        return None
    sample = data[:65536]
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    pairs = len(sample) // 2
    if odd_nuls > 0.3 * pairs and even_nuls < 0.05 * pairs:
        return _strict(data, "utf-16-le") and "utf-16-le"
    if even_nuls > 0.3 * pairs and odd_nuls < 0.05 * pairs:
        return _strict(data, "utf-16-be") and "utf-16-be"
    return None


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode a text upload. Returns ``(text, encoding)``; raises `empty_file` or `undecodable_text`.

    The text is not normalised here (see `ingest.normalize.normalize_text`); a BOM is dropped.
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

    text = _strict(data, "utf-8")
    if text is not None and "\x00" not in text:
        return _checked(text, "utf-8")

    if b"\x00" in data:
        codec = _utf16_without_bom(data)
        if codec:
            return _checked(data.decode(codec), codec)
        raise errors.undecodable_text("binary content (NUL bytes)")

    candidates: list[tuple[float, int, str, str]] = []
    for rank, (codec, name, script) in enumerate(
        (("gb18030", "gb18030", "gb"), ("cp950", "big5", "big5"), ("big5hkscs", "big5hkscs", "big5"))
    ):
        if name == "big5hkscs" and any(c[3] == "big5" for c in candidates):
            continue
        decoded = _strict(data, codec)
        if decoded is not None:
            candidates.append((cjk_score(decoded, script), -rank, decoded, name))
    if candidates:
        score, _, decoded, name = max(candidates, key=lambda c: (c[0], c[1]))
        if score >= MIN_CJK_SCORE:
            return _checked(decoded, name)

    western = _western(data)
    if western is not None:
        return _checked(western, "cp1252")

    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
    except Exception:  # pragma: no cover - defensive: a detector bug must not become a 500
        best = None
    if best is None or best.encoding is None:
        raise errors.undecodable_text("unknown encoding")
    try:
        text = str(best)
    except Exception:
        raise errors.undecodable_text("unknown encoding") from None
    return _checked(text, best.encoding)
