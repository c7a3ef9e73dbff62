"""Hybrid search over one collection: dense (FAISS) and BM25, fused, hydrated from SQLite.

This is retrieval only; it never calls the generator. The asking loop reaches it through
`CollectionRetriever`, its `Retriever` port scoped to one collection.

BM25 takes part only when the query's language is one of the collection's: an English query
against a Chinese-only collection shares nothing with it but package names and URLs, and fusing
that noisy list pulled cross-lingual recall@5 on the Debian FAQ below dense alone (en>zh 0.53 vs
0.62, zh>en 0.49 vs 0.60; `rag bench qa`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rag import store
from rag.ask import Candidate
from rag.text.lang import base as base_language
from rag.text.lang import detect_language
from rag.index.fusion import Hit
from rag.index.search_index import SearchIndex
from rag.index.windows import rescore
from rag.models.embedder import Embedder
from rag.store import Connections


LANGUAGE_SAMPLE = 200  # chunks sampled to decide a collection's languages


@dataclass(frozen=True)
class Plan:
    """Which retrievers a query uses, and why BM25 was left out (None when it was not)."""

    dense: bool
    lexical: bool
    query_language: str
    lexical_skipped: str | None = None


@dataclass(frozen=True)
class Ranked:
    """One chunk in one retriever's own ranking (before fusion)."""

    rank: int
    chunk_id: int
    score: float
    filename: str


@dataclass(frozen=True)
class Found:
    query: str
    k: int
    plan: Plan
    results: list[tuple[int, Candidate]]  # (rank among the fused hits, the chunk with its scores)
    took_ms: float
    dense: list[Ranked] = ()  # the dense retriever's own top k
    bm25: list[Ranked] = ()  # BM25's own top k (empty when it sat out)


