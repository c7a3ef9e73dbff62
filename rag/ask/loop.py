"""The asking loop: retrieve, judge the evidence cheaply, rewrite if weak, expand, pack, answer, attribute.

    ask(question, retriever, llm, budget, options, on_event=None, on_token=None) -> AskResult

Steps (each recorded in the trace with its reason in words and numbers):

1. Search with the question as asked (the retriever fuses dense and BM25 with RRF).
2. Assess the evidence with cheap signals (`rag.ask.evidence`): key-term coverage, top dense score,
   retriever agreement, must-have names/numbers. Missing names or numbers -> abstain with 0 model calls.
   Sufficient -> straight to the answer: exactly one model call.
3. Weak or inconclusive -> rewrite. A collection with a language other than the question's first
   gets the question translated into it; otherwise the model writes keyword phrases in the question's
   language. Queries already issued are never repeated; results are fused with everything found so
   far; assess again. Optional judge call (`options.judge`) for
   inconclusive evidence, off by default (the small model's yes/no judgements were measured wrong).
4. Select the best `max_passages` fused candidates, merge adjacent chunks, expand cut-off ones with
   their neighbours while the context budget allows (`rag.ask.expand`).
5. Pack into the window with exact token counts (`rag.ask.pack`); answer (streamed to `on_token`).
6. Post-process (citation markers, links not in the passages, script), attribute sentences to passages
   (`rag.ask.cite`), abstain when no sentence is supported.

Budgets: the answer call is always reserved. A rewrite (or judge) call is made only if one call, the
answer's bare prompt plus `min_context_tokens`, and `answer_time_fraction` of `timeout_s` remain for the
answer afterwards. A budget that stops the loop is named in `stopped_by` and in a `budget` event.

The text streamed to `on_token` is the raw model output; the returned `AskResult.answer` (script
converted, links and markers removed, citation markers added) is authoritative.
"""

from __future__ import annotations

import time
from typing import Callable

from rag.ask import prompts
from rag.ask.cite import attribute, citations_for, render_answer, restates_question
from rag.ask.config import AskOptions, Budget
from rag.ask.events import (
    AbstainDecision,
    Answer,
    Attribution,
    BudgetStop,
    Candidates,
    Citations,
    Context,
    Done,
    Event,
    EvidenceDecision,
    Fused,
    FusedHit,
    Hit,
    JudgeDecision,
    ModelCallEvent,
    ModelCallStarted,
    NotSelected,
    Postprocess,
    Query,
    QuerySkipped,
    Rewrite,
    RewriteDecision,
    Selection,
    SkippedPhrase,
    Start,
    SupportDecision,
)
from rag.ask.evidence import Assessment, assess
from rag.ask.expand import build_passages, expand_passages
from rag.ask.pack import MIN_ANSWER_TOKENS, PackResult, block_of, pack
from rag.ask.pool import Pool
from rag.ask.ports import LLM, Retriever
from rag.ask.cite import names_subject
from rag.ask.figures import complete as complete_figures
from rag.ask.figures import figures_in
from rag.ask.post import (
    is_abstention,
    link_allowlist,
    strip_captions,
    strip_citation_markers,
    strip_instructions,
    strip_links,
    to_question_script,
)
from rag.ask.terms import KeyTerms, extract_key_terms
from rag.ask.trace import Trace
from rag.ask.types import AskError, AskResult, ModelCall, Passage, QuestionTooLong, usage_of
from rag.text.fold import fold
from rag.text.lang import base, detect_language

LOOP_VERSION = "ask-loop-3"  # 2: names listed as alternatives, cross-language check on the whole context; 3: figures checked by value, instruction echoes removed, subjects across languages


def ask(
    question: str,
    retriever: Retriever,
    llm: LLM,
    budget: Budget,
    options: AskOptions,
    on_event: Callable[[dict], None] | None = None,
    on_token: Callable[[str], None] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_call: Callable[[ModelCall], None] | None = None,
) -> AskResult:
    """Answer `question` from the collection behind `retriever` within `budget`. See the module doc.

    `clock`: a `time.monotonic`-like function (the deadline passed to `llm.generate` uses it).
    `on_call`: receives every model call as it returns, before its trace event (the ledger commits it).
    """
    return _Run(question, retriever, llm, budget, options, on_event, on_token, clock, on_call).run()


