"""The asking loop: retrieve, judge the evidence cheaply, rewrite if weak, expand, pack, answer, attribute.

    ask(question, retriever, llm, budget, options, on_event=None, on_token=None) -> AskResult

Steps (each recorded in the trace with its reason in words and numbers):

0. A conversation's follow-up (`history` given) that leans on earlier turns is condensed into a
   standalone question by one model call, only when it needs it (`rag.ask.condense`); the steps
   below then work on that question, and the answer prompt carries the recent turns within their
   own token budget.
1. Search with the question as asked (the retriever fuses dense and BM25 with RRF).
2. Assess the evidence with cheap signals (`rag.ask.evidence`): key-term coverage, top dense score,
   retriever agreement, must-have names/numbers. Missing names or numbers -> abstain with 0 model calls.
   Sufficient -> straight to the answer: exactly one model call.
3. Weak or inconclusive -> rewrite (`rag.ask.rounds`). A collection with a language other than the
   question's first gets the question translated into it; otherwise the model writes keyword phrases in
   the question's language. Queries already issued are never repeated; results are fused with everything
   found so far; assess again. Optional judge call (`options.judge`) for
   inconclusive evidence, off by default (the small model's yes/no judgements were measured wrong).
4. Select the best `max_passages` fused candidates, merge adjacent chunks, expand cut-off ones with
   their neighbours while the context budget allows (`rag.ask.expand`).
5. Pack into the window with exact token counts (`rag.ask.pack`); answer (streamed to `on_token`).
6. Post-process (citation markers, links not in the passages, script), attribute sentences to passages
   (`rag.ask.cite`), abstain when no sentence is supported (`rag.ask.verify`).

Budgets (`rag.ask.budgets`): the answer call is always reserved; a budget that stops the loop is named
in `stopped_by` and in a `budget` event. Model calls are made and put on record by `rag.ask.calls`.

The text streamed to `on_token` is the raw model output; the returned `AskResult.answer` (script
converted, links and markers removed, citation markers added) is authoritative.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from rag.ask import prompts
from rag.ask.budgets import BudgetGuard
from rag.ask.calls import ModelCalls
from rag.ask.condense import History, condense, recent
from rag.ask.config import AskOptions, Budget
from rag.ask.events import (
    AbstainDecision,
    Answer,
    Citations,
    Context,
    Done,
    IncompleteReason,
    JudgeDecision,
    RewriteDecision,
    Start,
)
from rag.ask.evidence import Assessment
from rag.ask.expand import build_passages, expand_passages
from rag.ask.pack import MIN_ANSWER_TOKENS, PackResult, block_of, pack
from rag.ask.pool import Pooled
from rag.ask.ports import LLM, CompletionLike, Retriever
from rag.ask.question import Question
from rag.ask.rounds import Rounds, query_key
from rag.ask.trace import Trace
from rag.ask.types import AskError, AskResult, Citation, ModelCall, Passage, QuestionTooLong, usage_of
from rag.ask.verify import Accepted, AnswerCheck, Refused, subjects
from rag.text.followup import follow_up_language

LOOP_VERSION = "ask-loop-4"  # 2: names listed as alternatives, cross-language check on the whole context; 3: figures checked by value, instruction echoes removed, subjects across languages; 4: a cut answer keeps whole (after a deadline: supported) sentences and is marked incomplete


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
    history: History | None = None,
) -> AskResult:
    """Answer `question` from the collection behind `retriever` within `budget`. See the module doc.

    `clock`: a `time.monotonic`-like function (the deadline passed to `llm.generate` uses it).
    `on_call`: receives every model call as it returns, before its trace event (the ledger commits it).
    `history`: the earlier turns when `question` is a conversation's follow-up (`rag.ask.condense`).
    """
    return _Run(question, retriever, llm, budget, options, on_event, on_token, clock, on_call, history).run()


@dataclass(frozen=True)
class _Evidence:
    """Where the retrieval rounds ended: the last assessment, and whether the judge said the top
    passage is cut off (expand it at its end regardless)."""

    assessment: Assessment
    incomplete: bool = False


class _Run:
    """One question. Its concerns are objects made here, each with its own state: `calls` (model calls
    and their record), `guard` (budgets and what they stopped), `rounds` (searches, evidence, rewrites,
    the judge) and `checker` (the answer against its passages)."""

    def __init__(self, question, retriever, llm, budget, options, on_event, on_token, clock, on_call=None,
                 history: History | None = None):
        text = (question or "").strip()
        if not text:
            raise AskError("the question is empty")
        self.history = history if history is not None and history.turns else None
        self.recent = recent(self.history, llm)
        self.standalone: str | None = None  # the condensed follow-up, when it was condensed
        self.retriever: Retriever = retriever
        self.llm: LLM = llm
        self.budget: Budget = budget
        self.opt: AskOptions = options
        self.on_token = on_token
        self.clock = clock
        self.start = clock()
        lang = follow_up_language(text, self.history.turns[-1].question) if self.history is not None else None
        self.asked = Question.read(text, retriever, llm, options, lang=lang, history=self.recent.messages())
        self.trace = Trace(clock, self.start, on_event)
        self.calls = ModelCalls(llm, self.trace, clock, on_call)
        self.focus(self.asked)
        self.context: list[dict] = []  # the passages the answering call saw
        self.cut: IncompleteReason | None = None  # why the answer call was cut, if it was

    def focus(self, q: Question) -> None:
        """The question the steps work on: as asked, or a follow-up's standalone form once condensed."""
        self.q = q
        self.guard = BudgetGuard(self.budget, self.opt, q, self.llm, self.calls, self.trace, self.clock, self.start)
        self.rounds = Rounds(q, self.retriever, self.llm, self.opt, self.trace, self.calls, self.guard)
        self.checker = AnswerCheck(q, self.opt, self.trace)

    def run(self) -> AskResult:
        self.begin()
        self.condense()
        self.rounds.search(self.q.text, "question")
        evidence = self.gather(self.rounds.assess())
        refusal = self.refusal(evidence.assessment)
        if refusal is not None:
            return self.abstain(refusal)
        selected = self.rounds.select()
        refusal = self.guard.answer_blocked()
        if refusal is not None:
            return self.abstain(refusal)
        pr = self.pack_context(selected, evidence.incomplete)
        refusal = self.packing_refusal(pr)
        if refusal is not None:
            return self.abstain(refusal)
        c = self.answer(pr)
        subj = subjects(self.q, self.rounds.rewrite_terms)
        return self.conclude(self.checker.check(c.text, pr, subjects=subj, evidence=evidence.assessment.verdict,
                                                cut=self.cut))

    # ------------------------------------------------------------------ steps

    def begin(self) -> None:
        """The `start` event; a question whose bare answering prompt leaves no room to answer is refused."""
        self.trace.emit(Start(
            question=self.q.text,
            language=self.q.lang,
            collection_languages=sorted(self.q.collection_langs),
            key_terms=self.q.key_terms.to_dict(),
            settings=self.settings(),
        ))
        if self.q.window - MIN_ANSWER_TOKENS < self.llm.prompt_tokens(self.q.bare_answer_messages()):
            raise QuestionTooLong(f"the question does not fit the {self.q.window}-token context window")

    def condense(self) -> None:
        """A conversation's follow-up that leans on earlier turns becomes a standalone question
        (`rag.ask.condense`); a standalone question, or one without history, is left as asked."""
        if self.history is None:
            return
        text = condense(self.asked, self.history, self.recent, self.llm, self.calls, self.guard, self.trace, self.opt)
        if text is not None and text != self.asked.text:
            self.standalone = text
            self.focus(Question.read(text, self.retriever, self.llm, self.opt, lang=self.asked.lang,
                                     history=self.asked.history))

    def gather(self, assessment: Assessment) -> _Evidence:
        """Judge and rewrite until the evidence settles: sufficient, absent, or no rewrite left to try."""
        incomplete = False
        judged = False
        while True:
            v = assessment.verdict
            force = (self.opt.force_rewrite and self.rounds.rewrites == 0)
            if v == "empty" or (v in ("sufficient", "absent") and not force):
                break
            if v == "inconclusive" and self.opt.judge and not judged and not force:
                judged = True
                verdict = self.rounds.judge()
                if verdict == "yes":
                    assessment = Assessment("sufficient", "the model judged the passages sufficient -> answer", assessment.signals)
                    self.trace.emit(JudgeDecision(verdict="sufficient", reason=assessment.reason))
                    break
                if verdict == "incomplete":
                    incomplete = True
                    self.trace.emit(JudgeDecision(verdict="incomplete",
                                                  reason="the model said the passages are cut off -> expand the top passage, answer"))
                    break
                if verdict == "no":
                    self.trace.emit(JudgeDecision(verdict="weak", reason="the model judged the passages insufficient -> rewrite"))
            if not (self.opt.rewrite or self.opt.force_rewrite):
                self.trace.emit(RewriteDecision(verdict="skip", reason=f"evidence {v} but rewriting is off -> answer with what was found"))
                break
            blocked = self.guard.rewrite_blocked(self.rounds.current, lambda: self.rounds.plan().messages)
            if blocked is not None:
                self.guard.stop(blocked.budget, f"evidence {v}: {blocked.reason} -> {'abstain' if v == 'absent' else 'answer with what was found'}")
                break
            why = "forced (force_rewrite)" if force and v in ("sufficient", "absent") else f"evidence {v}"
            if self.rounds.rewrite(why) == 0:
                self.trace.emit(RewriteDecision(verdict="stop",
                                                reason="the rewrite produced no query that was not already issued -> stop rewriting"))
                break
            assessment = self.rounds.assess()
        return _Evidence(assessment, incomplete)

    def refusal(self, a: Assessment) -> str | None:
        """Why the settled evidence is refused without an answer call, if it is."""
        if a.verdict in ("absent", "empty"):
            return a.reason
        if a.verdict == "weak" and a.signals.get("unrelated"):
            return (f"after {self.rounds.current} round(s) no key term of the question occurs in the top passages, "
                    f"no confident dense match, no agreement -> abstain without an answer call")
        return None

    def pack_context(self, selected: list[Pooled], incomplete: bool) -> PackResult:
        """Passages of the selected candidates, expanded with neighbours while the budget allows, packed."""
        passages = build_passages(selected)
        budget_left = self.guard.prompt_tokens_left()
        bare = self.llm.prompt_tokens(self.q.bare_answer_messages())
        max_new = min(self.opt.max_answer_tokens, self.q.window - bare)
        limit = min(self.q.window - max_new, budget_left, bare + self.opt.max_context_tokens)
        if self.opt.expand and passages and limit > bare:
            sep = self.llm.count_tokens("\n\n")

            def cost(p: Passage) -> int:
                return self.llm.count_tokens(block_of(p, 99, self.q.lang)) + sep

            passages = expand_passages(
                passages,
                get_chunk=self.retriever.get_chunk,
                cost=cost,
                space=limit - bare,
                max_neighbours=self.opt.max_neighbours,
                emit=self.trace.emit,
                incomplete=incomplete,
            )
        pr = pack(passages, self.q.text, self.q.lang, self.llm, window=self.q.window,
                  max_new_tokens=self.opt.max_answer_tokens, prompt_budget=budget_left,
                  max_context_tokens=self.opt.max_context_tokens, messages_fn=self.q.answer_messages)
        event = pr.to_event()
        if self.history is not None:
            event = replace(event, history_tokens=self.recent.tokens, history_turns=len(self.recent.turns))
        self.trace.emit(event)
        return pr

    def packing_refusal(self, pr: PackResult) -> str | None:
        """Why the packed prompt cannot be asked, if it cannot; a budget that cut it is recorded."""
        budget_left = self.guard.prompt_tokens_left()
        if not pr.fits:
            self.guard.stop("max_prompt_tokens", f"{budget_left} prompt tokens left < {pr.bare_tokens} for the bare answer prompt -> abstain")
            return "the prompt budget cannot pay for the answer call"
        if pr.dropped and budget_left < self.q.window - pr.max_new_tokens:
            self.guard.stop("max_prompt_tokens", f"passages dropped: {budget_left} prompt tokens left limit the context")
        if not pr.kept:
            return "no passage fits the context"
        return None

    def answer(self, pr: PackResult) -> CompletionLike:
        self.context = [p.to_dict() for p in pr.kept]
        self.trace.emit(Context(passages=self.context))
        c = self.calls.call("answer", pr.messages, round=self.rounds.current, max_new_tokens=pr.max_new_tokens,
                            deadline=self.guard.deadline, on_token=self.on_token)
        if c.stopped_by == "deadline":
            self.cut = "timeout_s"
            self.guard.stop("timeout_s", "the answer was cut at the deadline")
        elif c.stopped_by == "max_tokens":
            self.cut = "max_answer_tokens"
        return c

    # ------------------------------------------------------------------ endings

    def conclude(self, outcome: Accepted | Refused) -> AskResult:
        if isinstance(outcome, Refused):
            return self.abstain(outcome.reason, supports=outcome.supports)
        return self.finish(outcome.answer, False, outcome.citations, outcome.support)

    def abstain(self, reason: str, supports=None) -> AskResult:
        text = prompts.abstain_text(self.q.lang)
        self.trace.emit(AbstainDecision(reason=reason))
        sup = {"sentences": len(supports or []), "supported": 0, "method": "none"}
        return self.finish(text, True, [], sup)

    def finish(self, answer: str, abstained: bool, citations: list[Citation], support: dict) -> AskResult:
        wall = self.clock() - self.start
        calls = self.calls.made
        usage = usage_of(calls, wall_seconds=wall)
        stopped_by = self.guard.stopped_by
        whole = {"complete": self.cut is None, "incomplete_reason": self.cut}
        self.trace.emit(Answer(answer=answer, abstained=abstained, stopped_by=stopped_by, **whole))
        self.trace.emit(Citations(citations=[c.to_dict() for c in citations]))
        self.trace.emit(Done(usage=usage, stopped_by=stopped_by, rounds=self.rounds.current, queries=list(self.rounds.issued),
                             **whole))
        return AskResult(
            question=self.asked.text,
            language=self.q.lang,
            answer=answer,
            abstained=abstained,
            citations=citations,
            usage=usage,
            stopped_by=stopped_by,
            calls=list(calls),
            trace={"events": self.trace.events, "context": self.context, "settings": self.settings()},
            support=support,
            standalone_question=self.standalone,
            **whole,
        )

    def settings(self) -> dict:
        """Everything a replay needs to run the question again the same way."""
        return {
            "loop_version": LOOP_VERSION,
            "prompts_version": prompts.PROMPTS_VERSION,
            "budget": self.budget.to_dict(),
            "options": self.opt.to_dict(),
            "model_id": self.llm.model_id,
            "runtime": self.llm.runtime,
            "context_window": self.q.window,
            "question_language": self.q.lang,
            "collection_languages": sorted(self.q.collection_langs),
            **({"history": self.history.to_dict()} if self.history is not None else {}),
        }


__all__ = ["ask", "query_key", "LOOP_VERSION"]
