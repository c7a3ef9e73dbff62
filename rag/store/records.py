"""What the store hands out and takes in: plain frozen dataclasses, no SQL.

`ChunkSource` is the shape the store needs of a chunk to insert (the ingest chunker's `ChunkDraft`
has it) and `CallSource` that of a model call to record (the loop's `ModelCall` has it); declaring
them here keeps the store from importing the packages above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class ChunkSource(Protocol):
    """A chunk before it has an id: `text` is `document_text[char_start:char_end]`."""

    ordinal: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    page: int | None
    section_path: tuple[str, ...]


class CallSource(Protocol):
    """One model call as the ledger records it."""

    n: int
    purpose: str
    model_id: str
    runtime: str
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    wall_ms: float
    server: str  # base URL of the model server; '' in process
    failed: bool  # the call did not complete (its cost so far is recorded)


@dataclass(frozen=True)
class CollectionRecord:
    name: str
    uid: str  # random, never reused; names the collection's index folder
    description: str
    created_at: str
    change_seq: int
    embed_model: str | None  # embedder of every vector in the collection; None while it is empty
    embed_dim: int | None
    document_count: int
    chunk_count: int


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    role: str  # read | write | admin
    grants: dict[str, str] | None  # existing collection -> read|write (key_grants); None: every collection
    secret_hash: bytes
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True)
class IndexState:
    """A collection's identity and position in its change sequence, as its indexes see it."""

    uid: str
    change_seq: int
    embed_dim: int | None  # None while the collection holds no vectors


@dataclass(frozen=True)
class NewDocument:
    """What the pipeline knows about an upload before it is stored."""

    filename: str
    format: str
    sha256: str  # of the original bytes, lowercase hex
    size_bytes: int
    page_count: int = 0
    title: str | None = None
    encoding: str | None = None
    language: str | None = None  # zh-Hans | zh-Hant | en (rag.text.lang)


@dataclass(frozen=True)
class DocumentRecord:
    id: int
    collection: str
    filename: str
    format: str
    sha256: str
    size_bytes: int
    page_count: int
    title: str | None
    encoding: str | None
    chunk_count: int
    created_at: str
    status: str
    language: str | None = None  # zh-Hans | zh-Hant | en; None for documents stored before it was detected


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    document_id: int
    collection: str
    ordinal: int
    text: str
    char_start: int
    char_end: int
    page: int | None
    section_path: tuple[str, ...]
    token_count: int
    prev_id: int | None
    next_id: int | None


@dataclass(frozen=True)
class ChunkContext:
    """A chunk with up to n chunks of the same document on each side (by ordinal), and the document."""

    chunk: ChunkRecord
    before: tuple[ChunkRecord, ...]  # reading order: the nearest last
    after: tuple[ChunkRecord, ...]  # reading order: the nearest first
    document: DocumentRecord


@dataclass(frozen=True)
class JobRecord:
    id: str
    collection: str
    filename: str
    status: str
    document_id: int | None
    progress: dict[str, Any]
    error_code: str | None
    error_message: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class AddedDocument:
    """Result of `add_document`. When `duplicate` is true nothing new was stored: `document` is the
    copy already in the collection, `chunk_ids` is empty, and the derived indexes need no update."""

    document: DocumentRecord
    chunk_ids: tuple[int, ...]
    change_seq: int
    duplicate: bool = False


@dataclass(frozen=True)
class DeletedDocument:
    document: DocumentRecord
    chunk_ids: tuple[int, ...]
    change_seq: int


@dataclass(frozen=True)
class DeletedCollection:
    collection: CollectionRecord
    document_count: int
    chunk_count: int
    failed_jobs: int  # unfinished jobs marked failed with code `collection_deleted`


@dataclass(frozen=True)
class VectorBatch:
    ids: np.ndarray  # int64 chunk ids, ascending
    document_ids: np.ndarray  # int64, aligned with ids
    vectors: np.ndarray  # float32 (len(ids), dim), as stored (not re-normalised)
    model: str


@dataclass(frozen=True)
class CachedTerms:
    """Result of `load_chunk_terms`."""

    ids: list[int]  # chunks with a cache row from the requested analyzer, ascending
    terms: list[str]  # their distinct terms joined by ' ' (aligned with ids)
    counts: list[bytes]  # uint16 LE counts (aligned with ids and with each row's terms)
    missing: list[tuple[int, str]]  # (chunk id, text) of chunks without such a row



@dataclass(frozen=True)
class ChunkWindows:
    """The windows of one chunk: [start, end) offsets within the chunk's text, one vector each."""

    spans: tuple[tuple[int, int], ...]
    vectors: np.ndarray  # (len(spans), dim) float32, L2-normalised

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.spans) or len(self.spans) < 2:
            raise ValueError("a chunk with windows has at least two, one vector per span")

