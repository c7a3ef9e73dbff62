"""Model calls of one question: made, numbered, and put on record as they return.

Every call is handed to `on_call` (the ledger commits it) before its `model_call` event, so a question
that dies midway has its cost on record. A call that fails part-way is recorded too: with the call as
far as the runtime could tell (`GenerationInterrupted.partial`, marked failed), or else, when text was
streamed, counted from that text (marked interrupted): the model ran, so its tokens were spent.
"""

from __future__ import annotations

from typing import Callable

from rag.ask.events import ModelCallEvent, ModelCallStarted
from rag.ask.ports import LLM, CompletionLike, GenerationInterrupted
from rag.ask.trace import Trace
from rag.ask.types import ModelCall, Purpose


class ModelCalls:
    def __init__(self, llm: LLM, trace: Trace, clock: Callable[[], float],
                 on_call: Callable[[ModelCall], None] | None = None):
        self.llm = llm
        self.trace = trace
        self.clock = clock
        self.on_call = on_call
        self.made: list[ModelCall] = []

    def __len__(self) -> int:
        return len(self.made)

    def prompt_tokens(self) -> int:
        """Prompt tokens spent so far."""
        return sum(c.prompt_tokens for c in self.made)

    def call(self, purpose: Purpose, messages: list[dict], *, round: int, max_new_tokens: int, deadline: float,
             on_token: Callable[[str], None] | None = None) -> CompletionLike:
        rendered = self.llm.render(messages)
        n = len(self.made) + 1
        self.trace.emit(ModelCallStarted(n=n, purpose=purpose, round=round, max_new_tokens=max_new_tokens))
        streamed: list[str] = []

        def relay(piece: str) -> None:
            streamed.append(piece)
            if on_token is not None:
                on_token(piece)  # raises when the streaming client has gone away

        t0 = self.clock()
        try:
            c = self.llm.generate(messages, max_new_tokens=max_new_tokens, on_token=relay, deadline=deadline)
        except GenerationInterrupted as exc:
            if exc.partial is not None:  # a server that went away: the call as far as it went
                call = self._record(n, purpose, round, exc.partial, max_new_tokens, failed=True)
                self._failed(call, messages, rendered, exc.partial.text, exc)
            elif streamed:
                self._interrupted(n, purpose, round, messages, rendered, "".join(streamed), max_new_tokens, t0, exc)
            raise
        except BaseException as exc:
            if streamed:  # the model ran (prefill and decoding) before the call ended: its cost goes on record
                self._interrupted(n, purpose, round, messages, rendered, "".join(streamed), max_new_tokens, t0, exc)
            raise
        call = self._record(n, purpose, round, c, max_new_tokens)
        self._add(call)
        self.trace.emit(ModelCallEvent(call=call, messages=messages, prompt=rendered, output=c.text))
        return c

    def _add(self, call: ModelCall) -> None:
        self.made.append(call)
        if self.on_call is not None:
            self.on_call(call)

    def _record(self, n: int, purpose: Purpose, round: int, c: CompletionLike, max_new_tokens: int, *,
                failed: bool = False) -> ModelCall:
        return ModelCall(
            n=n,
            purpose=purpose,
            round=round,
            prompt_tokens=int(c.prompt_tokens),
            completion_tokens=int(c.completion_tokens),
            cached_prompt_tokens=int(c.cached_prompt_tokens),
            wall_ms=float(c.wall_ms),
            prefill_ms=None if c.prefill_ms is None else float(c.prefill_ms),
            model_id=str(c.model_id or self.llm.model_id),
            stopped_by="failed" if failed else c.stopped_by,
            max_new_tokens=max_new_tokens,
            runtime=c.runtime or self.llm.runtime,
            server=c.server,
            failed=failed,
        )

    def _interrupted(self, n, purpose, round, messages, rendered, text, max_new_tokens, t0, exc) -> None:
        """A call that raised after producing output (a client that went away, a generator error): its
        tokens were spent, so it is recorded like any call (completion tokens counted on the text)."""
        call = ModelCall(
            n=n, purpose=purpose, round=round, prompt_tokens=int(self.llm.prompt_tokens(messages)),
            completion_tokens=int(self.llm.count_tokens(text)), cached_prompt_tokens=0,
            wall_ms=(self.clock() - t0) * 1000.0, prefill_ms=None, model_id=self.llm.model_id,
            stopped_by="interrupted", max_new_tokens=max_new_tokens, runtime=self.llm.runtime,
            server=self.llm.server,
        )
        self._failed(call, messages, rendered, text, exc)

    def _failed(self, call: ModelCall, messages, rendered, text, exc) -> None:
        self._add(call)
        try:
            self.trace.emit(ModelCallEvent(call=call, messages=messages, prompt=rendered, output=text,
                                           error=f"{type(exc).__name__}: {exc}"))
        except BaseException:  # noqa: BLE001 - the event's listener failing too (client gone): the original error wins
            pass
