"""Wire formats of the API, one model per resource. Field names are the contract: keep them stable.

Services return records (`rag.store.records`, `rag.service.*` dataclasses); routes turn them into
these models, so what a client sees is declared here and in the OpenAPI, nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from fastapi import Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints, create_model
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from rag.ask import events
from rag.service.answering import FEEDBACK_COMMENT_CHARS
from rag.store import COLLECTION_NAME_RE


class _FromRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ------------------------------------------------------------------ shared formats

#: The one definition of a collection name (`rag.store.collections`), as a JSON-Schema pattern.
COLLECTION_NAME_PATTERN = COLLECTION_NAME_RE.pattern
CollectionName = Annotated[str, StringConstraints(pattern=COLLECTION_NAME_PATTERN)]
#: Job, question and key ids: opaque, at most 64 letters, digits, '_' or '-' (the service makes 32 or
#: 12 hex digits; anything else cannot exist and is refused before a lookup).
ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
#: Row ids are SQLite integers: 1 .. 2**63-1.
MAX_ROW_ID = 2**63 - 1


def _not_blank() -> str:
    """A pattern that needs one character Python's `str.strip()` keeps (so `'\\u3000'` is blank too)."""
    blank = [c for c in map(chr, range(0x110000)) if c.isspace()]
    ranges, start = [], blank[0]
    for prev, cur in zip(blank, blank[1:] + [None]):
        if cur is None or ord(cur) != ord(prev) + 1:
            ranges.append(f"\\u{ord(start):04x}" + (f"-\\u{ord(prev):04x}" if prev != start else ""))
            start = cur
    return "[^" + "".join(ranges) + "]"


NOT_BLANK_PATTERN = _not_blank()


def _json_integer(value: Any) -> Any:
    if isinstance(value, (str, bool)):
        raise ValueError("a JSON integer, not a string or a boolean")
    return value


def JsonInt(ge: int, le: int) -> Any:  # noqa: N802 - a type
    """An integer as JSON Schema reads one: 4 and 4.0, not "4" or true; bounds inside (before the check,
    so the schema shows them as minimum/maximum)."""
    return Annotated[int, Field(ge=ge, le=le), Strict(False), BeforeValidator(_json_integer)]


class _In(BaseModel):
    """A request body: JSON types as the schema says them (no `"5"` for 5, no `0` for false), and no field
    the schema does not name (`{"temperature": 2}` beside a question, or inside its budget, is refused as
    `invalid_request` naming the field, as unknown loop options always were: a misspelt budget must not
    silently run unbounded)."""

    model_config = ConfigDict(strict=True, extra="forbid")


# Path and query parameters, with the bounds validation enforces (and the OpenAPI shows).
CollectionPath = Annotated[str, Path(pattern=COLLECTION_NAME_PATTERN, description="A collection's name.")]
CollectionQuery = Annotated[CollectionName | None, Query(description="Only this collection.")]
DocumentId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A document's id.")]
ChunkId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A chunk's id.")]
JobId = Annotated[str, Path(pattern=ID_PATTERN, description="A job's id (from the upload's answer).")]
QuestionId = Annotated[str, Path(pattern=ID_PATTERN, description="A question's id.")]
KeyId = Annotated[str, Path(pattern=ID_PATTERN, description="A key's id (the `<id>` of `rag_<id>_<secret>`).")]


# ------------------------------------------------------------------ errors


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where: `body`, `path`, `query` or `header`, then the field.")
    msg: str


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable; the README's error table lists every code.")
    message: str = Field(description="For people; wording may change.")
    details: list[ErrorDetail] | SkipJsonSchema[None] = Field(None, description="`invalid_request` only: each "
                                                               "field that failed validation.")


class ErrorOut(BaseModel):
    """Every error the API answers, whatever its status."""

    error: ErrorBody


# ------------------------------------------------------------------ collections


class CollectionIn(_In):
    name: CollectionName = Field(..., description="1-64 characters: letters, digits, '_', '-', '.'; starts with a "
                                                  "letter or digit.")
    description: str = ""


class CollectionOut(_FromRecord):
    name: str
    uid: str
    description: str
    created_at: str
    change_seq: int
    embed_model: str | None
    embed_dim: int | None
    document_count: int
    chunk_count: int


class CollectionsOut(BaseModel):
    collections: list[CollectionOut]


# ------------------------------------------------------------------ documents and chunks


class DocumentOut(_FromRecord):
    id: int
    collection: str
    filename: str
    format: str
    sha256: str
    size_bytes: int
    page_count: int
    title: str | None
    encoding: str | None
    language: str | None = Field(description="zh-Hans, zh-Hant or en, detected at ingestion; null for documents "
                                             "stored before detection existed.")
    chunk_count: int
    created_at: str
    status: str


