"""Character ranges of the scripts the service reads: the one definition of "Han" and of "CJK".

* `HAN`: CJK Unified Ideographs (U+4E00–U+9FFF), Extension A (U+3400–U+4DBF), the BMP Compatibility
  Ideographs (U+F900–U+FAFF) and U+20000–U+3134F (plane 2: Extensions B–F and I, the Compatibility
  Ideographs Supplement; plane 3: Extension G, not H, which starts at U+31350). Language detection,
  BM25 analysis, attribution features and the evaluation scores all count Han characters with it.
  It is part of the BM25 analyzer (`rag.index.lexical.ANALYZER_ID`): widening it changes stored
  term lists.
* `NO_SPACE`: everything written without spaces between words: Han, kana, hangul, bopomofo,
  radicals and strokes, CJK punctuation and full-width forms. The chunker and the parsers use it to
  tell line wrapping from a real break and where half-width punctuation ends a sentence.

Each constant is a character-class body (``f"[{HAN}]"``), so the sets combine by concatenation.
"""

from __future__ import annotations

import re

# Han ideographs.
HAN_BASIC = "\u4e00-\u9fff"  # CJK Unified Ideographs
HAN_EXT_A = "\u3400-\u4dbf"
HAN_COMPAT = "\uf900-\ufaff"  # CJK Compatibility Ideographs (BMP)
HAN_ASTRAL = "\U00020000-\U0003134f"  # Extensions B–G and I, Compatibility Supplement (not H)
HAN = HAN_EXT_A + HAN_BASIC + HAN_COMPAT + HAN_ASTRAL

# Other scripts and symbols written without spaces.
RADICALS = "\u2e80-\u2fdf"  # CJK Radicals Supplement, Kangxi Radicals
CJK_PUNCTUATION = "\u3000-\u303f"  # CJK Symbols and Punctuation (ideographic space, 。、「」 ...)
KANA = "\u3040-\u30ff"  # Hiragana, Katakana
BOPOMOFO = "\u3100-\u312f"
CJK_MISC = "\u3190-\u31ff"  # Kanbun, Bopomofo Extended, CJK Strokes, Katakana Phonetic Extensions
HANGUL = "\uac00-\ud7af"  # Hangul Syllables
CJK_COMPAT_FORMS = "\ufe30-\ufe4f"  # vertical presentation forms (︰ ︱ ...)
FULLWIDTH = "\uff00-\uffef"  # Halfwidth and Fullwidth Forms (，！Ａ１ ｱ ...)

NO_SPACE = (
    RADICALS + CJK_PUNCTUATION + KANA + BOPOMOFO + CJK_MISC + HAN_EXT_A + HAN_BASIC
    + HANGUL + HAN_COMPAT + CJK_COMPAT_FORMS + FULLWIDTH + HAN_ASTRAL
)

# Everything from U+3000 to the end of the basic ideographs in one span (so also hangul compatibility
# jamo, enclosed and compatibility CJK, Yijing hexagram symbols), and full-width forms. Only the
# Debian FAQ reader (`rag_bench.eval.faq`) uses it, to join its wrapped Chinese lines; it is kept as it was
# because the gold answers of the QA bench are cut with it.
FAQ_CJK = "\u3000-\u9fff" + FULLWIDTH

HAN_RE = re.compile(f"[{HAN}]")
HAN_RUN_RE = re.compile(f"[{HAN}]+")
NO_SPACE_RE = re.compile(f"[{NO_SPACE}]")


def is_no_space(ch: str) -> bool:
    """Whether the character `ch` (the first one of a string; False for "") belongs to `NO_SPACE`."""
    return NO_SPACE_RE.match(ch) is not None
