"""Attribution: which packed passage supports each answer sentence. The model is never asked to cite.

Features of a text (on folded text: NFKC, Simplified, casefolded): Chinese character bigrams, English
word stems (stopwords dropped), numbers. A sentence is *supported* by a passage when at least
`support_min` of its features and at least `support_min_overlap` of them occur in the passage, and
every number in it occurs in some packed passage. Echoing the question is not support: when the
sentence has at least `support_min_overlap` features that are not in the question ("novel" ones:
what the sentence adds), at least `support_min` of those must occur in the passage too, so
"明长城全长一万公里" does not pass on the strength of 明长城/全长/公里 copied from the question. The quote is the passage sentence sharing the most
features with the answer sentence; the citation's chunk ids are the chunks that quote lies in.

Sentences with fewer than `support_min_overlap` features ("是的。", "Yes.") are neutral: neither
supported nor counted against the answer. Figures are compared by value with their magnitude
(`rag.ask.figures`: 1750亿 = 175 billion; "1750" for 1750亿 is a truncated figure, not a match). A
sentence with a figure stated in no passage is removed from the answer (a made-up figure is the most
harmful kind of guess); a sentence with figures is attributed among the passages that state all of
them; and a figure that its passage states next to another subject than the question's (the
question's names and numbers, `markers`) is removed too.

Across languages (an English answer from a Chinese passage) word overlap cannot work. A sentence
without lexical support is then supported by a passage in another language that states one of its
significant figures (two or more digits, a decimal or a magnitude) that the question does not
contain, and that names one of the question's `subjects` when it has any: method ``number``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from rag.ask.config import Thresholds
from rag.ask.figures import Figure, belongs_to_other_subject, figures_in
from rag.ask.terms import EN_STOPWORDS, ZH_FUNCTION_CHARS, _LATIN_TOKEN_RE, contains_entity, contains_number, numbers_in, stem
from rag.ask.types import Citation, Passage
from rag.text.fold import fold
from rag.text.lang import base, detect_language
from rag.text.scripts import HAN_RE, HAN_RUN_RE
from rag.text.sentences import ANSWER_SENTENCE, ANSWER_SENTENCE_ENDED
from rag.text.variants import canonical_units_zh



def unfinished_tail(text: str) -> int:
    """Where the unfinished last sentence of an answer that was cut begins: `len(text)` when the last
    sentence ended (a stop, or a line break after it), 0 when no sentence did."""
    sents = split_sentences(text)
    if not sents:
        return 0
    start, end = sents[-1]
    if ANSWER_SENTENCE_ENDED.search(text[start:end]) or "\n" in text[end:]:
        return len(text)
    line = text.rfind("\n", 0, start) + 1
    return line if _LIST_MARKER.fullmatch(text[line:start]) else start  # "2. Run" goes whole, marker too


_LIST_MARKER = re.compile(r"\s*(?:[-*•·]|\d{1,3}[.)、]|[（(]?\d{1,3}[)）])?\s*")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank sentence, end including its punctuation."""
    out: list[tuple[int, int]] = []
    pos = 0
    for m in ANSWER_SENTENCE.finditer(text):
        if m.end() <= pos and m.start() == m.end():
            if m.end() >= len(text):
                break
            continue
        s, e = m.start(), m.end()
        pos = e
        chunk = text[s:e]
        if chunk.strip():
            lead = len(chunk) - len(chunk.lstrip())
            trail = len(chunk) - len(chunk.rstrip())
            out.append((s + lead, e - trail))
        if e >= len(text):
            break
    return out


def features(text: str) -> set[str]:
    f = canonical_units_zh(fold(text))
    feats: set[str] = set()
    for run in HAN_RUN_RE.findall(f):
        for i in range(len(run) - 1):
            feats.add(run[i : i + 2])
    for w in _LATIN_TOKEN_RE.findall(f):
        if w not in EN_STOPWORDS and len(w) > 1:
            feats.add("w:" + stem(w))
    for n in numbers_in(text):
        feats.add("#" + n)
    return feats


_YES_NO_EN = re.compile(r"^\s*(?:can|could|is|are|am|was|were|do|does|did|will|would|should|shall|may|might|must|has|have|had)\b", re.I)
_YES_NO_ZH = re.compile(r"(?:吗|么|嗎|麼)\s*[？?]?\s*$|是否|能否|可否|有没有|是不是")