class DocumentDetailOut(DocumentOut):
    pages: list[int] = Field(description="Pages that hold at least one chunk (PDFs).")


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]


class ChunkOut(_FromRecord):
    id: int
    document_id: int
    collection: str
    ordinal: int
    text: str
    char_start: int
    char_end: int
    page: int | None
    section_path: list[str]
    token_count: int
    prev_id: int | None
    next_id: int | None


class ChunksOut(BaseModel):
    chunks: list[ChunkOut]


class ChunkContextOut(_FromRecord):
    """A chunk in context (`GET /v1/collections/{name}/chunks/{chunk_id}`)."""

    chunk: ChunkOut
    before: list[ChunkOut] = Field(description="Up to `neighbours` chunks of the same document before it, "
                                               "in reading order (the nearest last).")
    after: list[ChunkOut] = Field(description="Up to `neighbours` chunks of the same document after it, "
                                              "in reading order (the nearest first).")
    document: DocumentOut


# ------------------------------------------------------------------ jobs


class JobRef(BaseModel):
    id: str
    filename: str


class RefusedError(BaseModel):
    code: str = Field(description="As the same file alone would be refused with (README error table).")
    message: str


class Refused(BaseModel):
    filename: str
    error: RefusedError


class JobsOut(BaseModel):
    jobs: list[JobRef] = Field(description="A job per accepted file, in request order.")
    rejected: list[Refused] = Field([], description="Each refused file of the request with its error "
                                    "(the codes of a single-file refusal), in request order.")

    @classmethod
    def of(cls, submitted) -> "JobsOut":
        return cls(jobs=[JobRef(id=j.id, filename=j.filename) for j in submitted.jobs],
                   rejected=[Refused(filename=r.filename, error=RefusedError(**r.error.to_dict()))
                             for r in submitted.rejected])


class JobError(BaseModel):
    code: str
    message: str | None


class JobOut(BaseModel):
    id: str
    status: str
    document_id: int | None
    progress: dict[str, Any]
    error: JobError | None
    collection: str
    filename: str
    created_at: str
    started_at: str | None
    finished_at: str | None

    @classmethod
    def of(cls, job) -> "JobOut":
        error = JobError(code=job.error_code, message=job.error_message) if job.error_code else None
        return cls(id=job.id, status=job.status, document_id=job.document_id, progress=job.progress, error=error,
                   collection=job.collection, filename=job.filename, created_at=job.created_at,
                   started_at=job.started_at, finished_at=job.finished_at)


class JobListOut(BaseModel):
    jobs: list[JobOut]


# ------------------------------------------------------------------ search


class SearchIn(_In):
    query: str = Field(..., min_length=1, max_length=4000)
    k: JsonInt(1, 100) = 10


class SearchScores(BaseModel):
    dense: float | None
    dense_rank: int | None
    bm25: float | None
    bm25_rank: int | None
    fused: float


class SearchHitOut(BaseModel):
    rank: int
    chunk_id: int
    document_id: int
    filename: str
    page: int | None
    section_path: list[str]
    ordinal: int
    text: str
    char_start: int
    char_end: int
    prev_id: int | None
    next_id: int | None
    scores: SearchScores


class RankedOut(BaseModel):
    rank: int
    chunk_id: int
    score: float
    filename: str


class SearchOut(BaseModel):
    query: str
    k: int
    lexical: bool
    lexical_skipped: str | None
    results: list[SearchHitOut]
    took_ms: float
    dense: list[RankedOut] = Field(description="The dense retriever's own top k, before fusion.")
    bm25: list[RankedOut] = Field(description="BM25's own top k, before fusion (empty when BM25 sat out).")

    @classmethod
    def of(cls, found) -> "SearchOut":
        results = [SearchHitOut(
            rank=rank, chunk_id=c.chunk_id, document_id=c.document_id, filename=c.filename, page=c.page,
            section_path=list(c.section_path), ordinal=c.ordinal, text=c.text, char_start=c.char_start,
            char_end=c.char_end, prev_id=c.prev_id, next_id=c.next_id,
            scores=SearchScores(dense=c.dense_score, dense_rank=c.dense_rank, bm25=c.bm25_score,
                                bm25_rank=c.bm25_rank, fused=c.fused_score),
        ) for rank, c in found.results]
        own = lambda ranked: [RankedOut(rank=r.rank, chunk_id=r.chunk_id, score=r.score, filename=r.filename)  # noqa: E731
                              for r in ranked]
        return cls(query=found.query, k=found.k, lexical=found.plan.lexical,
                   lexical_skipped=found.plan.lexical_skipped, results=results, took_ms=found.took_ms,
                   dense=own(found.dense), bm25=own(found.bm25))


