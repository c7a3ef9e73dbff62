"""Retrieval rounds of one question: the searches, the pool they fill, the evidence judged on it, the
rewrites that start another round, and the optional judge call.

Queries already issued are never repeated (`query_key`); every search's results are fused with
everything found so far. A collection with a language other than the question's gets the question
translated into it first; otherwise the model writes keyword phrases in the question's language.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.ask import prompts
from rag.ask.budgets import BudgetGuard
from rag.ask.calls import ModelCalls
from rag.ask.config import AskOptions
from rag.ask.events import (
    Candidates,
    EvidenceDecision,
    Fused,
    FusedHit,
    Hit,
    JudgeDecision,
    NotSelected,
    Query,
    QueryOrigin,
    QuerySkipped,
    Rewrite,
    RewriteDecision,
    RewriteMode,
    Selection,
    SkippedPhrase,
)
from rag.ask.evidence import Assessment, assess
from rag.ask.expand import build_passages
from rag.ask.pack import pack
from rag.ask.pool import Pool, Pooled
from rag.ask.ports import LLM, Retriever
from rag.ask.question import Question
from rag.ask.terms import KeyTerms, extract_key_terms
from rag.ask.trace import Trace
from rag.ask.types import QuestionTooLong
from rag.text.fold import fold
from rag.text.lang import base, detect_language


def query_key(q: str) -> str:
    """Two queries are the same when their folded letters, digits and Han characters are."""
    return "".join(ch for ch in fold(q) if ch.isalnum())


@dataclass(frozen=True)
class RewritePlan:
    mode: RewriteMode
    target: str  # the language the phrases are asked in
    messages: list[dict]


class Rounds:
    def __init__(self, question: Question, retriever: Retriever, llm: LLM, options: AskOptions, trace: Trace,
                 calls: ModelCalls, guard: BudgetGuard):
        self.q = question
        self.retriever = retriever
        self.llm = llm
        self.opt = options
        self.th = options.thresholds
        self.trace = trace
        self.calls = calls
        self.guard = guard
        self.current = 1  # the retrieval round under way (1: the question as asked)
        self.rewrites = 0
        self.issued: list[str] = []
        self.issued_keys: dict[str, str] = {}
        self.pool = Pool(self.th.rrf_k)
        self.rewrite_terms: list[tuple[str, KeyTerms]] = []  # each searched rewrite phrase with its key terms
        self.translated: set[str] = set()

    # ------------------------------------------------------------------ searching

    def search(self, query: str, origin: QueryOrigin) -> None:
        self.issued.append(query)
        self.issued_keys[query_key(query)] = query
        self.trace.emit(Query(round=self.current, query=query, origin=origin, language=detect_language(query), k=self.opt.k))
        results = list(self.retriever.search(query, self.opt.k))
        skipped = self.retriever.lexical_skipped(query)
        dense = sorted((c for c in results if c.dense_rank is not None), key=lambda c: c.dense_rank)
        bm25 = sorted((c for c in results if c.bm25_rank is not None), key=lambda c: c.bm25_rank)
        self.trace.emit(Candidates(
            round=self.current,
            query=query,
            dense=[Hit(c.chunk_id, c.dense_rank, c.dense_score) for c in dense],
            bm25=[Hit(c.chunk_id, c.bm25_rank, c.bm25_score) for c in bm25],
            lexical_skipped=skipped or None,
            fused=[FusedHit(c.chunk_id, i + 1, c.fused_score, c.document_id, c.filename, c.page, c.ordinal)
                   for i, c in enumerate(results)],
        ))
        self.pool.add(query, results, agree_top_n=self.th.agree_top_n)

    def assess(self) -> Assessment:
        ranked, dups = self.pool.ranked()
        self.trace.emit(Fused(round=self.current, queries=len(self.pool.lists), candidates=[p.to_dict() for p in ranked],
                              duplicates=dups))
        a = assess(
            ranked,
            key_terms=self.q.key_terms,
            question_lang=self.q.lang,
            collection_langs=self.q.collection_langs,
            thresholds=self.th,
            agreements=self.pool.agreements,
            rewrite_terms=self.rewrite_terms,
            searched_langs={base(detect_language(q)) for q in self.issued},
        )
        self.trace.emit(EvidenceDecision(round=self.current, verdict=a.verdict, reason=a.reason, signals=a.signals))
        return a

    # ------------------------------------------------------------------ rewriting

    def plan(self) -> RewritePlan:
        """A collection with another language than the question's gets a translation first (the question
        was already searched in its own language); after that, and in single-language collections, keyword
        phrases in the question's language."""
        qb = base(self.q.lang)
        untranslated = sorted(self.q.collection_langs - {qb} - self.translated)
        if untranslated:
            target = untranslated[0]
            return RewritePlan("translate", target, prompts.translate_messages(self.q.text, target))
        return RewritePlan("keywords", qb, prompts.rewrite_messages(self.q.text, self.q.lang, n_same=self.opt.max_rewrite_queries,
                                                                    issued=self.issued))

    def rewrite(self, why: str) -> int:
        """One rewrite call and the searches of its new phrases; returns how many were searched."""
        plan = self.plan()
        mode, target = plan.mode, plan.target
        self.trace.emit(RewriteDecision(verdict="rewrite", round=self.current, mode=mode, target_language=target,
                                        reason=f"{why} -> rewrite the question ({'translate into ' + target if mode == 'translate' else 'keyword phrases'})"))
        c = self.calls.call("rewrite", plan.messages, round=self.current, max_new_tokens=self.opt.rewrite_max_tokens,
                            deadline=self.guard.rewrite_deadline)
        self.rewrites += 1
        if mode == "translate":
            self.translated.add(target)
        if c.stopped_by == "deadline":
            self.guard.stop("timeout_s", "the rewrite call was cut at its deadline (the rest is reserved for the answer)")
        chosen = self._choose(mode, prompts.parse_rewrite(c.text, limit=self.opt.max_rewrite_queries + self.opt.max_cross_queries + 6))
        self.current += 1
        new = 0
        for ph in chosen:
            key = query_key(ph)
            if not key:
                continue
            if key in self.issued_keys:
                self.trace.emit(QuerySkipped(round=self.current, query=ph, reason="already issued", same_as=self.issued_keys[key]))
                continue
            if self.guard.clock() >= self.guard.rewrite_deadline:
                self.guard.stop("timeout_s", f"no time for more searches: the last {self.guard.answer_time_reserve:.2f} s are reserved for the answer")
                break
            self.rewrite_terms.append((ph, extract_key_terms(ph, detect_language(ph))))
            self.search(ph, "rewrite")
            new += 1
        if new == 0:
            self.current -= 1  # nothing was searched: no retrieval round happened
        return new

    def _choose(self, mode: RewriteMode, phrases: list[str]) -> list[str]:
        """The phrases to search: per language, up to its limit, in the question's or the collection's languages."""
        qb = base(self.q.lang)
        other = self.q.collection_langs - {qb}
        same_n = cross_n = 0
        chosen: list[str] = []
        skipped: list[SkippedPhrase] = []
        for ph in phrases:
            pl = base(detect_language(ph))
            if pl == qb and same_n < self.opt.max_rewrite_queries:
                same_n += 1
                chosen.append(ph)
            elif pl in other and cross_n < self.opt.max_cross_queries:
                cross_n += 1
                chosen.append(ph)
            else:
                skipped.append(SkippedPhrase(ph, "over the per-language phrase limit" if pl in (qb, *other) else f"language {pl} not in the collection"))
        self.trace.emit(Rewrite(mode=mode, phrases=phrases, chosen=chosen, skipped=skipped))
        return chosen

    # ------------------------------------------------------------------ judging

    def judge(self) -> str | None:
        """The model's yes / no / incomplete on the best passages, or None when no judge call was made
        or its output was not understood."""
        passages = build_passages(self.pool.ranked()[0][: self.opt.max_passages])
        try:
            pr = pack(passages, self.q.text, self.q.lang, self.llm, window=self.q.window,
                      max_new_tokens=self.opt.judge_max_tokens,
                      prompt_budget=self.guard.prompt_tokens_left() - self.guard.answer_reserve_tokens(),
                      max_context_tokens=self.opt.max_context_tokens, messages_fn=prompts.judge_messages)
        except QuestionTooLong:
            return None
        if not pr.fits or not pr.kept:
            self.trace.emit(JudgeDecision(verdict="skip", reason="the judge prompt does not fit the prompt budget"))
            return None
        blocked = self.guard.extra_call_blocked("judge", None, pr.prompt_tokens)
        if blocked is not None:
            self.trace.emit(JudgeDecision(verdict="skip", reason=f"{blocked.reason} -> no judge call"))
            return None
        self.trace.emit(JudgeDecision(verdict="judge", reason="cheap signals inconclusive -> ask the model (options.judge)"))
        c = self.calls.call("judge", pr.messages, round=self.current, max_new_tokens=pr.max_new_tokens,
                            deadline=self.guard.rewrite_deadline)
        verdict = prompts.parse_judge(c.text)
        if verdict is None:
            self.trace.emit(JudgeDecision(verdict="unparsed", reason=f"judge output {c.text[:40]!r} not understood -> ignore it"))
        return verdict

    # ------------------------------------------------------------------ selecting

    def select(self) -> list[Pooled]:
        """The best fused candidates for the context (see `Thresholds.dense_margin`)."""
        ranked, _ = self.pool.ranked()
        dense = [p.candidate.dense_score for p in ranked if p.candidate.dense_score is not None]
        top_dense = max(dense) if dense else None
        selected, not_selected = [], []
        for p in ranked:
            c = p.candidate
            if len(selected) >= self.opt.max_passages:
                not_selected.append(NotSelected(c.chunk_id, p.rank, f"rank {p.rank}: max_passages {self.opt.max_passages} reached"))
                continue
            lexical = c.bm25_score is not None and c.bm25_score > 0
            near = c.dense_score is not None and top_dense is not None and c.dense_score >= top_dense - self.th.dense_margin
            if len(selected) < self.th.min_passages or lexical or near:
                selected.append(p)
                continue
            dense_txt = "no dense score" if c.dense_score is None else f"dense {c.dense_score:.3f} < top {top_dense:.3f} - {self.th.dense_margin:.2f}"
            not_selected.append(NotSelected(c.chunk_id, p.rank, f"no BM25 match and {dense_txt}"))
        self.trace.emit(Selection(selected=[p.candidate.chunk_id for p in selected], not_selected=not_selected))
        return selected
