"""Wire formats of the API, one model per resource. Field names are the contract: keep them stable.

Services return records (`rag.store.records`, `rag.service.*` dataclasses); routes turn them into
these models, so what a client sees is declared here and in the OpenAPI, nowhere else.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _FromRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ------------------------------------------------------------------ collections


class CollectionIn(BaseModel):
    name: str = Field(..., description="1-64 characters: letters, digits, '_', '-', '.'; starts with a letter or digit.")
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


class JobsOut(BaseModel):
    jobs: list[JobRef]


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


# ------------------------------------------------------------------ search


class SearchIn(BaseModel):
    query: str = Field(..., min_length=1, max_length=4000)
    k: int = Field(10, ge=1, le=100)


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


class SearchOut(BaseModel):
    query: str
    k: int
    lexical: bool
    lexical_skipped: str | None
    results: list[SearchHitOut]
    took_ms: float

    @classmethod
    def of(cls, found) -> "SearchOut":
        results = [SearchHitOut(
            rank=rank, chunk_id=c.chunk_id, document_id=c.document_id, filename=c.filename, page=c.page,
            section_path=list(c.section_path), ordinal=c.ordinal, text=c.text, char_start=c.char_start,
            char_end=c.char_end, prev_id=c.prev_id, next_id=c.next_id,
            scores=SearchScores(dense=c.dense_score, dense_rank=c.dense_rank, bm25=c.bm25_score,
                                bm25_rank=c.bm25_rank, fused=c.fused_score),
        ) for rank, c in found.results]
        return cls(query=found.query, k=found.k, lexical=found.plan.lexical,
                   lexical_skipped=found.plan.lexical_skipped, results=results, took_ms=found.took_ms)


# ------------------------------------------------------------------ questions


class BudgetIn(BaseModel):
    max_model_calls: int | None = Field(None, ge=0, le=50)
    max_prompt_tokens: int | None = Field(None, ge=0, le=1_000_000)
    max_rounds: int | None = Field(None, ge=1, le=10)
    timeout_s: float | None = Field(None, gt=0, le=3600)


class OptionsIn(BaseModel):
    """The loop options a client may set, each bounded; anything else is `invalid_request`. Decision
    thresholds and token windows are the server's (RAG_* settings), not the client's."""

    model_config = ConfigDict(extra="forbid", strict=True)

    k: int | None = Field(None, ge=1, le=50, description="Candidates per search.")
    max_passages: int | None = Field(None, ge=1, le=10, description="Fused candidates taken into the context.")
    max_neighbours: int | None = Field(None, ge=0, le=4, description="Chunks added on each side of a cut passage.")
    max_rewrite_queries: int | None = Field(None, ge=1, le=5, description="Search phrases per rewrite.")
    max_cross_queries: int | None = Field(None, ge=0, le=4, description="Phrases in the collection's other language.")
    max_answer_tokens: int | None = Field(None, ge=1, le=4096, description="Most answer tokens (at most RAG_MAX_ANSWER_TOKENS).")
    rewrite: bool | None = Field(None, description="Allow query rewriting when evidence is weak.")
    force_rewrite: bool | None = Field(None, description="Always run one rewrite round.")
    expand: bool | None = Field(None, description="Add neighbours of cut-off passages.")
    judge: bool | None = Field(None, description="Ask the model when cheap signals are inconclusive.")
    inline_citations: bool | None = Field(None, description="Put [n] markers after supported sentences.")


class QuestionIn(BaseModel):
    question: str = Field(..., min_length=1, max_length=4000)
    budget: BudgetIn | None = None
    stream: bool = False
    options: OptionsIn | None = Field(None, description="Loop options (advanced; e.g. {\"force_rewrite\": true}).")


# ------------------------------------------------------------------ keys


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(..., pattern="^(read|write|admin)$")
    collections: list[str] | None = Field(None, max_length=1000, description="Collections the role applies to; "
                                          "omitted: every collection (ignored for admin).")
    grants: dict[str, Literal["read", "write"]] | None = Field(None, max_length=1000, description="A role per "
                                                              "collection instead of `collections`, e.g. {\"manuals\": \"write\", \"faq\": \"read\"}.")
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