# ------------------------------------------------------------------ questions


class BudgetIn(_In):
    max_model_calls: JsonInt(0, 50) | None = None
    max_prompt_tokens: JsonInt(0, 1_000_000) | None = None
    max_rounds: JsonInt(1, 10) | None = None
    timeout_s: float | None = Field(None, gt=0, le=3600)


class OptionsIn(BaseModel):
    """The loop options a client may set, each bounded; anything else is `invalid_request`. Decision
    thresholds and token windows are the server's (RAG_* settings), not the client's."""

    model_config = ConfigDict(extra="forbid", strict=True)

    k: JsonInt(1, 50) | None = Field(None, description="Candidates per search.")
    max_passages: JsonInt(1, 10) | None = Field(None, description="Fused candidates taken into the context.")
    max_neighbours: JsonInt(0, 4) | None = Field(None, description="Chunks added on each side of a cut passage.")
    max_rewrite_queries: JsonInt(1, 5) | None = Field(None, description="Search phrases per rewrite.")
    max_cross_queries: JsonInt(0, 4) | None = Field(None, description="Phrases in the collection's other language.")
    max_answer_tokens: JsonInt(1, 4096) | None = Field(None, description="Most answer tokens (at most RAG_MAX_ANSWER_TOKENS).")
    rewrite: bool | None = Field(None, description="Allow query rewriting when evidence is weak.")
    force_rewrite: bool | None = Field(None, description="Always run one rewrite round.")
    expand: bool | None = Field(None, description="Add neighbours of cut-off passages.")
    judge: bool | None = Field(None, description="Ask the model when cheap signals are inconclusive.")
    inline_citations: bool | None = Field(None, description="Put [n] markers after supported sentences.")


class QuestionIn(_In):
    question: str = Field(..., min_length=1, max_length=4000, pattern=NOT_BLANK_PATTERN,
                          description="Anything but blank (spaces alone: 422 `empty_question`).")
    budget: BudgetIn | None = None
    stream: bool = False
    options: OptionsIn | None = Field(None, description="Loop options (advanced; e.g. {\"force_rewrite\": true}).")


class FeedbackIn(_In):
    rating: Literal["up", "down"] = Field(description="up: the answer helped; down: it did not.")
    comment: str = Field("", max_length=FEEDBACK_COMMENT_CHARS, description="Why, in a few words (optional).")


class FeedbackOut(BaseModel):
    question_id: str
    rating: Literal["up", "down"]
    comment: str
    created_at: str


# ------------------------------------------------------------------ keys


# JSON Schema states a dict's key pattern as `propertyNames` (pydantic's `patternProperties` would
# let other keys through as additional properties).
Grants = Annotated[dict[CollectionName, Literal["read", "write"]], Field(max_length=1000), WithJsonSchema({
    "type": "object", "propertyNames": {"pattern": COLLECTION_NAME_PATTERN},
    "additionalProperties": {"type": "string", "enum": ["read", "write"]}, "maxProperties": 1000})]


class KeyIn(_In):
    role: str = Field(..., pattern="^(read|write|admin)$")
    collections: list[CollectionName] | None = Field(None, max_length=1000, description="Existing collections the "
                                                     "role applies to (a grant ends when its collection is deleted); "
                                                     "omitted: every collection (ignored for admin).")
    grants: Grants | None = Field(None, description="A role per collection instead of `collections`, e.g. "
                                  "{\"manuals\": \"write\", \"faq\": \"read\"}.")
    name: str = Field("", max_length=200)


class KeyOut(_FromRecord):
    id: str
    name: str
    role: str
    grants: dict[str, str] | None
    created_at: str
    revoked_at: str | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only as a hash.")


class KeysOut(BaseModel):
    keys: list[KeyOut]


# ------------------------------------------------------------------ trace


def _event_model(cls: type[events.Event]) -> type[BaseModel]:
    """The wire model of one event class, field for field from `rag.ask.events.wire_fields` (the
    dataclass is the one definition; nothing here is copied from it)."""
    spec: dict[str, Any] = {
        "seq": (int, Field(ge=1, description="1, 2, 3... in the order the events happened.")),
        "t_ms": (float, Field(description="Milliseconds since the question started.")),
    }
    for name, tp, always in events.wire_fields(cls):
        spec[name] = (tp, ...) if always else (tp, None)
    name = cls.__name__ if cls.__name__.endswith("Event") else cls.__name__ + "Event"
    return create_model(name, __doc__=cls.__doc__, **spec)