class Searcher:
    def __init__(self, db: Connections, index: SearchIndex, embedder: Embedder):
        self.db = db
        self.index = index
        self.embedder = embedder
        self._languages: dict[str, tuple[int, frozenset[str]]] = {}

    def languages(self, collection: str) -> frozenset[str]:
        """Base languages ("zh", "en") of an even sample of the collection's chunks; a language
        counts when at least 5% of the sample has it. Cached until the collection changes."""
        conn = self.db.get()
        seq = store.change_seq(conn, collection)
        cached = self._languages.get(collection)
        if cached and cached[0] == seq:
            return cached[1]
        total = conn.execute("SELECT count(*) FROM chunks WHERE collection = ?", (collection,)).fetchone()[0]
        step = max(1, total // LANGUAGE_SAMPLE)
        rows = conn.execute(
            "SELECT text FROM (SELECT text, row_number() OVER (ORDER BY id) AS rn FROM chunks WHERE collection = ?)"
            " WHERE rn % ? = 0 LIMIT ?", (collection, step, LANGUAGE_SAMPLE)).fetchall()
        seen: dict[str, int] = {}
        for (text,) in rows:
            lang = base_language(detect_language(text))
            seen[lang] = seen.get(lang, 0) + 1
        langs = frozenset(lang for lang, n in seen.items() if n >= max(1, len(rows) // 20))
        self._languages[collection] = (seq, langs)
        return langs

    def plan(self, collection: str, query: str, *, dense: bool = True, lexical: bool = True) -> Plan:
        qlang = base_language(detect_language(query))
        if dense and lexical:
            langs = self.languages(collection)
            if langs and qlang not in langs:
                return Plan(True, False, qlang, f"query language {qlang} is not in the collection ({', '.join(sorted(langs))})")
        return Plan(dense, lexical, qlang)

    def hits(self, collection: str, query: str, k: int, *, dense: bool = True, lexical: bool = True) -> list[Hit]:
        p = self.plan(collection, query, dense=dense, lexical=lexical)
        vec = self.embedder.embed_queries([query])[0] if p.dense else None
        return self.index.search(collection, vec, query if p.lexical else None, k,
                                 rescore=self._by_windows(vec) if p.dense else None)

    def _by_windows(self, vec):
        """Re-ranks dense candidates by whole chunk and best window (`rag.index.windows`)."""
        def rescored(dense: list[tuple[int, float]]) -> list[tuple[int, float]]:
            return rescore(vec, dense, store.window_vectors(self.db.get(), [c for c, _ in dense]))
        return rescored

    def search(self, collection: str, query: str, k: int = 10) -> list[Candidate]:
        store.get_collection(self.db.get(), collection)
        return self.hydrate(self.hits(collection, query, k))

    def hydrate(self, hits: list[Hit]) -> list[Candidate]:
        """Hits with their chunk and file name, in hit order; chunks deleted meanwhile are left out."""
        conn = self.db.get()
        chunks = {c.id: c for c in store.get_chunks(conn, [h.chunk_id for h in hits])}
        names: dict[int, str] = {}
        out = []
        for hit in hits:
            chunk = chunks.get(hit.chunk_id)
            if chunk is None:  # deleted between index read and hydration
                continue
            if chunk.document_id not in names:
                names[chunk.document_id] = store.get_document(conn, chunk.document_id).filename
            out.append(candidate_of(chunk, names[chunk.document_id], hit))
        return out

    def search_found(self, collection: str, query: str, k: int) -> Found:
        """A search as the search endpoint reports it: the plan, each hit with its rank in the fused list,
        and each retriever's own top k (the fused list's dense and BM25 ranks skip whatever did not make
        the fused top k: 1, 2, 5, 11...)."""
        t0 = time.monotonic()
        store.get_collection(self.db.get(), collection)  # a 404 before any work
        p = self.plan(collection, query)
        vec = self.embedder.embed_queries([query])[0] if p.dense else None
        hits = self.index.search(collection, vec, query if p.lexical else None, k,
                                 rescore=self._by_windows(vec) if p.dense else None)
        rank = {h.chunk_id: r for r, h in enumerate(hits, 1)}
        results = [(rank[c.chunk_id], c) for c in self.hydrate(hits)]
        dense = self.index.search(collection, vec, None, k, rescore=self._by_windows(vec)) if p.dense else []
        bm25 = self.index.search(collection, None, query, k) if p.lexical else []
        return Found(query, k, p, results, round((time.monotonic() - t0) * 1000, 1),
                     dense=self._own(dense, "dense"), bm25=self._own(bm25, "bm25"))

    def _own(self, hits: list[Hit], kind: str) -> list[Ranked]:
        """A single retriever's hits, hydrated, by its own rank and score."""
        return [Ranked(getattr(c, f"{kind}_rank"), c.chunk_id, getattr(c, f"{kind}_score"), c.filename)
                for c in self.hydrate(hits) if getattr(c, f"{kind}_rank") is not None]


def candidate_of(chunk: store.ChunkRecord, filename: str, hit: Hit | None = None) -> Candidate:
    """A stored chunk as the loop sees it, with the scores and ranks of `hit` when it was retrieved."""
    return Candidate(
        chunk_id=chunk.id, document_id=chunk.document_id, filename=filename, page=chunk.page, ordinal=chunk.ordinal,
        text=chunk.text, char_start=chunk.char_start, char_end=chunk.char_end, prev_id=chunk.prev_id,
        next_id=chunk.next_id, section_path=chunk.section_path,
        **({} if hit is None else {"dense_score": hit.dense_score, "dense_rank": hit.dense_rank,
                                  "bm25_score": hit.bm25_score, "bm25_rank": hit.bm25_rank, "fused_score": hit.score}),
    )


class CollectionRetriever:
    """The loop's `Retriever` over one collection: hybrid search, chunks by id, and languages present."""

    def __init__(self, searcher: Searcher, collection: str, *, dense: bool = True, lexical: bool = True):
        self.searcher = searcher
        self.collection = collection
        self.dense, self.lexical = dense, lexical

    def search(self, query: str, k: int) -> list[Candidate]:
        return self.searcher.hydrate(self.searcher.hits(self.collection, query, k, dense=self.dense, lexical=self.lexical))

    def get_chunk(self, chunk_id: int) -> Candidate | None:
        conn = self.searcher.db.get()
        chunks = store.get_chunks(conn, [chunk_id])
        if not chunks or chunks[0].collection != self.collection:
            return None
        return candidate_of(chunks[0], store.get_document(conn, chunks[0].document_id).filename)

    def languages(self) -> set[str]:
        return set(self.searcher.languages(self.collection))

    def lexical_skipped(self, query: str) -> str | None:
        return self.searcher.plan(self.collection, query, dense=self.dense, lexical=self.lexical).lexical_skipped