def restates_question(answer: str, question: str) -> bool:
    """Whether the answer only says back the question (the small generator sometimes copies it): at least
    two features and none beyond the question's. Not for yes/no questions, where "可以自动升级系统。"
    to "可以自动升级系统吗？" is an answer."""
    if _YES_NO_EN.match(question) or _YES_NO_ZH.search(question.strip()):
        return False
    f = features(answer)
    return len(f) >= 2 and f <= features(question)


@dataclass
class SentenceSupport:
    text: str
    start: int
    end: int
    features: int
    passage: int | None  # n of the best passage
    score: float
    overlap: int
    supported: bool | None  # None: neutral (too short to judge)
    method: str  # lexical | number | none
    quote: str = ""
    quote_start: int = 0
    quote_end: int = 0
    dropped: bool = False
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _passage_sentences(p: Passage) -> list[tuple[int, int]]:
    return split_sentences(p.text) or [(0, len(p.text))]


def attribute(answer: str, passages: list[Passage], th: Thresholds, *,
              question: str = "", subjects: list[str] | None = None, markers: list[str] | None = None,
              repaired: list[str] | None = None) -> list[SentenceSupport]:
    """`subjects`: folded names the question is about (its key entities and those of its translations):
    support across languages needs a passage naming one. `markers`: those names and the question's
    numbers: a figure must not be the one its passage states next to a marker for another subject
    (see `figures.belongs_to_other_subject`). `repaired`: figures as `figures.complete` rewrote them
    from the passages: a repair makes a figure agree with a passage, so it is never the evidence a
    sentence rests on (the rules that accept a sentence for its figure skip sentences holding one)."""
    qfeats = features(question)
    qchars = set(HAN_RE.findall(fold(question)))
    qnums = numbers_in(question)
    subjects = [s for s in (subjects or []) if s]
    markers = [m for m in (markers or []) if m]
    pfeats = [features(p.text) for p in passages]
    plangs = [base(detect_language(p.text)) for p in passages]
    pnums = [numbers_in(p.text) for p in passages]
    pfigs = [figures_in(p.text, chinese_numerals=True) for p in passages]
    pvalues = [{f.value for f in figs} for figs in pfigs]
    pdigits = [{f.digits: f.value for f in figs} for figs in pfigs]
    psents = [_passage_sentences(p) for p in passages]
    repaired = [r for r in (repaired or []) if r]
    out: list[SentenceSupport] = []
    for s, e in split_sentences(answer):
        sent = answer[s:e]
        by_repair = any(r in sent for r in repaired)
        f = features(sent)
        figs_all = figures_in(sent)
        figs = [g for g in figs_all if g.digits not in qnums or g.magnitude]  # what the sentence adds
        holds = [all(_has_figure(g, i, passages, pnums, pvalues, pdigits) for g in figs) for i in range(len(passages))]
        # A sentence with figures is attributed among the passages that state all of them, when any does.
        eligible = [i for i in range(len(passages)) if holds[i]] if figs and any(holds) else range(len(passages))
        best_i, best_score, best_ov = None, 0.0, 0
        for i in eligible:
            ov = len(f & pfeats[i])
            sc = ov / len(f) if f else 0.0
            if sc > best_score or (sc == best_score and ov > best_ov):
                best_i, best_score, best_ov = i, sc, ov
        ss = SentenceSupport(sent, s, e, len(f), None, round(best_score, 4), best_ov, None, "none")
        missing = [sent[g.start:g.unit_end].strip() for g in figs_all
                   if not any(_has_figure(g, i, passages, pnums, pvalues, pdigits) for i in range(len(passages)))]
        if missing:
            ss.supported, ss.dropped = False, True
            ss.reason = f"figure(s) {', '.join(missing)} in no passage (value, magnitude and digits compared)"
            if best_i is not None:
                ss.passage = passages[best_i].n
        elif len(f) < th.support_min_overlap:
            ss.reason = f"{len(f)} feature(s): too short to judge"
        elif best_i is not None and best_score >= th.support_min and best_ov >= th.support_min_overlap and (
            len(novel := f - qfeats) < th.support_min_overlap or len(novel & pfeats[best_i]) / len(novel) >= th.support_min
        ):
            ss.supported, ss.method, ss.passage = True, "lexical", passages[best_i].n
            ss.reason = f"{best_ov} of {len(f)} features ({best_score:.2f} >= {th.support_min:.2f}) in passage {passages[best_i].n}"
            if len(novel) >= th.support_min_overlap:
                ss.reason += f"; {len(novel & pfeats[best_i])} of {len(novel)} not from the question"
            qs, qe = _best_quote(f, passages[best_i], psents[best_i])
            ss.quote_start, ss.quote_end, ss.quote = qs, qe, passages[best_i].text[qs:qe]
        elif not by_repair and (i := _adds_only_passage_facts(f, qfeats, qchars, pfeats, eligible, passages,
                                                              subjects)) is not None:
            ss.supported, ss.method, ss.passage = True, "lexical", passages[i].n
            ss.reason = (f"the question's words plus what the sentence adds, {len(_added(f, qfeats, qchars))} feature(s) "
                         f"with a figure or name, all in passage {passages[i].n}"
                         + (", which names the question's subject" if subjects else ""))
            qs, qe = _best_quote(f, passages[i], psents[i])
            ss.quote_start, ss.quote_end, ss.quote = qs, qe, passages[i].text[qs:qe]
        elif best_i is not None and best_score >= th.support_min and best_ov >= th.support_min_overlap:
            novel = f - qfeats
            ss.supported, ss.passage = False, passages[best_i].n
            ss.reason = (f"only question words are supported: {len(novel & pfeats[best_i])} of {len(novel)} features "
                         f"not from the question are in passage {passages[best_i].n} (< {th.support_min:.2f})")
        elif not by_repair and (hit := _cross_language_number(sent, qnums, passages, pvalues, plangs, subjects)) is not None:
            i, n = hit
            ss.supported, ss.method, ss.passage = True, "number", passages[i].n
            ss.reason = f"cross-language: figure {n} (not in the question) occurs in passage {passages[i].n} ({plangs[i]})"
            if subjects:
                ss.reason += ", which names the question's subject"
            qs, qe = _quote_with(n, passages[i], psents[i])
            ss.quote_start, ss.quote_end, ss.quote = qs, qe, passages[i].text[qs:qe]
        else:
            ss.supported = False
            ss.reason = (
                f"best passage {passages[best_i].n if best_i is not None else '-'} shares {best_ov} of {len(f)} features "
                f"({best_score:.2f} < {th.support_min:.2f} or < {th.support_min_overlap})"
            )
            if by_repair:
                ss.reason += "; its figure was repaired from a passage, so the figure alone is no support"
            if best_i is not None:
                ss.passage = passages[best_i].n
        if ss.supported and figs and markers:
            _check_owner(ss, figs, passages, markers)
        out.append(ss)
    return out


