"""Language and script of a text: ``zh-Hans``, ``zh-Hant`` or ``en``; Simplified/Traditional conversion.

Detection is a heuristic over characters, not a model (Han characters are those of `rag.text.scripts.HAN`):

* a text is Chinese when it has at least as many Han characters as Latin words (so "如何安装 Python 包"
  is Chinese and "What does 长城 mean?" is English);
* the script of Chinese text is decided by OpenCC: characters that ``t2s`` changes are
  Traditional-only, characters that ``s2t`` changes are Simplified-only; the larger count wins and a
  tie (text written with characters common to both) counts as Simplified.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

from rag.text.scripts import HAN_RE

__all__ = [
    "Language", "HAN_RE", "LATIN_WORD_RE", "to_simplified", "to_traditional", "base", "han_count", "is_chinese",
    "script", "detect_language", "convert_script",
]

Language = Literal["zh-Hans", "zh-Hant", "en"]

LATIN_WORD_RE = re.compile(r"[A-Za-z\u00c0-\u024f]+")


@lru_cache(maxsize=4)
def _converter(config: str):
    from opencc import OpenCC

    return OpenCC(config)


def to_simplified(text: str) -> str:
    return _converter("t2s").convert(text) if text else text


def to_traditional(text: str) -> str:
    return _converter("s2t").convert(text) if text else text


def base(lang: str) -> str:
    """``zh-Hans``/``zh-Hant`` -> ``zh``; anything else unchanged (``en``)."""
    return lang.split("-", 1)[0]


def han_count(text: str) -> int:
    return len(HAN_RE.findall(text))


def is_chinese(text: str) -> bool:
    h = han_count(text)
    return h > 0 and h >= len(LATIN_WORD_RE.findall(text))


def _differences(a: str, b: str) -> int:
    if len(a) == len(b):
        return sum(1 for x, y in zip(a, b) if x != y)
    import difflib

    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal")


def script(text: str) -> Literal["zh-Hans", "zh-Hant"]:
    """Script of Chinese text: how many characters ``t2s`` changes (Traditional-only ones) against how many
    ``s2t`` changes (Simplified-only ones), both run phrase-aware over the whole text (so 公里 is not
    "converted" to 公裏). The larger count wins; a tie counts as Simplified."""
    han = "".join(HAN_RE.findall(text))
    trad = _differences(han, to_simplified(han))
    simp = _differences(han, to_traditional(han))
    return "zh-Hant" if trad > simp else "zh-Hans"


def detect_language(text: str) -> Language:
    text = unicodedata.normalize("NFKC", text or "")
    if is_chinese(text):
        return script(text)
    return "en"


def convert_script(text: str, lang: str) -> str:
    """Write Chinese `text` in the script of `lang` (``zh-Hant`` -> s2t, ``zh-Hans`` -> t2s); ``en``: unchanged."""
    if lang == "zh-Hant":
        return to_traditional(text)
    if lang == "zh-Hans":
        return to_simplified(text)
    return text
