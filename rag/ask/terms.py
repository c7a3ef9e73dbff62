"""Key terms of a question, and matching them against passage text.

`extract_key_terms` returns

* ``terms``: content words used for *coverage* (which share of the question's words the evidence contains);
* ``entities``: names (capitalised words and phrases, jieba proper nouns, Latin words inside a Chinese
  question, quoted strings) and ``numbers`` (digit strings): the *must-have* items. An item that appears
  in no retrieved passage at all is the cheap signal for abstaining before any model call.

Everything is matched on *folded* text: NFKC, Traditional -> Simplified (OpenCC t2s), casefolded. So a
Traditional question matches Simplified passages and the other way round.

Chinese is segmented with jieba (part-of-speech tags give the proper nouns: nr, ns, nt, nz and Latin
words, ``eng``); question words and particles (什么 多少 怎么 如何 吗 呢 是 的 ...) are dropped, and so
are single characters, which are mostly function words. English uses a small stopword list.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import asdict, dataclass, field

from rag.text.fold import fold
from rag.text.lang import base, to_simplified
from rag.text.scripts import HAN_RE
from rag.text.variants import canonical_word

ZH_STOPWORDS = frozenset(
    """
    什么 甚么 什麼 多少 怎么 怎样 怎麼 怎樣 怎么样 如何 为什么 为何 哪 哪个 哪些 哪里 哪儿 哪一 哪一年 哪年 哪天 几 几个
    多久 多长 多大 多高 多远 何时 何地 何人 谁 是否 是不是 能否 可否 可以 能 会 要 需要 应该 吗 呢 吧 啊 呀 么 嘛
    是 的 了 着 过 在 有 和 与 及 或 或者 而 并 也 都 就 还 又 被 把 对 于 从 到 向 给 让 以 为 由 之 其 这 那 这个 那个
    这些 那些 这里 那里 此 该 各 每 某 请问 请 告诉 我 我们 你 你们 他 她 它 他们 一下 一个 一些 有没有 有关 关于 方面
    情况 问题 内容 文档 文件 资料 根据 介绍 说明 解释 主要 什么样 怎么办 多 少 等 等等 吗？ 呢？ 具体 哪种 哪方面
    诸如 例如 比如 之类 像
    """.split()
)

# Single characters that carry grammar, not content: a bigram of these and the question's own
# characters is a junction of a reordered restatement, not something an answer adds (`rag.ask.cite`).
ZH_FUNCTION_CHARS = frozenset(w for w in ZH_STOPWORDS if len(w) == 1 and w not in "多少几") | frozenset("才将已")

EN_STOPWORDS = frozenset(
    """
    a an the and or but if then else of to in on at by for with from into onto over under about as is are was were be
    been being am do does did doing done have has had having can could shall should will would may might must i me my
    we our us you your he him his she her it its they them their this that these those there here what which who whom
    whose when where why how whether not no nor so than too very just also any some all each every both either neither
    such much many more most less few one ones own same other another again once please tell explain describe say says
    said according document documents doc docs text passage passages file files mention mentioned mentions give given
    get gets got make makes made use used using way ways kind kinds type types thing things something anything
    ok okay yes hi hello because
    """.split()
)

# "how long", "how many": the adjective belongs to the question word.
_HOW_WORDS = frozenset("long many much far old big large often soon tall high wide deep".split())

# jieba tags that mark proper nouns (person, place, organisation, other) and Latin words.
_ENTITY_TAGS = frozenset({"nr", "nrt", "nrfg", "ns", "nt", "nz", "eng"})
# Quote pairs; `x' is the TeX/GNU style. A plain ' opens and closes only outside words (not in "don't").
_QUOTE_RE = re.compile(
    r"\"([^\"]{2,80})\"|“([^”]{2,80})”|「([^」]{1,80})」|『([^』]{1,80})』|《([^》]{1,80})》|‘([^’]{2,80})’"
    r"|`([^`']{1,80})'|(?<![A-Za-z0-9])'([^']{2,80})'(?![A-Za-z0-9])"
)
# Between names, these keep a list of alternatives, examples or aliases going ("Knoppix/Ubuntu/...", "Kde,
# Gnome or Xorg", "Flash (SWF)"). Not "and": "Python and Java" asks about both.
_LIST_SEPARATORS = frozenset({"/", ",", "，", "、", "or", "或", "或者", "("})
NUMBER_RE = re.compile(r"(?<![0-9A-Za-z.])\d+(?:[.,]\d+)*(?:%|％)?")
# Latin tokens that contain digits (GPT-4, COVID-19, v2) are names, not numbers.
_ALNUM_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*[-_.]?\d[A-Za-z0-9]*|\d+[A-Za-z]+[A-Za-z0-9]*")
_LATIN_TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-'’.][A-Za-z0-9]+)*")
_jieba_lock = threading.Lock()

# Small numbers are often spelled out: "3 steps" vs "three steps" / "三个步骤".
_SPELLED = {
    "0": ("zero", "零"), "1": ("one", "一"), "2": ("two", "二", "两"), "3": ("three", "三"), "4": ("four", "四"),
    "5": ("five", "五"), "6": ("six", "六"), "7": ("seven", "七"), "8": ("eight", "八"), "9": ("nine", "九"),
    "10": ("ten", "十"), "11": ("eleven", "十一"), "12": ("twelve", "十二"),
}


def norm_number(s: str) -> str:
    return unicodedata.normalize("NFKC", s).replace(",", "").rstrip("%％")


def numbers_list(text: str) -> list[str]:
    """Digit strings in `text`, in order, normalised ("1,000" -> "1000", "50%" -> "50"); digits inside
    names like GPT-4 are not numbers."""
    t = _ALNUM_NAME_RE.sub(" ", unicodedata.normalize("NFKC", text or ""))
    out: list[str] = []
    for m in NUMBER_RE.finditer(t):
        n = norm_number(m.group(0))
        if n not in out:
            out.append(n)
    return out


def numbers_in(text: str) -> set[str]:
    return set(numbers_list(text))


def stem(word: str) -> str:
    """Crude English stemmer, enough to match install/installing/installation, take/takes, ship/shipping."""
    w = word.casefold().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = canonical_word(w)  # metres/meters, km/kilometer: one fact, one stem
    if len(w) <= 3 or not w.isalpha():
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ations", "ation", "ing", "ed", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]  # shipp -> ship
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def latin_stems(folded_text: str) -> set[str]:
    return {stem(w) for w in _LATIN_TOKEN_RE.findall(folded_text)}


@dataclass
class KeyTerms:
    terms: list[str] = field(default_factory=list)  # folded coverage terms (Chinese words, English stems...)
    entities: list[str] = field(default_factory=list)  # folded names / quoted strings
    numbers: list[str] = field(default_factory=list)  # normalised digit strings
    entity_kinds: dict[str, str] = field(default_factory=dict)  # entity -> "cjk" | "latin" | "quoted"
    # Names listed as alternatives or examples ("Knoppix/Ubuntu/..."): one present is enough.
    alternatives: list[list[str]] = field(default_factory=list)

    def alternatives_of(self, entity: str) -> list[str]:
        return next((g for g in self.alternatives if entity in g), [entity])

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def all_terms(self) -> list[str]:
        """Coverage set: terms, entities and numbers, without duplicates."""
        seen: dict[str, None] = {}
        for t in [*self.terms, *self.entities, *self.numbers]:
            seen.setdefault(t, None)
        return list(seen)


def _jieba_pairs(text: str) -> list[tuple[str, str]]:
    import logging

    import jieba
    import jieba.posseg as pseg

    jieba.setLogLevel(logging.WARNING)
    with _jieba_lock:  # jieba's lazy initialisation is not thread-safe
        return [(p.word, p.flag) for p in pseg.cut(text)]


class _Lists:
    """Collects runs of names joined only by list separators (see `_LIST_SEPARATORS`)."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.current: list[str] = []

    def name(self, entity: str) -> None:
        if entity not in self.current:
            self.current.append(entity)

    def close(self) -> None:
        if len(self.current) >= 2:
            self.groups.append(self.current)
        self.current = []