def _adds_only_passage_facts(f: set[str], qfeats: set[str], qchars: set[str], pfeats: list[set[str]], eligible,
                             passages: list[Passage], subjects: list[str]) -> int | None:
    """A passage naming the question's subject and holding everything a sentence adds to the question,
    when that includes a figure or a Latin name: "smtps 的埠號是 465。" restates the question and adds
    465, which a table row states without the question's wording; "dpkglatch 需要至少 512 MB 的可用內存
    才能啓動。" reorders "啓動至少需要多少可用內存" around 512 MB, and "...的選項是 --dry-run。" names the
    option. The overlap over all features is low although the answer is grounded."""
    novel = _added(f, qfeats, qchars)
    if not novel or not any(x.startswith(("#", "w:")) for x in novel):
        return None
    return next((i for i in eligible if novel <= pfeats[i] and names_subject(passages[i].text, subjects)), None)


def _added(f: set[str], qfeats: set[str], qchars: set[str]) -> set[str]:
    """What a sentence adds to its question: features not in the question, less the bigrams that only
    join the question's own characters and function characters across a reordering ("要至" in
    "需要至少" from "至少需要", "才能", "的可"); a bigram with any other character ("不需") stays."""
    return {x for x in f - qfeats if not (len(x) == 2 and all(ch in qchars or ch in ZH_FUNCTION_CHARS for ch in x))}


def _has_figure(g: Figure, i: int, passages, pnums, pvalues, pdigits) -> bool:
    """Whether passage i states figure g: the same value (1750亿 = 175 billion), or, for a bare number,
    the same digits spelled or written plainly, unless the passage gives those digits another
    magnitude (then the bare number is a truncated figure: "1750" for 1750亿)."""
    if g.value in pvalues[i]:
        return True
    if g.magnitude or g.unit == "%":
        return False
    other = pdigits[i].get(g.digits)
    if other is not None and other != g.value:
        return False
    return contains_number(g.digits, passages[i].text, pnums[i])


