"""Scores for `rag bench qa`: span overlap, context recall, token F1 and ROUGE-L, summaries.

Text scores are word-level for English (lower-cased letters/digits runs) and character-level for
Chinese (each Han character is a token; Latin words and numbers inside Chinese text stay words).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

from rag.text.scripts import HAN

_EN = re.compile(r"[a-z0-9]+")
_ZH = re.compile(f"[{HAN}]|[a-z0-9]+")


def tokens(text: str, lang: str) -> list[str]:
    t = (text or "").lower()
    return _ZH.findall(t) if lang.startswith("zh") else _EN.findall(t)


def token_f1(pred: str, gold: str, lang: str) -> float:
    p, g = tokens(pred, lang), tokens(gold, lang)
    if not p or not g:
        return 0.0
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, gold: str, lang: str) -> float:
    """ROUGE-L F1 (LCS-based, beta = 1)."""
    p, g = tokens(pred, lang), tokens(gold, lang)
    if not p or not g:
        return 0.0
    lcs = _lcs(p, g)
    if lcs == 0:
        return 0.0
    prec, rec = lcs / len(p), lcs / len(g)
    return 2 * prec * rec / (prec + rec)


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def covered(gold: tuple[int, int], ranges: Iterable[tuple[int, int]]) -> float:
    """Share of the characters of `gold` inside the union of `ranges`."""
    g0, g1 = gold
    if g1 <= g0:
        return 0.0
    clipped = sorted((max(g0, s), min(g1, e)) for s, e in ranges if s < g1 and e > g0)
    total, cur_s, cur_e = 0, None, None
    for s, e in clipped:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total / (g1 - g0)


def first_hit_rank(ranked: list[tuple[object, int, int]], doc: object, gold: tuple[int, int]) -> int | None:
    """1-based rank of the first (document, start, end) overlapping the gold span of `doc`."""
    for i, (d, s, e) in enumerate(ranked, 1):
        if d == doc and overlaps((s, e), gold):
            return i
    return None


def hit_within_chars(ranked: list[tuple[object, int, int]], doc: object, gold: tuple[int, int], budget: int) -> bool:
    """Whether the gold span is overlapped by the ranked units read until `budget` characters of
    text were read (the unit that crosses the budget counts): recall at equal reading volume,
    independent of how large each system's units are."""
    read = 0
    for d, s, e in ranked:
        if read >= budget:
            return False
        if d == doc and overlaps((s, e), gold):
            return True
        read += max(0, e - s)
    return False


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q
    f, c = math.floor(k), math.ceil(k)
    return v[f] if f == c else v[f] + (v[c] - v[f]) * (k - f)


def mean(values: list[float]) -> float:
    vals = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(vals) / len(vals) if vals else float("nan")