# A Latin name written as one token: letters and digits joined by - . _ without spaces (CD-ROM,
# ModelX3.5, Qwen2.5-Coder-1.5B), at least one letter. jieba cuts these apart (ModelX3 | .5).
GLUED_NAME_RE = re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z0-9._-]*[A-Za-z])[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)+(?![A-Za-z0-9])")


def _merge_glued(pairs: list[tuple[str, str]], text: str) -> list[tuple[str, str]]:
    """Join the jieba tokens that cut one glued Latin name (see `GLUED_NAME_RE`) back into one `eng` token.
    `pairs` cover `text` exactly, in order."""
    spans = [m.span() for m in GLUED_NAME_RE.finditer(text)]
    if not spans:
        return pairs
    out: list[tuple[str, str]] = []
    pos, merging_until = 0, -1
    for word, flag in pairs:
        start, pos = pos, pos + len(word)
        if start < merging_until and out:
            out[-1] = (out[-1][0] + word, "eng")
            continue
        span = next((sp for sp in spans if sp[0] == start and sp[1] > pos), None)
        if span is not None:
            merging_until = span[1]
        out.append((word, flag if span is None else "eng"))
    return out


def extract_key_terms(question: str, lang: str) -> KeyTerms:
    q = unicodedata.normalize("NFKC", question or "").strip()
    kt = KeyTerms()
    lists = _Lists()

    def add(lst: list[str], item: str) -> None:
        if item and item not in lst:
            lst.append(item)

    # Quoted strings are entities in every language; the words inside them are not names of their own.
    quoted_spans: list[tuple[int, int]] = []
    for m in _QUOTE_RE.finditer(q):
        quoted = next(g for g in m.groups() if g)
        add(kt.entities, fold(quoted.strip()))
        kt.entity_kinds[fold(quoted.strip())] = "quoted"
        quoted_spans.append(m.span())
    for n in numbers_list(q):
        add(kt.numbers, n)

    def in_quote(start: int) -> bool:
        return any(a <= start < b for a, b in quoted_spans)

    if base(lang) == "zh" or HAN_RE.search(q):
        simplified = to_simplified(q)
        pos = 0
        latin: list[str] = []  # consecutive Latin words separated by spaces: one name ("Linux Mint")

        def flush_latin() -> None:
            if latin:
                name = " ".join(latin)
                add(kt.entities, name)
                kt.entity_kinds.setdefault(name, "latin")
                lists.name(name)
                latin.clear()

        for word, flag in _merge_glued(_jieba_pairs(simplified), simplified):
            start, pos = pos, pos + len(word)
            w = word.strip()
            if not w:
                continue  # spaces neither end a name nor a list
            if not any(ch.isalnum() for ch in w) or NUMBER_RE.fullmatch(w):
                flush_latin()
                if w not in _LIST_SEPARATORS:
                    lists.close()
                continue
            if HAN_RE.search(w):
                flush_latin()
                folded = fold(w)
                if folded in _LIST_SEPARATORS:
                    continue
                if folded in ZH_STOPWORDS or len(w) < 2 or all(ch in ZH_STOPWORDS for ch in folded):
                    lists.close()
                    continue
                add(kt.terms, folded)
                if flag in _ENTITY_TAGS:
                    add(kt.entities, folded)
                    kt.entity_kinds.setdefault(folded, "cjk")
                    lists.name(folded)
                else:
                    lists.close()
            else:
                # A Latin word inside a Chinese question is almost always a name (Python, iPhone, GPT-4).
                folded = w.casefold()
                if folded in EN_STOPWORDS or len(folded) < 2:
                    flush_latin()
                    if folded not in _LIST_SEPARATORS:
                        lists.close()
                    continue
                add(kt.terms, stem(folded))
                if in_quote(start):
                    flush_latin()
                    continue
                latin.append(folded)
        flush_latin()
        lists.close()
        kt.alternatives = lists.groups
        return kt

    # English (and any non-Chinese) question.
    sentence_start = True
    phrase: list[str] = []

    def flush() -> None:
        if phrase:
            name = " ".join(phrase).casefold()
            add(kt.entities, name)
            kt.entity_kinds.setdefault(name, "latin")
            lists.name(name)
            phrase.clear()

    last_end = 0
    prev_low = ""
    for m in re.finditer(r"[A-Za-z][A-Za-z0-9]*(?:[-'’.][A-Za-z0-9]+)*|[.!?;:,]|\d[\d.,]*", q):
        tok = m.group(0)
        gap = q[last_end : m.start()].strip()
        if gap:
            flush()  # names are words separated by spaces only
            if gap not in _LIST_SEPARATORS:
                lists.close()
        last_end = m.end()
        if tok in ".!?;:,":
            flush()
            if tok not in _LIST_SEPARATORS:
                lists.close()
            sentence_start = tok in ".!?"
            continue
        if tok[0].isdigit():
            flush()
            lists.close()
            sentence_start = False
            continue
        low = tok.casefold()
        if prev_low == "how" and low in _HOW_WORDS:
            prev_low = low
            sentence_start = False
            continue
        prev_low = low
        is_stop = low in EN_STOPWORDS
        capital = tok[0].isupper()
        special = any(c.isdigit() for c in tok) or (len(tok) > 1 and tok.isupper()) or any(c.isupper() for c in tok[1:])
        if not is_stop:
            add(kt.terms, stem(low))
        if (capital and not sentence_start and not is_stop) or (special and not is_stop):
            phrase.append(tok)
        else:
            flush()
            if low not in _LIST_SEPARATORS:
                lists.close()
        sentence_start = False
    flush()
    lists.close()
    # Drop single-word entities that are part of a multi-word one.
    multi = [e for e in kt.entities if " " in e]
    kt.entities = [e for e in kt.entities if " " in e or kt.entity_kinds.get(e) == "quoted" or not any(e in m.split() for m in multi)]
    kt.alternatives = [g for g in ([e for e in grp if e in kt.entities] for grp in lists.groups) if len(g) >= 2]
    return kt


