"""Conversations inside the loop: a follow-up condensed into a standalone question, and earlier turns
within a token budget of their own.

A turn of a conversation is an ordinary question asked with its `History` (the turns before it). Two
things differ from a standalone question, both in the trace:

1. Before retrieval, `condense` decides whether the follow-up leans on earlier turns: a back-pointing
   word (`rag.text.followup.markers`: "it", "the second one", "它", "呢"...) or no key term of its
   own to search for ("Why?"). Only then is it rewritten by one model call (`purpose` "condense",
   on the ledger like any call) into a standalone question, which the loop searches and answers; a
   follow-up that names its subject costs no call, nor does a Chinese ellipsis "X 呢？" after a
   question about a name (`rag.text.followup.substitute_ellipsis`: X takes that name's place). When the call's output is unusable, or the budget
   cannot pay for it (the answer call stays reserved), the previous question joined to the follow-up
   is searched instead: crude, but it carries the subject and costs nothing.
2. The answering prompt carries the most recent turns that fit `History.max_tokens`
   (`RAG_HISTORY_TOKENS`) as user/assistant messages, counted in the `packing` event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rag.ask import prompts
from rag.ask.budgets import BudgetGuard
from rag.ask.calls import ModelCalls
from rag.ask.config import AskOptions
from rag.ask.events import CondenseDecision
from rag.ask.ports import LLM
from rag.ask.question import Question
from rag.ask.terms import extract_key_terms
from rag.ask.trace import Trace
from rag.text.fold import fold
from rag.text.followup import markers, substitute_ellipsis
from rag.text.lang import base, detect_language

CONDENSE_MAX_TOKENS = 64  # a question, not an answer: the longest gold standalone form is ~40 tokens


@dataclass(frozen=True)
class Turn:
    """One earlier turn: the question as asked, its standalone form when it was condensed, the answer."""

    question: str
    answer: str
    standalone: str | None = None

    @property
    def resolved(self) -> str:
        return self.standalone or self.question

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class History:
    """The turns before the question, oldest first, and the tokens they may take in a prompt."""

    turns: tuple[Turn, ...]
    max_tokens: int

    def to_dict(self) -> dict:
        return {"turns": [t.to_dict() for t in self.turns], "max_tokens": self.max_tokens}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(tuple(Turn(**t) for t in d.get("turns") or ()), int(d["max_tokens"]))


@dataclass(frozen=True)
class Recent:
    """The turns that fit the history budget, oldest first, and their tokens (contents counted exactly)."""

    turns: tuple[Turn, ...]
    tokens: int

    def messages(self) -> tuple[dict, ...]:
        out: list[dict] = []
        for t in self.turns:
            out += [{"role": "user", "content": t.resolved}, {"role": "assistant", "content": t.answer}]
        return tuple(out)


def recent(history: History | None, llm: LLM) -> Recent:
    """The newest turns whose question and answer fit `history.max_tokens` together."""
    if history is None:
        return Recent((), 0)
    kept: list[Turn] = []
    used = 0
    for t in reversed(history.turns):
        cost = llm.count_tokens(t.resolved) + llm.count_tokens(t.answer)
        if used + cost > history.max_tokens:
            break
        kept.append(t)
        used += cost
    return Recent(tuple(reversed(kept)), used)


def needs_condensing(question: Question) -> tuple[list[str], str | None]:
    """(markers, why the follow-up needs condensing or None when it stands alone)."""
    found = markers(question.text)
    if found:
        return found, f"it points back at earlier turns ({', '.join(found)})"
    if not question.key_terms.all_terms:
        return found, "it has no key term of its own to search for"
    return found, None


def condense(question: Question, history: History, window: Recent, llm: LLM, calls: ModelCalls, guard: BudgetGuard,
             trace: Trace, options: AskOptions) -> str | None:
    """The standalone question to search and answer instead of `question.text`, or None to keep it."""
    found, why = needs_condensing(question)
    n = len(history.turns)
    if why is None:
        trace.emit(CondenseDecision(verdict="skip", reason="the follow-up names its own subject -> searched as asked",
                                    markers=found, history_turns=n))
        return None
    if history.turns and (sub := substitute_ellipsis(question.text, history.turns[-1].resolved)) is not None:
        trace.emit(CondenseDecision(verdict="substitute", markers=found, history_turns=n, standalone=sub,
                                    reason=f"{why}; an ellipsis: its name put in place of the previous question's "
                                           "-> searched without a model call"))
        return sub
    joined = _joined(history, question)
    pairs = [(t.resolved, t.answer) for t in (window.turns or history.turns[-1:])]
    messages = prompts.condense_messages(pairs, question.text, question.lang)
    blocked = guard.extra_call_blocked("condense", messages)
    if blocked is not None:
        trace.emit(CondenseDecision(verdict="blocked", markers=found, history_turns=n, standalone=joined,
                                    reason=f"{why}, but {blocked.reason} -> the previous question joined to it is searched"))
        return joined
    c = calls.call("condense", messages, round=0, max_new_tokens=CONDENSE_MAX_TOKENS, deadline=guard.rewrite_deadline)
    text = prompts.parse_condense(c.text)
    unusable = _unusable(text, question, history)
    if unusable:
        trace.emit(CondenseDecision(verdict="fallback", markers=found, history_turns=n, standalone=joined,
                                    reason=f"{why}; the condensed question is unusable ({unusable}) -> the previous "
                                           "question joined to it is searched"))
        return joined
    trace.emit(CondenseDecision(verdict="condense", markers=found, history_turns=n, standalone=text,
                                reason=f"{why} -> condensed into a standalone question"))
    return text


def _joined(history: History, question: Question) -> str:
    sep = "" if base(question.lang) == "zh" else " "
    return (history.turns[-1].resolved + sep + question.text) if history.turns else question.text


def _unusable(text: str, question: Question, history: History) -> str | None:
    """Why a condensed question cannot replace the follow-up, or None. Measured failures of the 1.5B
    (`rag bench conversations`): it copies an earlier question and drops what the follow-up asks
    ("這些數據是哪一天下載的？" came back as the previous "popcon數據涵蓋了多少份提交？"), or drifts into
    another language, or answers instead of asking ("文档中没有提到。"); a copy answered confidently is
    worse than the crude join. A paraphrase ("包含" for "涵蓋") keeps one of the follow-up's terms at least."""
    if not text:
        return "empty"
    if len(text) > 3 * len(question.text) + 200:
        return "longer than a question"
    if base(detect_language(text)) != base(question.lang):
        return "in another language"
    if not extract_key_terms(text, question.lang).all_terms:
        return "no key term"
    earlier = {_plain(t.question) for t in history.turns} | {_plain(t.resolved) for t in history.turns}
    if _plain(text) in earlier:
        return "it repeats an earlier question"
    missing = dropped_terms(question, text)
    if missing and len(missing) == len(question.key_terms.all_terms):  # paraphrase keeps one at least
        return f"it drops what the follow-up asks ({', '.join(missing)})"
    return None


def dropped_terms(question: Question, text: str) -> list[str]:
    """The follow-up's own key terms (stems for English) that `text` does not contain, both folded
    (Traditional to Simplified, casefolded)."""
    have = fold(text)
    return [t for t in question.key_terms.all_terms if fold(t) not in have]


def _plain(text: str) -> str:
    """Folded, without spaces and punctuation: two questions that differ only there are the same."""
    return "".join(ch for ch in fold(text) if ch.isalnum())
