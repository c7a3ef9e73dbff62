"""Figures: numbers with their magnitude and unit, compared by value across languages and scripts.

A small generator gets figures wrong in three ways even when the right passage is in its context:
it drops the magnitude or unit ("1750" for 1750亿, "3" for 3年), it translates a magnitude wrongly
(1750亿 becomes "1750 billion" instead of "175 billion"), and it gives the figure that the passage
states for another subject. This module reads figures so the service can check each one:

* a *figure* is a number as written (``8,851.8``, ``1750``, ``2.5``; version strings such as
  ``2.6.32`` are kept as strings) with the magnitude word that follows it (万 亿 千万 …, thousand,
  million, billion …) and its unit (公里, 年, MB, years …). Its ``value`` is the number times the
  magnitude, so 1750亿 and 175 billion are the same value;
* `complete` repairs the first two faults from the passages (a bare number whose only reading in the
  passages carries a magnitude or unit gets it; a magnitude that gives a different value than the
  passage's figure with the same digits is rewritten), and says what it changed;
* `owner_span` and `belongs_to_other_subject` catch the third: in a passage sentence that gives two
  subjects two figures, the answer's figure must sit next to the question's subject.

Chinese numerals (三十年) are read in passages, never in answers: 一 is too common in ordinary words
(一个, 统一) to treat every occurrence in an answer as a figure that must be supported.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from rag.text.fold import fold
from rag.text.lang import base, to_simplified
from rag.text.sentences import FIGURE_CLAUSE_END, FIGURE_SENTENCE_END
from rag.text.variants import MEASURE_UNITS_EN, canonical_unit

# Magnitudes, longest first so 万亿 wins over 万.
_ZH_MAGNITUDE = {"万亿": 12, "千亿": 11, "百亿": 10, "亿": 8, "千万": 7, "百万": 6, "万": 4, "千": 3}
_EN_MAGNITUDE = {"trillion": 12, "billion": 9, "million": 6, "thousand": 3, "bn": 9, "mn": 6}
# Units and measure words that may follow a number in Chinese text, longest first.
_ZH_UNITS = sorted(
    """平方公里 平方米 立方米 公里 千米 厘米 毫米 公斤 千克 千瓦 个月 小时 分钟 毫秒 字节 美元 人民币 欧元 英镑 日元 港元 万元
    年 月 天 日 周 秒 岁 次 个 种 位 名 人 台 部 篇 页 章 行 字 元 米 克 吨 度 倍 项 条 家 座 所 辆 件 本 张 份 户 届 层 步 期
    块 套 款 首 场 亩 斤 里 核 线 兆 代 版""".split(),
    key=len,
    reverse=True,
)
_NUMBER = r"\d+(?:[.,]\d+)*"
_ARABIC_RE = re.compile(rf"(?<![0-9A-Za-z.])({_NUMBER})(\s*[%％])?")
# Digits that are part of a name (GPT-4, x86_64, ModelX3.5, e5, debconf(1)) are not figures.
_NAME_RE = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*[-_.]?\d[A-Za-z0-9.]*|\d+[A-Za-z]+[A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*"
    r"|(?<=[A-Za-z0-9_])\(\d[a-z]?\)"
)
# Dates and numeric ranges are one token each, compared as written (2023-02-02, 2001-2007, 12:30).
_TOKEN_RE = re.compile(r"(?<![0-9.])\d{1,4}(?:[-/:–]\d{1,4}){1,2}(?![0-9])")
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_NUMERAL_RE = re.compile(r"[零〇一二两三四五六七八九十百千万亿]+")
_EN_WORD_RE = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class Figure:
    """One figure in a text: `text[start:end]` is the number with its magnitude word (not the unit)."""

    start: int
    end: int
    digits: str  # the number as normalised digits ("8851.8", "1750", "2.6.32")
    magnitude: int  # power of ten of the magnitude word (0: none)
    unit: str  # folded unit or measure word that follows ("" when none)
    unit_end: int  # end of the unit in the text (== end when no unit)

    @property
    def value(self) -> Decimal | str:
        """The number times its magnitude; a version, date or range stays a string."""
        if self.digits.count(".") > 1 or not re.fullmatch(r"\d+(?:\.\d+)?", self.digits):
            return self.digits
        try:
            return Decimal(self.digits).scaleb(self.magnitude).normalize()
        except InvalidOperation:
            return self.digits

    @property
    def is_version(self) -> bool:
        return isinstance(self.value, str)


def _norm_digits(raw: str) -> str:
    """"8,851.8" -> "8851.8"; a comma followed by other than three digits is a list separator, not grouping."""
    s = unicodedata.normalize("NFKC", raw)
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        return s.replace(",", "")
    return s.split(",")[0] if "," in s else s


def _magnitude_at(text: str, pos: int) -> tuple[int, int]:
    """(power of ten, end) of a magnitude word at `pos` (after optional spaces), or (0, pos)."""
    m = re.match(r"\s*", text[pos:])
    p = pos + (m.end() if m else 0)
    seg = to_simplified(text[p : p + 2])
    if seg in ("千米", "千克", "千瓦"):  # units that begin with a magnitude word (万元 stays 万 + 元)
        return 0, pos
    for word, power in _ZH_MAGNITUDE.items():
        if seg.startswith(word):
            return power, p + len(word)
    w = _EN_WORD_RE.match(text, p)
    if w and p > pos and w.group(0).casefold() in _EN_MAGNITUDE:
        return _EN_MAGNITUDE[w.group(0).casefold()], w.end()
    return 0, pos


def _unit_at(text: str, pos: int) -> tuple[str, int]:
    """(folded unit, end) of the unit or measure word at `pos`, or ("", pos)."""
    if pos < len(text) and text[pos] in "%％":
        return "%", pos + 1
    folded = to_simplified(text[pos : pos + 4])
    for unit in _ZH_UNITS:
        if folded.startswith(unit):
            return canonical_unit(unit), pos + len(unit)
    m = re.match(r" ?([A-Za-z]+)", text[pos:])
    if m:
        word = m.group(1).casefold()
        if word in _EN_MAGNITUDE or len(word) > 12:
            return "", pos
        return canonical_unit(_singular(word)), pos + m.end()
    return "", pos


def _completes(unit: str) -> bool:
    """Whether a bare number may be given this passage unit: a Chinese unit or measure word, or an
    English unit of measure (the word after a number in English is often just the next word)."""
    return bool(unit) and unit != "%" and (not unit.isascii() or unit in MEASURE_UNITS_EN)


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _zh_numeral_value(s: str) -> int | None:
    """Value of a Chinese numeral such as 三十, 一百二十, 两千, 三万五千; None when it is not one."""
    total, section, digit = 0, 0, None
    for ch in s:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch in "十百千":
            unit = {"十": 10, "百": 100, "千": 1000}[ch]
            section += (1 if digit is None else digit) * unit
            digit = None
        elif ch in "万亿":
            section += digit or 0
            total += section * (10_000 if ch == "万" else 100_000_000)
            section, digit = 0, None
        else:
            return None
    return total + section + (digit or 0)


def figures_in(text: str, *, chinese_numerals: bool = False) -> list[Figure]:
    """Figures in `text`, in order. Digits inside names are skipped; `chinese_numerals` also reads
    numerals such as 三十年 when a unit follows them (passages only, see the module docstring)."""
    text = text or ""
    masked = _NAME_RE.sub(lambda m: " " * len(m.group(0)), unicodedata.normalize("NFKC", text))
    if len(masked) != len(text):  # NFKC changed the length: fall back to the raw text's positions
        masked = _NAME_RE.sub(lambda m: " " * len(m.group(0)), text)
    out: list[Figure] = []
    for m in _TOKEN_RE.finditer(masked):
        out.append(Figure(m.start(), m.end(), m.group(0).replace("–", "-"), 0, "", m.end()))
    masked = _TOKEN_RE.sub(lambda m: " " * len(m.group(0)), masked)
    for m in _ARABIC_RE.finditer(masked):
        digits = _norm_digits(m.group(1))
        end = m.end(1)
        if m.group(2):
            out.append(Figure(m.start(1), end, digits, 0, "%", m.end()))
            continue
        power, end = _magnitude_at(text, end)
        unit, unit_end = _unit_at(text, end)
        out.append(Figure(m.start(1), end, digits, power, unit, unit_end))
    if chinese_numerals:
        for m in _ZH_NUMERAL_RE.finditer(to_simplified(text)):
            unit, unit_end = _unit_at(text, m.end())
            value = _zh_numeral_value(m.group(0))
            if value is None or not unit or any(f.start <= m.start() < f.unit_end for f in out):
                continue
            out.append(Figure(m.start(), m.end(), str(value), 0, unit, unit_end))
    out.sort(key=lambda f: f.start)
    return out


def same_value(a: Figure, b: Figure) -> bool:
    return a.value == b.value


def render(value: Decimal | str, lang: str) -> str:
    """A value written the way an answer in `lang` would write it: 1750亿 / 175 billion."""
    if isinstance(value, str):
        return value
    if base(lang) == "zh":
        for word, power in (("万亿", 12), ("亿", 8), ("万", 4)):
            if abs(value) >= Decimal(10) ** power:
                return f"{_plain(value.scaleb(-power))}{word}"
        return _plain(value)
    for word, power in (("trillion", 12), ("billion", 9), ("million", 6)):
        if abs(value) >= Decimal(10) ** power:
            return f"{_plain(value.scaleb(-power))} {word}"
    return f"{value.normalize():,f}" if value == value.to_integral() and abs(value) >= 10_000 else _plain(value)


def _plain(d: Decimal) -> str:
    s = format(d.normalize(), "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


@dataclass
class Repair:
    """One change `complete` made to the answer, for the trace."""

    before: str
    after: str
    passage: int  # n of the passage the figure was taken from
    reason: str

    def to_dict(self) -> dict:
        return {"before": self.before, "after": self.after, "passage": self.passage, "reason": self.reason}


def complete(answer: str, passages: list[tuple[int, str]], lang: str) -> tuple[str, list[Repair]]:
    """The answer with truncated or mistranslated figures repaired from the passages ((n, text) pairs).

    * A figure whose value some passage states is left alone; a bare number at the end of its sentence
      gets the unit that every passage figure of that value carries ("3" -> "3年").
    * A figure whose value no passage states, but whose digits every passage states with one and the
      same other magnitude, is rewritten to the passage's value ("1750" -> "1750亿", "1750 billion" ->
      "175 billion"): the digits show which figure the model copied, the passage says what it is.
    Anything else is left for attribution to judge (a figure in no passage is removed there).
    """
    pfigs = [(n, f) for n, t in passages for f in figures_in(t, chinese_numerals=True)]
    literal = {(n, f.start): t[f.end:f.unit_end].strip() for n, t in passages for f in figures_in(t, chinese_numerals=True)}
    repairs: list[Repair] = []
    out, pos = [], 0
    for f in figures_in(answer):
        if f.is_version:
            continue
        same = [(n, p) for n, p in pfigs if same_value(f, p)]
        replacement = None
        if same:
            units = {p.unit for _, p in same if p.unit}
            unit = units.pop() if len(units) == 1 else ""
            if (not f.unit and (_completes(unit) or unit == "%") and _ends_sentence(answer, f.end)
                    and (base(lang) == "zh" or unit.isascii())):
                n, p = next((n, p) for n, p in same if p.unit)
                sep = " " if base(lang) != "zh" and unit != "%" else ""
                replacement = (answer[f.start : f.end] + sep + literal[(n, p.start)], n,
                               f"completed with its unit from passage {n}")
        else:
            digits = [(n, p) for n, p in pfigs if p.digits == f.digits and not p.is_version]
            values = {p.value for _, p in digits}
            if digits and len(values) == 1:
                n, p = digits[0]
                new = render(p.value, lang)
                if _completes(p.unit) and not f.unit and (base(lang) == "zh" or p.unit.isascii()):
                    new += ("" if base(lang) == "zh" else " ") + literal[(n, p.start)]
                what = "magnitude added" if f.magnitude == 0 else "magnitude corrected"
                replacement = (new, n, f"{what}: passage {n} gives {answer[f.start:f.end]!s} as {render(p.value, lang)}")
        if replacement is None:
            continue
        new, n, why = replacement
        before = answer[f.start : f.end]
        if new == before:
            continue
        out.append(answer[pos : f.start])
        out.append(new)
        pos = f.end
        repairs.append(Repair(before, new, n, why))
    out.append(answer[pos:])
    return "".join(out), repairs


def _ends_sentence(text: str, pos: int) -> bool:
    rest = text[pos:].lstrip()
    return not rest or rest[0] in "。.！!？?；;，,)）」』\"'\n"


def owner_span(text: str, fig: Figure, figures: list[Figure]) -> tuple[int, int]:
    """The stretch of `text` a figure belongs to: from the end of the previous figure (or the start of
    its sentence or clause, whichever is later) to the end of its own clause. In "长城全长8851.8公里，
    其中明长城为6259.6公里" the second figure owns "其中明长城为6259.6公里"."""
    start = 0
    for m in FIGURE_SENTENCE_END.finditer(text, 0, fig.start):
        start = m.end()
    prev = [g.unit_end for g in figures if g.unit_end <= fig.start]
    if prev and max(prev) > start:
        start = max(prev)
    end = len(text)
    m = FIGURE_CLAUSE_END.search(text, fig.unit_end)
    s = FIGURE_SENTENCE_END.search(text, fig.unit_end)
    for hit in (m, s):
        if hit is not None and hit.start() < end:
            end = hit.start()
    return start, end