def _check_owner(ss: SentenceSupport, figs: list[Figure], passages: list[Passage], subjects: list[str]) -> None:
    """Drop a supported sentence whose figure the passage gives to another subject than the question's."""
    p = next((p for p in passages if p.n == ss.passage), None)
    if p is None:
        return
    for g in figs:
        if g.is_version:
            continue
        marker = belongs_to_other_subject(g.value, p.text, subjects)
        if marker is not None:
            ss.supported, ss.dropped, ss.method = False, True, "none"
            ss.reason = (f"figure {ss.text[g.start:g.unit_end].strip()} belongs to another subject in passage {p.n}: "
                         f"the question's {marker!r} stands next to a different figure there")
            return


def _significant(g: Figure) -> bool:
    return bool(g.magnitude) or "." in g.digits or len(g.digits.replace(".", "")) >= 2


def _cross_language_number(sent: str, qnums: set[str], passages, pvalues, plangs, subjects: list[str]) -> tuple[int, str] | None:
    """A passage in another language that states one of the sentence's significant figures (by value)
    and, when the question names a subject, names it too: a shared number alone (a view count in an
    article's header) is no support for a figure about something the collection never mentions."""
    slang = base(detect_language(sent))
    for g in figures_in(sent):
        if (g.digits in qnums and not g.magnitude) or not _significant(g):
            continue
        for i, (values, pl) in enumerate(zip(pvalues, plangs)):
            if pl != slang and g.value in values and names_subject(passages[i].text, subjects):
                return i, sent[g.start:g.end].strip()
    return None


def names_subject(text: str, subjects: list[str]) -> bool:
    if not subjects:
        return True
    folded = fold(text)
    return any(contains_entity(s, folded) for s in subjects)


def _quote_with(number: str, p: Passage, sents: list[tuple[int, int]]) -> tuple[int, int]:
    target = next((g.value for g in figures_in(number)), None)
    for s, e in sents:
        piece = p.text[s:e]
        if number in numbers_in(piece) or (target is not None and any(g.value == target for g in figures_in(piece, chinese_numerals=True))):
            return s, min(e, s + 300)
    return sents[0][0], min(sents[0][1], sents[0][0] + 300)


def _best_quote(f: set[str], p: Passage, sents: list[tuple[int, int]]) -> tuple[int, int]:
    best, best_ov = sents[0], -1
    for s, e in sents:
        ov = len(f & features(p.text[s:e]))
        if ov > best_ov:
            best, best_ov = (s, e), ov
    s, e = best
    if e - s > 300:
        e = s + 300
    return s, e


def citations_for(supports: list[SentenceSupport], passages: list[Passage]) -> tuple[list[Citation], dict[int, int]]:
    """Citations numbered in order of first use (one per passage and quote), and sentence index -> n."""
    by_n = {p.n: p for p in passages}
    cits: list[Citation] = []
    key_to_n: dict[tuple, int] = {}
    sent_to_n: dict[int, int] = {}
    for idx, ss in enumerate(supports):
        if not ss.supported or ss.passage not in by_n:
            continue
        p = by_n[ss.passage]
        key = (p.n, ss.quote_start, ss.quote_end)
        if key not in key_to_n:
            ids = p.chunk_ids_between(ss.quote_start, ss.quote_end)
            key_to_n[key] = len(cits) + 1
            cits.append(Citation(
                n=len(cits) + 1,
                chunk_ids=ids,
                document_id=p.document_id,
                filename=p.filename,
                page=p.page_of(ids[0]) if ids else p.page,
                quote=ss.quote.strip(),
                passage=p.n,
            ))
        sent_to_n[idx] = key_to_n[key]
    return cits, sent_to_n


def render_answer(answer: str, supports: list[SentenceSupport], sent_to_n: dict[int, int], *, markers: bool) -> str:
    """The answer with dropped sentences removed and, optionally, [n] after each supported sentence."""
    pieces: list[str] = []
    pos = 0
    for idx, ss in enumerate(supports):
        pieces.append(answer[pos : ss.start])
        if not ss.dropped:
            pieces.append(ss.text)
            if markers and idx in sent_to_n:
                pieces.append(f"[{sent_to_n[idx]}]" if HAN_RE.search(ss.text) else f" [{sent_to_n[idx]}]")
        pos = ss.end
    pieces.append(answer[pos:])
    out = "".join(pieces)
    out = re.sub(r"[ \t]{2,}", " ", out)
    out = re.sub(r"\n{3,}", "\n\n", out)
    return out.strip()
