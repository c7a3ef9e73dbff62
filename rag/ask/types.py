"""Data objects of the asking loop. Every one is a dataclass with `to_dict()` returning plain JSON types."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from rag.errors import RagError

Purpose = Literal["condense", "rewrite", "judge", "answer"]
StoppedBy = Literal["max_model_calls", "max_prompt_tokens", "max_rounds", "timeout_s"]
PURPOSES: tuple[str, ...] = ("rewrite", "judge", "answer")


class AskError(RagError):
    code = "ask_error"
    status = 422


class InvalidBudget(AskError):
    code = "invalid_budget"


class QuestionTooLong(AskError):
    code = "question_too_long"


@dataclass
class Candidate:
    """One retrieved chunk. Ranks are 1-based within one `Retriever.search` call; a retriever that did not
    return the chunk leaves its score and rank None. `text` is `document_text[char_start:char_end]`."""

    chunk_id: int
    document_id: int
    filename: str
    page: int | None
    ordinal: int
    text: str
    char_start: int
    char_end: int
    prev_id: int | None = None
    next_id: int | None = None
    dense_score: float | None = None
    dense_rank: int | None = None
    bm25_score: float | None = None
    bm25_rank: int | None = None
    fused_score: float = 0.0
    section_path: tuple[str, ...] = ()  # headings above the chunk, outermost first

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def ref(self) -> dict:
        """Short form for the trace (no text)."""
        return {
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "filename": self.filename,
            "page": self.page,
            "ordinal": self.ordinal,
        }


@dataclass
class ChunkSpan:
    """Where one chunk's text lies inside a passage's text (after overlap removal)."""

    chunk_id: int
    start: int
    end: int
    page: int | None = None
    retrieved: bool = True  # False for a neighbour added by expansion

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Passage:
    """Adjacent chunks of one document merged into one text (overlap removed).

    `n` is the passage's number in the answering prompt (1-based; 0 until packed). `score` is the best
    fused score of its retrieved chunks: the value packing keeps the most of.
    """

    document_id: int
    filename: str
    text: str
    char_start: int
    char_end: int
    spans: list[ChunkSpan]
    score: float
    rank: int  # rank of its best retrieved chunk in the fused list (1-based)
    n: int = 0
    tokens: int = 0
    truncated: bool = False
    chunks: list[Candidate] = field(default_factory=list, repr=False, compare=False)  # members, document order

    @property
    def chunk_ids(self) -> list[int]:
        return [s.chunk_id for s in self.spans]

    @property
    def page(self) -> int | None:
        return next((s.page for s in self.spans if s.page is not None), None)

    def chunk_ids_between(self, start: int, end: int) -> list[int]:
        """Chunks whose text overlaps `text[start:end]`."""
        ids = [s.chunk_id for s in self.spans if s.start < end and s.end > start]
        return ids or self.chunk_ids[:1]

    def page_of(self, chunk_id: int) -> int | None:
        return next((s.page for s in self.spans if s.chunk_id == chunk_id), None)

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "document_id": self.document_id,
            "filename": self.filename,
            "page": self.page,
            "chunk_ids": self.chunk_ids,
            "neighbour_ids": [s.chunk_id for s in self.spans if not s.retrieved],
            "char_start": self.char_start,
            "char_end": self.char_end,
            "score": self.score,
            "rank": self.rank,
            "tokens": self.tokens,
            "truncated": self.truncated,
            "text": self.text,
        }


@dataclass
class ModelCall:
    """One model call in the ledger."""

    n: int  # 1-based order within the question
    purpose: Purpose
    round: int
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    wall_ms: float
    prefill_ms: float | None
    model_id: str
    stopped_by: str | None
    max_new_tokens: int
    runtime: str = ""  # transformers | llamacpp | openai: what computed the call
    server: str = ""  # the model server's base URL (openai runtime); '' in process
    failed: bool = False  # the call did not complete: the server went away (its cost so far is kept)

    def to_dict(self) -> dict:
        return asdict(self)


def usage_of(calls: list[ModelCall], *, wall_seconds: float | None = None) -> dict:
    """Totals per question; by construction equal to the sums over `calls`.

    `seconds` is model time (the sum of the calls' wall time); `wall_seconds` is the whole question.
    """
    by: dict[str, dict] = {}
    for c in calls:
        b = by.setdefault(c.purpose, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        b["calls"] += 1
        b["prompt_tokens"] += c.prompt_tokens
        b["completion_tokens"] += c.completion_tokens
    out = {
        "model_calls": len(calls),
        "prompt_tokens": sum(c.prompt_tokens for c in calls),
        "completion_tokens": sum(c.completion_tokens for c in calls),
        "cached_prompt_tokens": sum(c.cached_prompt_tokens for c in calls),
        "seconds": round(sum(c.wall_ms for c in calls) / 1000.0, 6),
        "by_purpose": by,
    }
    if wall_seconds is not None:
        out["wall_seconds"] = round(wall_seconds, 6)
    return out


@dataclass
class Citation:
    n: int
    chunk_ids: list[int]
    document_id: int
    filename: str
    page: int | None
    quote: str
    passage: int  # the passage's number in `trace.context`

    def to_dict(self) -> dict:
        return asdict(self)


def verified_of(abstained: bool, support: dict) -> bool | None:
    """False: answered without citations because no check could tie it to the passages (a translation,
    or sentences too short to judge); None for an abstention; True otherwise."""
    return None if abstained else support.get("method") != "unverified"


@dataclass
class AskResult:
    """What one question produced. `answer` is final and authoritative: the text streamed to `on_token`
    is the raw model output, before script conversion, link and marker stripping, and citation markers."""

    question: str
    language: str
    answer: str
    abstained: bool
    citations: list[Citation]
    usage: dict
    stopped_by: str | None
    calls: list[ModelCall]
    trace: dict[str, Any] = field(default_factory=dict)  # {"events", "context", "settings"}
    support: dict = field(default_factory=dict)  # {"sentences", "supported", "dropped", "method"[, "why_unverified"]}
    complete: bool = True  # False: the answer call was cut (deadline or token limit); see `incomplete_reason`
    incomplete_reason: str | None = None  # "timeout_s" | "max_answer_tokens" when not complete
    standalone_question: str | None = None  # a conversation's follow-up as it was searched, when condensed

    @property
    def verified(self) -> bool | None:
        return verified_of(self.abstained, self.support)

    def to_dict(self) -> dict:
        extra = {} if self.standalone_question is None else {"standalone_question": self.standalone_question}
        return {
            "question": self.question,
            "language": self.language,
            "answer": self.answer,
            "abstained": self.abstained,
            "citations": [c.to_dict() for c in self.citations],
            "usage": self.usage,
            "stopped_by": self.stopped_by,
            "complete": self.complete,
            "incomplete_reason": self.incomplete_reason,
            "verified": self.verified,
            "dropped_sentences": int(self.support.get("dropped", 0)),
            "calls": [c.to_dict() for c in self.calls],
            "support": self.support,
            "trace": self.trace,
            **extra,
        }
