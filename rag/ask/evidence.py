"""Does the evidence suffice? Cheap signals only: no model call.

Signals, computed over the pool (all queries so far):

* ``coverage``: share of the question's key terms (words, numbers, quoted strings) found in the text of
  the top `coverage_top_n` passages. After a rewrite, the best coverage of one rewrite phrase also
  counts (``effective_coverage`` is the larger): the documents may use the rewrite's synonyms, or be in
  the collection's other language, where the question's own words cannot occur;
* ``top_dense``: best dense (cosine) score; ``dense_ok`` = top_dense >= `dense_min`;
* ``agree``: some chunk is in the top `agree_top_n` of both the dense and the BM25 list of one query,
  and contains a key term of the question or of a rewrite phrase;
* ``missing``: must-have names and numbers that occur in NO pooled passage (of names listed as
  alternatives, "Knoppix/Ubuntu/...", one present is enough). Only items that are written
  the same way in every language of the collection are checked (numbers always; Latin names when the
  collection is English-only or the question is Chinese; Chinese names when it is Chinese-only), so an
  English question about 长城 documents is not refused for lacking "Great Wall".

Verdicts (first rule that applies):

1. no candidates                                       -> ``empty``   (abstain, nothing to read)
2. missing non-empty                                   -> ``absent``  (abstain before any model call)
3. coverage < coverage_low                             -> ``weak``
4. dense_ok and agree                                  -> ``sufficient``
5. coverage >= coverage_high and (dense_ok or agree)   -> ``sufficient``
6. neither dense_ok nor agree                          -> ``weak``
7. otherwise                                           -> ``inconclusive``

A ``weak`` verdict with no key term found at all (of at least 2), no confident dense match and no
agreement, once queries in every language of the collection were issued, is also marked ``unrelated``: when the
loop ends on it (after any rewrite), the question is refused without an answer call.

A question without key terms (coverage undefined) skips 3 and 5. Dense scores missing (a BM25-only
retriever) make dense_ok false. The thresholds live in `rag.ask.config.Thresholds`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rag.ask.config import Thresholds
from rag.ask.events import EvidenceVerdict
from rag.ask.pool import Pooled
from rag.ask.terms import KeyTerms, contains_entity, contains_number, contains_term, latin_stems, numbers_in
from rag.text.fold import fold
from rag.text.lang import base


@dataclass
class Assessment:
    verdict: EvidenceVerdict
    reason: str
    signals: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def checkable(kind: str, question_lang: str, collection_langs: set[str]) -> bool:
    """Whether a must-have item of this kind is written the same way in every language of the collection."""
    qb = base(question_lang)
    langs = collection_langs or {qb}
    if kind == "number":
        return True
    if kind == "quoted":
        return langs <= {qb}
    if kind == "cjk":
        return langs <= {"zh"}
    if kind == "latin":
        return langs <= {"en"} or qb == "zh"
    return False


class _Texts:
    """Folded texts, stems and numbers of a set of passages, computed once."""

    def __init__(self, texts: list[str]):
        self.raw = texts
        self.folded = [fold(t) for t in texts]
        self.stems = [latin_stems(f) for f in self.folded]
        self.numbers = [numbers_in(t) for t in texts]

    def has_term(self, term: str) -> bool:
        return any(contains_term(term, f, s) for f, s in zip(self.folded, self.stems))

    def has_entity(self, e: str) -> bool:
        return any(contains_entity(e, f, s) for f, s in zip(self.folded, self.stems))

    def has_any(self, terms: list[str]) -> bool:
        return any(self.has_number(t) or self.has_term(t) for t in terms)

    def has_number(self, n: str) -> bool:
        return any(contains_number(n, r, ns) for r, ns in zip(self.raw, self.numbers))


def coverage_terms(kt: KeyTerms) -> list[str]:
    out: list[str] = []
    for t in [*kt.terms, *kt.numbers, *[e for e in kt.entities if kt.entity_kinds.get(e) == "quoted"]]:
        if t not in out:
            out.append(t)
    return out


def _coverage(kt: KeyTerms, texts: _Texts) -> tuple[list[str], list[str]]:
    found, missing = [], []
    for t in coverage_terms(kt):
        ok = texts.has_number(t) if t in kt.numbers else texts.has_term(t)
        (found if ok else missing).append(t)
    return found, missing


def assess(
    ranked: list[Pooled],
    *,
    key_terms: KeyTerms,
    question_lang: str,
    collection_langs: set[str],
    thresholds: Thresholds,
    agreements: dict[str, list[int]],
    rewrite_terms: list[tuple[str, KeyTerms]] | None = None,
    searched_langs: set[str] | None = None,
) -> Assessment:
    th = thresholds
    if not ranked:
        return Assessment("empty", "the retrievers returned no candidates -> abstain", {"candidates": 0})

    all_texts = _Texts([p.candidate.text for p in ranked])
    top_texts = _Texts([p.candidate.text for p in ranked[: th.coverage_top_n]])

    # Must-have names and numbers.
    missing_must: list[str] = []
    unchecked: list[str] = []
    for n in key_terms.numbers:
        if not all_texts.has_number(n):
            missing_must.append(n)
    for e in key_terms.entities:
        kind = key_terms.entity_kinds.get(e, "latin")
        if not checkable(kind, question_lang, collection_langs):
            unchecked.append(e)
        elif not any(all_texts.has_entity(a) for a in key_terms.alternatives_of(e)):
            missing_must.append(e)

    terms = coverage_terms(key_terms)
    found, missing_terms = _coverage(key_terms, top_texts)
    coverage = (len(found) / len(terms)) if terms else None
    rw_cov = None
    rw_best = None
    for phrase, kt in rewrite_terms or []:
        ct = coverage_terms(kt)
        if not ct:
            continue
        f, _ = _coverage(kt, top_texts)
        c = len(f) / len(ct)
        if rw_cov is None or c > rw_cov:
            rw_cov, rw_best = c, phrase
    eff = coverage
    if rw_cov is not None and (eff is None or rw_cov > eff):
        eff = rw_cov

    dense_scores = [p.candidate.dense_score for p in ranked if p.candidate.dense_score is not None]
    top_dense = max(dense_scores) if dense_scores else None
    dense_ok = top_dense is not None and top_dense >= th.dense_min
    # Agreement counts only on a chunk that contains a key term of the question or of a rewrite
    # phrase: BM25 also ranks chunks that share nothing but common words with the query.
    all_terms = [*terms, *[t for _, kt in (rewrite_terms or []) for t in coverage_terms(kt)]]
    by_id = {p.candidate.chunk_id: p.candidate.text for p in ranked}
    agreed = []
    for cid in sorted({cid for ids in agreements.values() for cid in ids}):
        if cid in by_id and (not all_terms or _Texts([by_id[cid]]).has_any(all_terms)):
            agreed.append(cid)
    agree = bool(agreed)

    signals = {
        "candidates": len(ranked),
        "key_terms": terms,
        "found_terms": found,
        "missing_terms": missing_terms,
        "coverage": None if coverage is None else round(coverage, 3),
        "rewrite_coverage": None if rw_cov is None else round(rw_cov, 3),
        "rewrite_phrase": rw_best,
        "effective_coverage": None if eff is None else round(eff, 3),
        "top_dense": None if top_dense is None else round(top_dense, 4),
        "dense_min": th.dense_min,
        "dense_ok": dense_ok,
        "agree": agree,
        "agreed_chunks": agreed,
        "missing_must": missing_must,
        "unchecked_names": unchecked,
        "coverage_low": th.coverage_low,
        "coverage_high": th.coverage_high,
    }

    # Words and numbers for the reason.
    if top_dense is None:
        dense_txt = "no dense scores"
    else:
        dense_txt = f"top dense {top_dense:.2f} {'>=' if dense_ok else '<'} {th.dense_min:.2f}"
    agree_txt = (
        f"retrievers agree on chunk {agreed[0]} (top {th.agree_top_n} of both)" if agree else f"retrievers do not agree in their top {th.agree_top_n}"
    )
    if terms:
        cov_txt = f"{len(found)} of {len(terms)} key terms found ({coverage:.2f})"
        if rw_cov is not None:
            cov_txt += f", best rewrite phrase {rw_best!r} covers {rw_cov:.2f}"
    else:
        cov_txt = "no key terms in the question"

    if missing_must:
        names = ", ".join(repr(m) for m in missing_must)
        return Assessment("absent", f"{names} found in none of {len(ranked)} retrieved passages -> abstain", signals)
    # Nothing in the evidence relates to the question: no key term of the question or of any rewrite
    # anywhere in the top passages, no confident dense match, no agreement. Only meaningful once every
    # language of the collection has been searched in (else the words may just be in the other
    # language). Rewriting still gets its chance; if the evidence is still unrelated when the loop
    # ends, the question is refused without an answer call.
    qb = base(question_lang)
    searched = (searched_langs or set()) | {qb}
    unrelated = (
        (collection_langs or {qb}) <= searched and len(terms) >= 2 and eff == 0 and not dense_ok and not agree
    )
    signals["unrelated"] = unrelated
    if eff is not None and eff < th.coverage_low:
        tail = " (unrelated: abstain if no rewrite helps)" if unrelated else ""
        return Assessment("weak", f"{cov_txt}, below {th.coverage_low:.2f}; {dense_txt}{tail} -> rewrite", signals)
    if dense_ok and agree:
        return Assessment("sufficient", f"{dense_txt} and {agree_txt}; {cov_txt} -> answer", signals)
    if eff is not None and eff >= th.coverage_high and (dense_ok or agree):
        return Assessment(
            "sufficient", f"{cov_txt} >= {th.coverage_high:.2f} and {dense_txt if dense_ok else agree_txt} -> answer", signals
        )
    if not dense_ok and not agree:
        return Assessment("weak", f"{dense_txt} and {agree_txt}; {cov_txt} -> rewrite", signals)
    return Assessment("inconclusive", f"{cov_txt}; {dense_txt}; {agree_txt} -> inconclusive", signals)