DecisionEvent = Annotated[Union[tuple(_event_model(c) for c in events.DECISIONS)],  # noqa: UP007 - built at run time
                          Field(discriminator="step", title="DecisionEvent",
                                description="A decision of the loop with its reason; `step` says which.")]
TraceEvent = Annotated[
    Union[(*(_event_model(c) for c in events.EVENTS if not issubclass(c, events.Decision)), DecisionEvent)],  # noqa: UP007
    Field(discriminator="type"),
]


class TraceOut(BaseModel):
    """A question's trace (`GET /v1/questions/{id}/trace`): what it was asked with, every model call
    the ledger has, and every step of the loop in order. The body is the stored JSON as it is: this
    model documents it and is not applied to it."""

    id: str
    question: str
    collection: str
    status: str = Field(description="running, answered, abstained, stopped, failed, or interrupted (the server "
                                    "answering it stopped before it ended; its calls stay in the ledger).")
    budget: dict[str, Any]
    options: dict[str, Any]
    models: dict[str, Any]
    calls: list[dict[str, Any]] = Field(description="The ledger's model calls, in order.")
    events: list[TraceEvent] = Field(description="Each step with its reason in words and numbers; "
                                                 "`type` says what the step was (a decision's `step` which).")
    context: list[dict[str, Any]] = Field(description="The passages given to the answering call.")
    settings: dict[str, Any] | None = Field(None, description="Versions, budget, options and model the loop ran "
                                                               "with; absent until the question ends.")
    feedback: list[dict[str, Any]] = Field(default_factory=list, description="Ratings of the answer "
                                           "(`rating` up or down, `comment`, `created_at`), oldest first.")


# ------------------------------------------------------------------ replay


class ChangeOut(BaseModel):
    aspect: str = Field(description="answer, abstained, stopped_by, citations (chunk ids per citation), queries, "
                                    "candidates (fused chunk ids per round), context (chunk ids per passage), "
                                    "model_calls, prompt_tokens or completion_tokens.")
    changed: bool
    before: Any
    after: Any


class ReplayOut(BaseModel):
    id: str = Field(description="The replay's own question id (its trace is at /v1/questions/{id}/trace).")
    replayed_from: str
    identical: bool
    note: str | None = Field(description="Set when the configured models or options differ from the recorded ones.")
    changes: list[ChangeOut] = Field(description="Every compared aspect, changed or not.")


# ------------------------------------------------------------------ conversations


ConversationId = Annotated[str, Path(pattern=ID_PATTERN, description="A conversation's id.")]


class ConversationIn(_In):
    title: str = Field("", max_length=200, description="A label for people (optional).")


class ConversationOut(BaseModel):
    id: str
    collection: str
    title: str
    created_at: str
    turns: int = Field(description="Questions asked in it so far.")


class ConversationListOut(BaseModel):
    conversations: list[ConversationOut] = Field(description="Newest first.")


# ------------------------------------------------------------------ OpenAI-compatible chat


class _OpenAIIn(BaseModel):
    """OpenAI's request shapes: fields a chat model would use (temperature, top_p, n, user...) are
    accepted and ignored, since the collection's loop decides how to answer."""

    model_config = ConfigDict(extra="allow")


class ChatContentPart(_OpenAIIn):
    type: str
    text: str | None = None


class ChatMessageIn(_OpenAIIn):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ChatContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class StreamOptionsIn(_OpenAIIn):
    include_usage: bool = False


class ChatIn(_OpenAIIn):
    model: CollectionName = Field(description="The collection to answer from (`GET /v1/models` lists them).")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=500, description="The conversation; the last "
                                          "user message is the question, earlier user/assistant pairs its history.")
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, description="Lowers the answer's token limit (never above the server's).")
    max_completion_tokens: int | None = Field(None, ge=1, description="As `max_tokens` (the newer name wins).")
    stream_options: StreamOptionsIn | None = None


class ModelOut(BaseModel):
    id: str = Field(description="A collection's name.")
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelListOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut] = Field(description="The collections this key may read.")


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoiceOut(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"]


class ChatUsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoiceOut]
    usage: ChatUsageOut = Field(description="The question's model calls, all of them (the ledger's totals).")
    question_id: str = Field(description="The question's id: its answer, trace and replay are at /v1/questions/{id}.")
    citations: list[dict] = Field(description="As in a question's answer: n (the [n] in the text), chunk_ids, "
                                              "document_id, filename, page, quote.")