def contains_term(term: str, folded_text: str, text_stems: set[str] | None = None) -> bool:
    """Whether folded text contains a folded term (Chinese: substring; English: stem or phrase match)."""
    if not term:
        return False
    if HAN_RE.search(term):
        return term in folded_text
    if term in folded_text and _word_bounded(term, folded_text):
        return True
    words = _LATIN_TOKEN_RE.findall(term)
    if not words:
        return term in folded_text
    stems = text_stems if text_stems is not None else latin_stems(folded_text)
    return all(stem(w) in stems for w in words)


def _word_bounded(term: str, text: str) -> bool:
    return re.search(r"(?<![a-z0-9])" + re.escape(term) + r"(?![a-z0-9])", text) is not None


# Hyphenated modifiers that say nothing about which name is meant (Debian-based, non-Debian).
_AFFIXES = frozenset("non based specific like related style compatible free only aware enabled powered friendly "
                     "oriented ready native derived centric".split())


def contains_entity(entity: str, folded_text: str, text_stems: set[str] | None = None) -> bool:
    """Lenient presence test for a must-have name. A Chinese name of 3+ characters also counts as present
    when it minus its first or last character is (明长城 ~ 长城), a hyphenated Latin one when one of its
    parts is (CD-ROMs ~ CD), to avoid abstaining on variants."""
    if contains_term(entity, folded_text, text_stems):
        return True
    if "-" in entity and not HAN_RE.search(entity):  # CD-ROMs ~ CD, non-Debian ~ Debian
        parts = [w for w in re.split(r"[-\s]+", entity) if len(w) >= 2 and w not in EN_STOPWORDS and w not in _AFFIXES]
        return any(contains_term(w, folded_text, text_stems) for w in parts)
    if HAN_RE.search(entity) and len(entity) >= 3:
        return entity[1:] in folded_text or entity[:-1] in folded_text
    if GLUED_NAME_RE.fullmatch(entity) and any(c.isdigit() for c in entity):  # ModelX3.5 ~ ModelX 3.5, Model-X3.5
        squeeze = re.compile(r"[\s._-]+")
        return squeeze.sub("", entity) in squeeze.sub("", folded_text)
    return False


def contains_number(number: str, text: str, numbers: set[str] | None = None) -> bool:
    nums = numbers if numbers is not None else numbers_in(text)
    if number in nums:
        return True
    spelled = _SPELLED.get(number)
    if spelled:
        folded = fold(text)
        en, *zh = spelled
        return _word_bounded(en, folded) or any(z in folded for z in zh)
    return False
