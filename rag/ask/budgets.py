"""Budget checks of one question, and the record of what each budget stopped.

The answer call is always reserved. A rewrite (or judge) call is made only if one call, the answer's
bare prompt plus `min_context_tokens`, and `answer_time_fraction` of `timeout_s` remain for the
answer afterwards. A budget that stops the loop is named in `stopped_by` and in a `budget` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rag.ask.calls import ModelCalls
from rag.ask.config import AskOptions, Budget
from rag.ask.events import BudgetStop
from rag.ask.ports import LLM
from rag.ask.question import Question
from rag.ask.trace import Trace
from rag.ask.types import StoppedBy as BudgetName


@dataclass(frozen=True)
class Blocked:
    """A call the budget cannot pay for: which budget, and the arithmetic in words."""

    budget: BudgetName
    reason: str


class BudgetGuard:
    def __init__(self, budget: Budget, options: AskOptions, question: Question, llm: LLM, calls: ModelCalls,
                 trace: Trace, clock: Callable[[], float], start: float):
        self.budget = budget
        self.opt = options
        self.q = question
        self.llm = llm
        self.calls = calls
        self.trace = trace
        self.clock = clock
        self.deadline = start + budget.timeout_s
        self.answer_time_reserve = budget.timeout_s * options.answer_time_fraction
        self.stopped_by: BudgetName | None = None

    @property
    def rewrite_deadline(self) -> float:
        """When a call or search before the answer must end: the rest is the answer's."""
        return self.deadline - self.answer_time_reserve

    def stop(self, name: BudgetName, reason: str) -> None:
        """Record that budget `name` stopped something; the first one is `stopped_by`."""
        if self.stopped_by is None:
            self.stopped_by = name
        self.trace.emit(BudgetStop(budget=name, limit=self.budget.limit(name), reason=reason))

    def prompt_tokens_left(self) -> int:
        return self.budget.max_prompt_tokens - self.calls.prompt_tokens()

    def answer_reserve_tokens(self) -> int:
        bare = self.llm.prompt_tokens(self.q.bare_answer_messages())
        room = max(0, self.q.window - self.opt.max_answer_tokens - bare)
        return bare + min(self.opt.min_context_tokens, room)

    def extra_call_blocked(self, purpose: str, messages: list[dict] | None, prompt_tokens: int | None = None) -> Blocked | None:
        """Whether one more non-answer call is affordable with the answer call reserved."""
        used = len(self.calls)
        if used + 2 > self.budget.max_model_calls:
            return Blocked("max_model_calls", (
                f"a {purpose} call would leave no call for the answer ({used} used + 1 {purpose} + 1 answer > {self.budget.max_model_calls})"
            ))
        pt = prompt_tokens if prompt_tokens is not None else self.llm.prompt_tokens(messages or [])
        reserve = self.answer_reserve_tokens()
        spent = self.calls.prompt_tokens()
        if spent + pt + reserve > self.budget.max_prompt_tokens:
            return Blocked("max_prompt_tokens", (
                f"{spent} prompt tokens used + {pt} for the {purpose} + {reserve} reserved for the answer "
                f"> {self.budget.max_prompt_tokens}"
            ))
        left = self.deadline - self.clock()
        if left <= self.answer_time_reserve:
            return Blocked("timeout_s", f"{left:.2f} s left <= {self.answer_time_reserve:.2f} s reserved for the answer")
        return None

    def rewrite_blocked(self, rounds: int, messages: Callable[[], list[dict]]) -> Blocked | None:
        """Whether another retrieval round with a rewrite call (of `messages()`) is affordable."""
        if rounds >= self.budget.max_rounds:
            return Blocked("max_rounds", f"{rounds} of {self.budget.max_rounds} retrieval rounds done")
        return self.extra_call_blocked("rewrite", messages())

    def answer_blocked(self) -> str | None:
        """Why the answer call cannot be made (the budget that stops it is recorded), or None."""
        if len(self.calls) >= self.budget.max_model_calls:
            self.stop("max_model_calls", f"{len(self.calls)} of {self.budget.max_model_calls} model calls used: "
                                         f"no call left for the answer -> abstain")
            return "no model call left for the answer"
        if self.clock() >= self.deadline:
            self.stop("timeout_s", "the deadline passed before the answer call -> abstain")
            return "no time left for the answer"
        return None
