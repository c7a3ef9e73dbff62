"""One generation call, the same for every generator runtime: its entry point (`BaseGenerator.generate`),
its result (`Completion`), the text it streams (`TextStream`: stop strings, held-back text, why it
stopped) and the check that it fits. A runtime subclasses `BaseGenerator` and only talks to its engine.

Streaming guarantees, whatever the runtime: `on_token` receives pieces whose concatenation is exactly
`Completion.text`; never half a UTF-8 character (byte-level BPE splits CJK characters across tokens, and
an incomplete sequence decodes to U+FFFD) and never the beginning of a stop string that may complete.
A stop string ends generation and is not part of the text.

Stop strings are matched here, not by the engines: llama.cpp's streaming drops text it held back as a
possible stop-string prefix when generation then ends by length (checked: 10 tokens with a stop string
equal to the last word + "zzz" streamed one word short). Matching in one place makes every runtime stop
at the same place and flush what it held back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from rag.ask.ports import StoppedBy
from rag.errors import ModelError

if TYPE_CHECKING:
    from rag.models.chat_tokens import Tokens


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int  # tokens the model produced, including a final end-of-turn token
    cached_prompt_tokens: int  # prompt tokens served from a reused KV prefix
    wall_ms: float  # whole call: tokenisation, prefill, decode
    prefill_ms: float
    model_id: str
    stopped_by: StoppedBy
    runtime: str = "transformers"  # which runtime computed it: "transformers", "llamacpp" or "openai"
    server: str = ""  # a server runtime's public base URL; "" in process


class BaseGenerator:
    """The `rag.ask.ports.LLM` methods every runtime shares: token counts from its `tokens`, and
    `generate`, which hands a fresh `TextStream` to the runtime's `_complete`."""

    runtime: str
    server = ""  # where it computes: "" in process, a server runtime's public base URL
    tokens: "Tokens"

    def count_tokens(self, text: str) -> int:
        return self.tokens.count_tokens(text)

    def render(self, messages: list[dict]) -> str:
        return self.tokens.render(messages)

    def prompt_tokens(self, messages: list[dict]) -> int:
        return self.tokens.prompt_tokens(messages)

    def generate(
        self,
        messages: list[dict],
        *,
        max_new_tokens: int,
        stop: list[str] | None = None,
        on_token: Callable[[str], None] | None = None,
        deadline: float | None = None,
    ) -> Completion:
        """Greedy completion of `messages`. `deadline` is a `time.monotonic()` value.

        `on_token` receives text pieces whose concatenation is exactly `Completion.text`. A stop string
        ends generation and is not part of the text.
        """
        return self._complete(messages, max_new_tokens, TextStream(stop, on_token, deadline))

    def _complete(self, messages: list[dict], max_new_tokens: int, stream: "TextStream") -> Completion:
        raise NotImplementedError


def check_fit(n_prompt: int, max_new_tokens: int, context_length: int | None, *, whose: str = "model's") -> None:
    """Refuses a call whose prompt plus answer exceeds the context (400 `context_overflow`); an unknown
    context length (None) is not checked."""
    if context_length and n_prompt + max(max_new_tokens, 0) > context_length:
        raise ModelError(
            f"prompt ({n_prompt} tokens) plus max_new_tokens ({max_new_tokens}) exceeds the {whose} "
            f"context length ({context_length})",
            code="context_overflow",
            status=400,
        )


class TextStream:
    """The answer of one call as it grows, what of it `on_token` was given, and why it stopped.

    A runtime feeds it in one of two ways: the transformers loop decodes the whole token list each step
    and passes the full text (`set_text`); llama.cpp and a server deliver pieces (`append`). Both return
    True when a stop string completed: the text is cut before it and the caller ends generation. The
    deadline and the end reason are recorded here too, so `stopped_by` is decided in one place.
    """

    def __init__(self, stop: list[str] | None, on_token: Callable[[str], None] | None, deadline: float | None = None):
        self.stops = [s for s in (stop or []) if s]
        self.on_token = on_token
        self.deadline = deadline  # a time.monotonic() value
        self.text = ""  # everything received (cut at a stop string)
        self.emitted = 0  # characters of `text` handed to on_token
        self.pieces: list[str] = []  # what on_token received; their concatenation is the answer
        self.stopped_by: StoppedBy = "max_tokens"

    @property
    def output(self) -> str:
        return "".join(self.pieces)

    def append(self, piece: str) -> bool:
        """Adds a piece; True when a stop string completed (then `stopped_by` is "stop")."""
        return self.set_text(self.text + piece)

    def set_text(self, text: str) -> bool:
        """Replaces the text with `text`, the whole answer so far; True when a stop string completed."""
        hit = find_stop(text, self.stops, self.emitted)
        if hit is not None:
            self.text = text[:hit]
            self._emit(hit)
            self.stopped_by = "stop"
            return True
        self.text = text
        self._emit(safe_length(text, self.stops))
        return False

    def flush(self) -> None:
        """Hands over what was held back (a stop-string prefix that never completed)."""
        self._emit(len(self.text))

    def end(self, finish_reason: str) -> None:
        """An OpenAI-style `finish_reason` (llama.cpp's too): `length` is max_tokens; anything else is an
        end-of-generation token, as no stop strings are sent to the engine."""
        self.stopped_by = "max_tokens" if finish_reason == "length" else "eos"

    def past_deadline(self) -> bool:
        """Whether the deadline has passed; the call then ends by it."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.stopped_by = "deadline"
            return True
        return False

    def ends_before_start(self, max_new_tokens: int) -> bool:
        """True when the call generates nothing: no token asked for, or the deadline already passed."""
        return max_new_tokens <= 0 or self.past_deadline()

    def _emit(self, upto: int) -> None:
        if upto > self.emitted:
            piece = self.text[self.emitted:upto]
            self.emitted = upto
            self.pieces.append(piece)
            if self.on_token is not None:
                self.on_token(piece)


def find_stop(text: str, stops: list[str], emitted: int) -> int | None:
    """Index of the earliest stop string in `text`, searching only where a new match can start."""
    best: int | None = None
    for s in stops:
        i = text.find(s, max(0, emitted - len(s) + 1))
        if i != -1 and (best is None or i < best):
            best = i
    return best


def safe_length(text: str, stops: list[str]) -> int:
    """How much of `text` can be streamed now: not a trailing partial character, not a possible stop prefix."""
    end = len(text)
    while end > 0 and text[end - 1] == "\ufffd":  # an incomplete UTF-8 sequence decodes to U+FFFD
        end -= 1
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, end), 0, -1):
            if text.endswith(s[:k], 0, end):
                hold = max(hold, k)
                break
    return end - hold
