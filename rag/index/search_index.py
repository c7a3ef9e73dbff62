"""What the services ask of a search index, whichever backend serves it.

Two classes satisfy `SearchIndex`: `rag.index.manager.IndexManager` (FAISS + bm25s in memory, kept
in step with SQLite) and `rag.index.pgsearch.PgIndex` (pgvector + BM25 in SQL, nothing in memory).
Writes take the caller's connection and run the store's transaction themselves, so a document is
searchable from its commit and never before; reads name the collection and return `Hit`s ranked
the same way on both (fusion is shared: `rag.index.fusion`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from rag import store
from rag.index.fusion import RRF_K, Hit

# Re-ranks dense candidates [(chunk id, score)] before fusion (sub-chunk windows: `rag.index.windows`).
Rescore = Callable[[list[tuple[int, float]]], list[tuple[int, float]]]


@dataclass(frozen=True)
class OpenReport:
    collection: str
    seq: int
    chunks: int
    dense: Literal["loaded", "repaired", "rebuilt", "empty"]
    terms_cached: int  # chunks whose lexical analysis came from the store
    terms_analyzed: int  # chunks analysed now (cache missing or from another analyzer version)
    seconds: float


@runtime_checkable
class SearchIndex(Protocol):
    """Thread-safe. `open()` once before use, `close()` at shutdown."""

    def open(self) -> list[OpenReport]:
        """Start-up: whatever the backend needs before it answers; one report per collection."""
        ...

    def close(self) -> None: ...

    def flush(self) -> None:
        """Saves what is pending now (nothing to save when the database holds the indexes)."""
        ...

    def add_document(self, conn: store.Connection, collection: str, meta: store.NewDocument,
                     chunks: Sequence[store.ChunkSource], vectors: np.ndarray, job_id: str | None = None, *,
                     embed_model: str, windows: Sequence[store.ChunkWindows | None] | None = None,
                     ) -> store.AddedDocument:
        """Stores the document in one transaction (`rag.store.documents.add_document`), then makes it searchable."""
        ...

    def delete_document(self, conn: store.Connection, document_id: int, *,
                        collection: str | None = None) -> store.DeletedDocument: ...

    def delete_collection(self, conn: store.Connection, name: str) -> store.DeletedCollection: ...

    def search(self, collection: str, query_vector: np.ndarray | None, query_text: str | None, k: int = 10, *,
               candidates: int | None = None, rrf_k: float = RRF_K, rescore: Rescore | None = None) -> list[Hit]:
        """Hybrid: the top `candidates` (default max(50, 4k)) of each retriever, fused by RRF, best `k`."""
        ...

    def dense_search(self, collection: str, query_vector: np.ndarray, k: int = 10) -> list[Hit]: ...

    def lexical_search(self, collection: str, query_text: str, k: int = 10) -> list[Hit]: ...

    def stats(self, collection: str) -> dict[str, Any]: ...