def belongs_to_other_subject(fig_value: Decimal | str, passage: str, markers: list[str]) -> str | None:
    """A question subject (folded `markers`: names, numbers from the question) that the passage names
    next to another figure but never next to this value: the model took another subject's figure.
    Returns the marker, or None when the passage gives no such sign."""
    if not markers:
        return None
    folded = fold(passage)
    figs = [f for f in figures_in(passage, chinese_numerals=True) if not (f.digits in markers and f.magnitude == 0)]
    mine = [f for f in figs if f.value == fig_value]
    units = {f.unit for f in mine if f.unit}
    # Only figures of the same stated kind compete (公里 and 公里, packages and packages): bare numbers
    # in a table row, or "Debian 11 Bullseye (2021)", say nothing about whose figure is whose.
    kin = [f for f in figs if f.value == fig_value or f.unit in units]
    others = [f for f in kin if f.value != fig_value]
    if not mine or not others:
        return None
    # Only a sentence that states this value and a competing one speaks to whose figure is whose;
    # a marker mentioned elsewhere in a long passage says nothing about it.
    sentences = _sentences(folded)
    for s0, s1 in sentences:
        here = [f for f in mine if s0 <= f.start < s1]
        rivals = [f for f in others if s0 <= f.start < s1]
        if not here or not rivals:
            continue
        spans_mine = [owner_span(folded, f, kin) for f in here]
        spans_other = [owner_span(folded, f, kin) for f in rivals]
        for marker in markers:
            in_mine = any(_has_marker(folded[a:b], marker) for a, b in spans_mine)
            in_other = any(_has_marker(folded[a:b], marker) for a, b in spans_other)
            if in_other and not in_mine:
                return marker
    return None


def _sentences(text: str) -> list[tuple[int, int]]:
    out, start = [], 0
    for m in FIGURE_SENTENCE_END.finditer(text):
        out.append((start, m.end()))
        start = m.end()
    out.append((start, len(text)))
    return out


def _has_marker(text: str, marker: str) -> bool:
    if re.fullmatch(r"[0-9a-z .\-_]+", marker):
        return re.search(r"(?<![0-9a-z.])" + re.escape(marker) + r"(?![0-9a-z]|\.\d)", text) is not None
    return marker in text
