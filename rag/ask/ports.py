"""What the asking loop needs from the outside world. The real implementations are
`rag.models.generator.Generator`, `rag.models.llamacpp.LlamaCppGenerator` and
`rag.models.openai_runtime.OpenAIGenerator` (each an `LLM`) and
`rag.service.searching.CollectionRetriever` (a `Retriever`); tests use fakes (`tests/fakes.py`).
"""

from __future__ import annotations

from typing import Callable, Literal, Protocol, runtime_checkable

from rag.ask.types import Candidate

StoppedBy = Literal["eos", "max_tokens", "stop", "deadline"]


@runtime_checkable
class CompletionLike(Protocol):
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    wall_ms: float
    prefill_ms: float
    model_id: str
    stopped_by: StoppedBy
    runtime: str  # what computed it: "transformers" | "llamacpp" | "openai" (recorded per call in the ledger)
    server: str  # the server's base URL for a server runtime, "" in process (recorded per call)


class GenerationInterrupted(Exception):
    """A model call that ended with an error after the model may have spent tokens on it.

    `partial` is the call as far as it went (its tokens are recorded as a failed call) or None when the
    runtime cannot tell; `code` is the machine-readable reason. Runtimes raise a subclass (a server
    runtime's `generator_unavailable` is also a `RagError` with its HTTP status); the loop catches this
    type only, so it reads nothing from an error by attribute name.
    """

    code: str = "generation_interrupted"

    def __init__(self, message: str = "", *, partial: CompletionLike | None = None, code: str | None = None):
        super().__init__(message)
        self.partial = partial
        if code is not None:
            self.code = code


@runtime_checkable
class LLM(Protocol):
    model_id: str
    mode: str  # execution mode as loaded: fp32 | bf16 | int8-dynamic | gguf-q4_k_m ...
    runtime: str  # transformers | llamacpp | openai
    server: str  # where it computes: "" in process, a server runtime's base URL
    context_length: int | None  # tokens the model can attend to (None: unknown, the options' window applies)

    def count_tokens(self, text: str) -> int:
        """Exact number of the model's own tokens in `text`."""

    def render(self, messages: list[dict]) -> str:
        """The exact prompt text the model sees for `messages` (chat template applied)."""

    def prompt_tokens(self, messages: list[dict]) -> int:
        """Exact number of tokens `generate(messages)` feeds the model."""

    def generate(
        self,
        messages: list[dict],
        *,
        max_new_tokens: int,
        stop: list[str] | None = None,
        on_token: Callable[[str], None] | None = None,
        deadline: float | None = None,  # a time.monotonic() value
    ) -> CompletionLike: ...


@runtime_checkable
class Retriever(Protocol):
    def search(self, query: str, k: int) -> list[Candidate]:
        """Hybrid search: dense and BM25, fused with RRF; best first, at most k, distinct chunk ids."""

    def get_chunk(self, chunk_id: int) -> Candidate | None:
        """One chunk by id (scores and ranks None), for neighbour expansion."""

    def languages(self) -> set[str]:
        """Languages present in the collection: a subset of {"zh", "en"}."""

    def lexical_skipped(self, query: str) -> str | None:
        """Why BM25 sat out the search for `query` (recorded in the trace), or None when it took part."""