def query_key(q: str) -> str:
    """Two queries are the same when their folded letters, digits and Han characters are."""
    return "".join(ch for ch in fold(q) if ch.isalnum())


class _Run:
    def __init__(self, question, retriever, llm, budget, options, on_event, on_token, clock, on_call=None):
        self.question = (question or "").strip()
        if not self.question:
            raise AskError("the question is empty")
        self.retriever: Retriever = retriever
        self.llm: LLM = llm
        self.budget: Budget = budget
        self.opt: AskOptions = options
        self.th = options.thresholds
        self.on_token = on_token
        self.clock = clock
        self.on_call = on_call
        self.start = clock()
        self.deadline = self.start + budget.timeout_s
        self.answer_time_reserve = budget.timeout_s * options.answer_time_fraction
        self.trace = Trace(clock, self.start, on_event)
        self.calls: list[ModelCall] = []
        self.stopped_by: str | None = None
        self.rounds = 0
        self.rewrites = 0
        self.issued: list[str] = []
        self.issued_keys: dict[str, str] = {}
        self.pool = Pool(self.th.rrf_k)
        self.rewrite_terms: list[tuple[str, KeyTerms]] = []
        self.context: list[dict] = []
        self.final_verdict: str | None = None
        self.translated: set[str] = set()
        ctx_len = llm.context_length
        self.window = min(options.context_window, int(ctx_len)) if ctx_len else options.context_window

    # ------------------------------------------------------------------ helpers

    def emit(self, event: Event) -> None:
        self.trace.emit(event)

    def add_call(self, call: ModelCall) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)

    def prompt_tokens_used(self) -> int:
        return sum(c.prompt_tokens for c in self.calls)

    def stop(self, name: str, reason: str) -> None:
        """Record that budget `name` stopped something; the first one is `stopped_by`."""
        if self.stopped_by is None:
            self.stopped_by = name
        self.emit(BudgetStop(budget=name, limit=getattr(self.budget, name), reason=reason))

    def settings(self) -> dict:
        return {
            "loop_version": LOOP_VERSION,
            "prompts_version": prompts.PROMPTS_VERSION,
            "budget": self.budget.to_dict(),
            "options": self.opt.to_dict(),
            "model_id": self.llm.model_id,
            "runtime": self.llm.runtime,
            "context_window": self.window,
            "question_language": self.lang,
            "collection_languages": sorted(self.collection_langs),
        }

    # ------------------------------------------------------------------ main

    def run(self) -> AskResult:
        self.lang = detect_language(self.question)
        try:
            langs = {base(l) for l in (self.retriever.languages() or set())} & {"zh", "en"}
        except Exception:  # a retriever without language stats: assume the question's
            langs = set()
        self.collection_langs = langs or {base(self.lang)}
        self.key_terms = extract_key_terms(self.question, self.lang)
        self.emit(Start(
            question=self.question,
            language=self.lang,
            collection_languages=sorted(self.collection_langs),
            key_terms=self.key_terms.to_dict(),
            settings=self.settings(),
        ))
        if self.window - MIN_ANSWER_TOKENS < self.llm.prompt_tokens(prompts.answer_messages([], self.question, self.lang)):
            raise QuestionTooLong(f"the question does not fit the {self.window}-token context window")

        self.rounds = 1
        self.search(self.question, "question")
        assessment = self.assess()
        incomplete = False
        judged = False
        while True:
            v = assessment.verdict
            if v == "empty":
                return self.abstain(assessment.reason)
            force = (self.opt.force_rewrite and self.rewrites == 0)
            if v == "sufficient" and not force:
                break
            if v == "absent" and not force:
                return self.abstain(assessment.reason)
            if v == "inconclusive" and self.opt.judge and not judged and not force:
                judged = True
                verdict = self.judge()
                if verdict == "yes":
                    assessment = Assessment("sufficient", "the model judged the passages sufficient -> answer", assessment.signals)
                    self.emit(JudgeDecision(verdict="sufficient", reason=assessment.reason))
                    break
                if verdict == "incomplete":
                    incomplete = True
                    self.emit(JudgeDecision(verdict="incomplete",
                                            reason="the model said the passages are cut off -> expand the top passage, answer"))
                    break
                if verdict == "no":
                    self.emit(JudgeDecision(verdict="weak", reason="the model judged the passages insufficient -> rewrite"))
            if not (self.opt.rewrite or self.opt.force_rewrite):
                self.emit(RewriteDecision(verdict="skip", reason=f"evidence {v} but rewriting is off -> answer with what was found"))
                break
            blocked = self.rewrite_blocked()
            if blocked is not None:
                name, why = blocked
                self.stop(name, f"evidence {v}: {why} -> {'abstain' if v == 'absent' else 'answer with what was found'}")
                break
            why = "forced (force_rewrite)" if force and v in ("sufficient", "absent") else f"evidence {v}"
            new = self.rewrite(why)
            if new == 0:
                self.emit(RewriteDecision(verdict="stop",
                                          reason="the rewrite produced no query that was not already issued -> stop rewriting"))
                break
            assessment = self.assess()
        if assessment.verdict in ("absent", "empty"):
            return self.abstain(assessment.reason)
        if assessment.verdict == "weak" and assessment.signals.get("unrelated"):
            return self.abstain(f"after {self.rounds} round(s) no key term of the question occurs in the top passages, "
                                f"no confident dense match, no agreement -> abstain without an answer call")
        self.final_verdict = assessment.verdict
        return self.answer(incomplete)

    # ------------------------------------------------------------------ retrieval

    def search(self, query: str, origin: str) -> None:
        self.issued.append(query)
        self.issued_keys[query_key(query)] = query
        self.emit(Query(round=self.rounds, query=query, origin=origin, language=detect_language(query), k=self.opt.k))
        results = list(self.retriever.search(query, self.opt.k))
        skipped = self.retriever.lexical_skipped(query)
        dense = sorted((c for c in results if c.dense_rank is not None), key=lambda c: c.dense_rank)
        bm25 = sorted((c for c in results if c.bm25_rank is not None), key=lambda c: c.bm25_rank)
        self.emit(Candidates(
            round=self.rounds,
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
        self.emit(Fused(round=self.rounds, queries=len(self.pool.lists), candidates=[p.to_dict() for p in ranked], duplicates=dups))
        a = assess(
            ranked,
            key_terms=self.key_terms,
            question_lang=self.lang,
            collection_langs=self.collection_langs,
            thresholds=self.th,
            agreements=self.pool.agreements,
            rewrite_terms=self.rewrite_terms,
            searched_langs={base(detect_language(q)) for q in self.issued},
        )
        self.emit(EvidenceDecision(round=self.rounds, verdict=a.verdict, reason=a.reason, signals=a.signals))
        return a

    # ------------------------------------------------------------------ budgets

    def answer_reserve_tokens(self) -> int:
        bare = self.llm.prompt_tokens(prompts.answer_messages([], self.question, self.lang))
        room = max(0, self.window - self.opt.max_answer_tokens - bare)
        return bare + min(self.opt.min_context_tokens, room)

    def extra_call_blocked(self, purpose: str, messages: list[dict] | None, prompt_tokens: int | None = None) -> tuple[str, str] | None:
        """Whether one more non-answer call is affordable with the answer call reserved."""
        used = len(self.calls)
        if used + 2 > self.budget.max_model_calls:
            return "max_model_calls", (
                f"a {purpose} call would leave no call for the answer ({used} used + 1 {purpose} + 1 answer > {self.budget.max_model_calls})"
            )
        pt = prompt_tokens if prompt_tokens is not None else self.llm.prompt_tokens(messages or [])
        reserve = self.answer_reserve_tokens()
        spent = self.prompt_tokens_used()
        if spent + pt + reserve > self.budget.max_prompt_tokens:
            return "max_prompt_tokens", (
                f"{spent} prompt tokens used + {pt} for the {purpose} + {reserve} reserved for the answer "
                f"> {self.budget.max_prompt_tokens}"
            )
        left = self.deadline - self.clock()
        if left <= self.answer_time_reserve:
            return "timeout_s", f"{left:.2f} s left <= {self.answer_time_reserve:.2f} s reserved for the answer"
        return None

    def rewrite_blocked(self) -> tuple[str, str] | None:
        if self.rounds >= self.budget.max_rounds:
            return "max_rounds", f"{self.rounds} of {self.budget.max_rounds} retrieval rounds done"
        return self.extra_call_blocked("rewrite", self.rewrite_plan()[2])

    # ------------------------------------------------------------------ model calls

    def call(self, purpose: str, messages: list[dict], *, max_new_tokens: int, deadline: float, on_token=None):
        rendered = self.llm.render(messages)
        n = len(self.calls) + 1
        self.emit(ModelCallStarted(n=n, purpose=purpose, round=self.rounds, max_new_tokens=max_new_tokens))
        streamed: list[str] = []

        def relay(piece: str) -> None:
            streamed.append(piece)
            if on_token is not None:
                on_token(piece)  # raises when the streaming client has gone away

        t0 = self.clock()
        try:
            c = self.llm.generate(messages, max_new_tokens=max_new_tokens, on_token=relay, deadline=deadline)
        except BaseException as exc:
            partial = getattr(exc, "partial", None)  # a server that went away: the call as far as it went
            if partial is not None:
                self.record_failed(self.model_call(n, purpose, partial, max_new_tokens, failed=True),
                                   messages, rendered, partial.text, exc)
            elif streamed:  # the model ran (prefill and decoding) before the call ended: its cost goes on record
                self.record_interrupted(n, purpose, messages, rendered, "".join(streamed), max_new_tokens, t0, exc)
            raise
        call = self.model_call(n, purpose, c, max_new_tokens)
        self.add_call(call)
        self.emit(ModelCallEvent(call=call, messages=messages, prompt=rendered, output=c.text))
        return c

    def model_call(self, n: int, purpose: str, c, max_new_tokens: int, *, failed: bool = False) -> ModelCall:
        return ModelCall(
            n=n,
            purpose=purpose,
            round=self.rounds,
            prompt_tokens=int(c.prompt_tokens),
            completion_tokens=int(c.completion_tokens),
            cached_prompt_tokens=int(c.cached_prompt_tokens),
            wall_ms=float(c.wall_ms),
            prefill_ms=None if c.prefill_ms is None else float(c.prefill_ms),
            model_id=str(c.model_id or self.llm.model_id),
            stopped_by="failed" if failed else c.stopped_by,
            max_new_tokens=max_new_tokens,
            runtime=c.runtime or self.llm.runtime,
            server=str(getattr(c, "server", "") or ""),
            failed=failed,
        )

    def record_interrupted(self, n, purpose, messages, rendered, text, max_new_tokens, t0, exc) -> None:
        """A call that raised after producing output (a client that went away, a generator error): its
        tokens were spent, so it is recorded like any call (completion tokens counted on the text)."""
        call = ModelCall(
            n=n, purpose=purpose, round=self.rounds, prompt_tokens=int(self.llm.prompt_tokens(messages)),
            completion_tokens=int(self.llm.count_tokens(text)), cached_prompt_tokens=0,
            wall_ms=(self.clock() - t0) * 1000.0, prefill_ms=None, model_id=self.llm.model_id,
            stopped_by="interrupted", max_new_tokens=max_new_tokens, runtime=self.llm.runtime,
            server=str(getattr(self.llm, "base_url", "") or ""),
        )
        self.record_failed(call, messages, rendered, text, exc)

    def record_failed(self, call: ModelCall, messages, rendered, text, exc) -> None:
        self.add_call(call)
        try:
            self.emit(ModelCallEvent(call=call, messages=messages, prompt=rendered, output=text,
                                     error=f"{type(exc).__name__}: {exc}"))
        except BaseException:  # noqa: BLE001 - the event's listener failing too (client gone): the original error wins
            pass

    def rewrite_plan(self) -> tuple[str, str | None, list[dict]]:
        """(mode, target language, messages). A collection with another language than the question's
        gets a translation first (the question was already searched in its own language); after that,
        and in single-language collections, keyword phrases in the question's language."""
        qb = base(self.lang)
        untranslated = sorted(self.collection_langs - {qb} - self.translated)
        if untranslated:
            target = untranslated[0]
            return "translate", target, prompts.translate_messages(self.question, target)
        return "keywords", qb, prompts.rewrite_messages(self.question, self.lang, n_same=self.opt.max_rewrite_queries, issued=self.issued)

    def rewrite(self, why: str) -> int:
        mode, target, msgs = self.rewrite_plan()
        self.emit(RewriteDecision(verdict="rewrite", round=self.rounds, mode=mode, target_language=target,
                                  reason=f"{why} -> rewrite the question ({'translate into ' + target if mode == 'translate' else 'keyword phrases'})"))
        c = self.call("rewrite", msgs, max_new_tokens=self.opt.rewrite_max_tokens, deadline=self.deadline - self.answer_time_reserve)
        self.rewrites += 1
        if mode == "translate":
            self.translated.add(target)
        if c.stopped_by == "deadline":
            self.stop("timeout_s", "the rewrite call was cut at its deadline (the rest is reserved for the answer)")
        qb = base(self.lang)
        other = self.collection_langs - {qb}
        phrases = prompts.parse_rewrite(c.text, limit=self.opt.max_rewrite_queries + self.opt.max_cross_queries + 6)
        same_n = cross_n = 0
        chosen: list[tuple[str, str]] = []
        skipped: list[SkippedPhrase] = []
        for ph in phrases:
            pl = base(detect_language(ph))
            if pl == qb and same_n < self.opt.max_rewrite_queries:
                same_n += 1
                chosen.append((ph, pl))
            elif pl in other and cross_n < self.opt.max_cross_queries:
                cross_n += 1
                chosen.append((ph, pl))
            else:
                skipped.append(SkippedPhrase(ph, "over the per-language phrase limit" if pl in (qb, *other) else f"language {pl} not in the collection"))
        self.emit(Rewrite(mode=mode, phrases=phrases, chosen=[p for p, _ in chosen], skipped=skipped))
        self.rounds += 1
        new = 0
        for ph, pl in chosen:
            key = query_key(ph)
            if not key:
                continue
            if key in self.issued_keys:
                self.emit(QuerySkipped(round=self.rounds, query=ph, reason="already issued", same_as=self.issued_keys[key]))
                continue
            if self.clock() >= self.deadline - self.answer_time_reserve:
                self.stop("timeout_s", f"no time for more searches: the last {self.answer_time_reserve:.2f} s are reserved for the answer")
                break
            self.rewrite_terms.append((ph, extract_key_terms(ph, detect_language(ph))))
            self.search(ph, "rewrite")
            new += 1
        if new == 0:
            self.rounds -= 1  # nothing was searched: no retrieval round happened
        return new

    def judge(self) -> str | None:
        passages = build_passages(self.pool.ranked()[0][: self.opt.max_passages])
        try:
            pr = pack(passages, self.question, self.lang, self.llm, window=self.window,
                      max_new_tokens=self.opt.judge_max_tokens,
                      prompt_budget=self.budget.max_prompt_tokens - self.prompt_tokens_used() - self.answer_reserve_tokens(),
                      max_context_tokens=self.opt.max_context_tokens, messages_fn=prompts.judge_messages)
        except QuestionTooLong:
            return None
        if not pr.fits or not pr.kept:
            self.emit(JudgeDecision(verdict="skip", reason="the judge prompt does not fit the prompt budget"))
            return None
        blocked = self.extra_call_blocked("judge", None, pr.prompt_tokens)
        if blocked is not None:
            self.emit(JudgeDecision(verdict="skip", reason=f"{blocked[1]} -> no judge call"))
            return None
        self.emit(JudgeDecision(verdict="judge", reason="cheap signals inconclusive -> ask the model (options.judge)"))
        c = self.call("judge", pr.messages, max_new_tokens=pr.max_new_tokens, deadline=self.deadline - self.answer_time_reserve)
        verdict = prompts.parse_judge(c.text)
        if verdict is None:
            self.emit(JudgeDecision(verdict="unparsed", reason=f"judge output {c.text[:40]!r} not understood -> ignore it"))
        return verdict

    # ------------------------------------------------------------------ answer

    def select(self) -> list:
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
        self.emit(Selection(selected=[p.candidate.chunk_id for p in selected], not_selected=not_selected))
        return selected

    def answer(self, incomplete: bool) -> AskResult:
        selected = self.select()
        if len(self.calls) >= self.budget.max_model_calls:
            self.stop("max_model_calls", f"{len(self.calls)} of {self.budget.max_model_calls} model calls used: no call left for the answer -> abstain")
            return self.abstain("no model call left for the answer")
        if self.clock() >= self.deadline:
            self.stop("timeout_s", "the deadline passed before the answer call -> abstain")
            return self.abstain("no time left for the answer")

        passages = build_passages(selected)
        budget_left = self.budget.max_prompt_tokens - self.prompt_tokens_used()
        bare = self.llm.prompt_tokens(prompts.answer_messages([], self.question, self.lang))
        max_new = min(self.opt.max_answer_tokens, self.window - bare)
        limit = min(self.window - max_new, budget_left, bare + self.opt.max_context_tokens)
        if self.opt.expand and passages and limit > bare:
            sep = self.llm.count_tokens("\n\n")

            def cost(p: Passage) -> int:
                return self.llm.count_tokens(block_of(p, 99, self.lang)) + sep

            passages = expand_passages(
                passages,
                get_chunk=self.retriever.get_chunk,
                cost=cost,
                space=limit - bare,
                max_neighbours=self.opt.max_neighbours,
                emit=self.emit,
                incomplete=incomplete,
            )
        pr = pack(passages, self.question, self.lang, self.llm, window=self.window,
                  max_new_tokens=self.opt.max_answer_tokens, prompt_budget=budget_left,
                  max_context_tokens=self.opt.max_context_tokens)
        self.emit(pr.to_event())
        if not pr.fits:
            self.stop("max_prompt_tokens", f"{budget_left} prompt tokens left < {pr.bare_tokens} for the bare answer prompt -> abstain")
            return self.abstain("the prompt budget cannot pay for the answer call")
        if pr.dropped and budget_left < self.window - pr.max_new_tokens:
            self.stop("max_prompt_tokens", f"passages dropped: {budget_left} prompt tokens left limit the context")
        if not pr.kept:
            return self.abstain("no passage fits the context")
        self.context = [p.to_dict() for p in pr.kept]
        self.emit(Context(passages=self.context))

        c = self.call("answer", pr.messages, max_new_tokens=pr.max_new_tokens, deadline=self.deadline, on_token=self.on_token)
        if c.stopped_by == "deadline":
            self.stop("timeout_s", "the answer was cut at the deadline")
        return self.finish_answer(c.text, pr)

    def finish_answer(self, raw: str, pr: PackResult) -> AskResult:
        text, markers = strip_citation_markers(raw)
        allowed, untrusted = link_allowlist([p.text for p in pr.kept])
        text, links = strip_links(text, allowed)
        text, echoed = strip_instructions(text)
        text, captions = strip_captions(text)
        text, repairs = complete_figures(text, [(p.n, p.text) for p in pr.kept], self.lang)
        converted = to_question_script(text, self.lang) if base(self.lang) == "zh" else text
        script_changed = converted != text
        text = converted
        self.emit(Postprocess(removed_markers=markers, removed_links=links, removed_instructions=echoed,
                              removed_captions=captions,
                              figures=[r.to_dict() for r in repairs],
                              untrusted_passages=[pr.kept[i].n for i in untrusted], script=self.lang if script_changed else None))
        if not text.strip():
            what = "the prompt's own instructions" if echoed else "a caption or table rule" if captions else None
            return self.abstain(f"the model returned only {what}" if what else "the model returned no answer text")
        if restates_question(text, self.question):
            return self.abstain("the model's answer only restates the question" + (" (and the prompt's instructions)" if echoed else ""))
        subjects = self.subjects()
        supports = attribute(text, pr.kept, self.th, question=self.question, subjects=subjects,
                             markers=subjects + [n for n in self.key_terms.numbers if n not in subjects])
        model_abstained = False
        for ss in supports:
            if is_abstention(ss.text):
                ss.supported, ss.dropped, ss.method, ss.reason = None, False, "none", "the model says the documents do not answer"
                model_abstained = True
        n_supported = sum(1 for s in supports if s.supported)
        self.emit(Attribution(sentences=[s.to_dict() for s in supports]))
        if n_supported == 0:
            if model_abstained:
                return self.abstain("the model said the documents do not answer the question", supports=supports)
            why = self.unverifiable(text, supports, pr)
            if why is not None and self.final_verdict == "sufficient" and not any(s.dropped for s in supports):
                self.emit(SupportDecision(verdict="unverified",
                                          reason=f"{why}, retrieval evidence sufficient -> answer without citations"))
                final = render_answer(text, supports, {}, markers=False)
                return self.finish(final, False, [], {"sentences": len(supports), "supported": 0, "method": "unverified"})
            return self.abstain(f"none of {len(supports)} answer sentence(s) is supported by the passages", supports=supports)
        cits, s2n = citations_for(supports, pr.kept)
        final = render_answer(text, supports, s2n, markers=self.opt.inline_citations)
        methods = sorted({s.method for s in supports if s.supported})
        dropped = [s.text for s in supports if s.dropped]
        if dropped:
            self.emit(SupportDecision(verdict="drop", reason=f"removed {len(dropped)} sentence(s) with numbers in no passage", sentences=dropped))
        return self.finish(final, False, cits, {"sentences": len(supports), "supported": n_supported, "method": "+".join(methods)})

    def subjects(self) -> list[str]:
        """Folded names the question is about: its own entities and those of its translations."""
        out = list(self.key_terms.entities)
        for phrase, kt in self.rewrite_terms:
            if base(detect_language(phrase)) != base(self.lang):
                out += [e for e in kt.entities if e not in out]
        return out

    def unverifiable(self, text: str, supports: list, pr: PackResult) -> str | None:
        """Why word overlap cannot check this answer, if it cannot: the answer is a translation of the
        context, or every sentence is too short to judge ("可以。", "stable", "Yes.")."""
        # The language of the context as a whole: one passage of commands or package names inside a
        # Chinese document reads as English on its own.
        ctx_lang = base(detect_language("\n".join(p.text for p in pr.kept)))
        answer_lang = base(detect_language(text))
        q_lang = base(self.lang)
        if answer_lang == q_lang and ctx_lang != q_lang:
            subjects = self.subjects()
            if subjects and figures_in(text) and not any(names_subject(p.text, subjects) for p in pr.kept):
                self.emit(SupportDecision(verdict="unsupported",
                                          reason=f"a figure across languages, and no passage names the question's subject ({', '.join(subjects[:4])})"))
                return None
            return (f"question and answer in {answer_lang}, passages in {ctx_lang}: word overlap "
                    f"cannot check a translation")
        if supports and all(s.supported is None for s in supports):
            return "every answer sentence is too short to check by word overlap (a yes/no or one-word answer)"
        return None

    # ------------------------------------------------------------------ endings

    def abstain(self, reason: str, supports=None) -> AskResult:
        text = prompts.abstain_text(self.lang)
        self.emit(AbstainDecision(reason=reason))
        sup = {"sentences": len(supports or []), "supported": 0, "method": "none"}
        return self.finish(text, True, [], sup)

    def finish(self, answer: str, abstained: bool, citations: list, support: dict) -> AskResult:
        wall = self.clock() - self.start
        usage = usage_of(self.calls, wall_seconds=wall)
        self.emit(Answer(answer=answer, abstained=abstained, stopped_by=self.stopped_by))
        self.emit(Citations(citations=[c.to_dict() for c in citations]))
        self.emit(Done(usage=usage, stopped_by=self.stopped_by, rounds=self.rounds, queries=list(self.issued)))
        return AskResult(
            question=self.question,
            language=self.lang,
            answer=answer,
            abstained=abstained,
            citations=citations,
            usage=usage,
            stopped_by=self.stopped_by,
            calls=list(self.calls),
            trace={"events": self.trace.events, "context": self.context, "settings": self.settings()},
            support=support,
        )


__all__ = ["ask", "query_key", "LOOP_VERSION"]
