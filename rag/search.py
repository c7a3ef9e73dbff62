"""Hybrid search over one collection: dense (FAISS) and BM25, fused, hydrated from SQLite.

This is retrieval only; it never calls the generator. The asking loop builds on it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from rag.index.manager import Hit, IndexManager
from rag.models.embedder import Embedder
from rag.store import ThreadConnections
from rag.store import repository as repo


@dataclass(frozen=True)
class SearchResult:
    rank: int
    chunk_id: int
    document_id: int
    filename: str
    page: int | None
    section_path: tuple[str, ...]
    ordinal: int
    text: str
    char_start: int
    char_end: int
    prev_id: int | None
    next_id: int | None
    scores: dict


class Searcher:
    def __init__(self, db: ThreadConnections, index: IndexManager, embedder: Embedder):
        self.db = db
        self.index = index
        self.embedder = embedder

    def hits(self, collection: str, query: str, k: int, *, dense: bool = True, lexical: bool = True) -> list[Hit]:
        vec = self.embedder.embed_queries([query])[0] if dense else None
        return self.index.search(collection, vec, query if lexical else None, k)

    def search(self, collection: str, query: str, k: int = 10) -> list[SearchResult]:
        repo.get_collection(self.db.get(), collection)
        return self.hydrate(self.hits(collection, query, k))

    def hydrate(self, hits: list[Hit]) -> list[SearchResult]:
        conn = self.db.get()
        chunks = {c.id: c for c in repo.get_chunks(conn, [h.chunk_id for h in hits])}
        names: dict[int, str] = {}
        out = []
        for rank, hit in enumerate(hits, 1):
            chunk = chunks.get(hit.chunk_id)
            if chunk is None:  # deleted between index read and hydration
                continue
            if chunk.document_id not in names:
                names[chunk.document_id] = repo.get_document(conn, chunk.document_id).filename
            out.append(SearchResult(
                rank=rank, chunk_id=chunk.id, document_id=chunk.document_id, filename=names[chunk.document_id],
                page=chunk.page, section_path=chunk.section_path, ordinal=chunk.ordinal, text=chunk.text,
                char_start=chunk.char_start, char_end=chunk.char_end, prev_id=chunk.prev_id, next_id=chunk.next_id,
                scores={"dense": hit.dense_score, "dense_rank": hit.dense_rank, "bm25": hit.bm25_score,
                        "bm25_rank": hit.bm25_rank, "fused": hit.score},
            ))
        return out

    def search_view(self, collection: str, query: str, k: int) -> dict:
        t0 = time.monotonic()
        results = self.search(collection, query, k)
        return {"query": query, "k": k, "results": [asdict(r) for r in results],
                "took_ms": round((time.monotonic() - t0) * 1000, 1)}
