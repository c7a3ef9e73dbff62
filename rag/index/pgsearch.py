"""Dense and lexical search served by PostgreSQL itself: pgvector HNSW and BM25 computed in SQL.

The `SearchIndex` of the Postgres backend (as `IndexManager` is the embedded one's) over a store
that every `rag serve` and `rag worker` process shares. Nothing is held in memory, so there is
nothing to rebuild, save or resync: a document is searchable from the commit that stores it, on
every server at once, and never before (one transaction stores its chunks, vectors and postings).

Dense: cosine distance over `chunk_vectors.embedding` through the HNSW index for the embedder's
dimension (`rag.store.pg_schema.ensure_vector_index`), filtered by collection with pgvector's
iterative scan in strict order; score = 1 - distance = the inner product FAISS gives for
normalised vectors.

Lexical: BM25 (`lucene` variant, k1=1.5, b=0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5))) from
the stored postings and chunk lengths, the terms coming from the same analyzer as the embedded
backend (jieba-segmented, OpenCC-folded). This is bm25s' formula, so both backends rank alike
(`rag bench backends` measured overlap@10 with bm25s 0.98-1.0 and Kendall tau 1.0; a `tsvector`
over the same terms ranked by `ts_rank` 0.40-0.54, by `ts_rank_cd` 0.13-0.25: it has no idf).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag import store
from rag.errors import RagError
from rag.index.fusion import RRF_K, Hit, hybrid_hits
from rag.index.lexical import B, K1, Analyzer, get_analyzer
from rag.index.search_index import OpenReport, Rescore
from rag.store import pg_schema
from rag.store.pg import vector_literal

log = logging.getLogger("rag.index")

# Each query term's postings are read through the primary key (collection, term) with what scoring
# needs included (index-only); the collection's N and total length come from its row. Fetching the
# terms one by one (LATERAL) keeps the planner from scanning every posting of the collection, which
# it did when it misjudged the terms list (0.94 s -> ~0.03 s per query at 100k chunks).
BM25_SQL = f"""
WITH q AS (SELECT DISTINCT unnest(?::text[]) AS term),
hits AS MATERIALIZED (
    SELECT p.term, p.chunk_id, p.tf, p.term_total, p.document_id FROM q CROSS JOIN LATERAL (
        SELECT term, chunk_id, tf, term_total, document_id FROM chunk_postings
        WHERE collection = ? AND term = q.term) p),
df AS (SELECT term, count(*)::float8 AS df FROM hits GROUP BY term),
st AS (SELECT lex_chunks::float8 AS n,
              CASE WHEN lex_chunks > 0 AND lex_terms > 0 THEN lex_terms::float8 / lex_chunks ELSE 1 END AS avgdl
       FROM collections WHERE name = ?)
SELECT h.chunk_id, h.document_id,
       sum(ln(1 + (st.n - df.df + 0.5) / (df.df + 0.5))
           * h.tf / (h.tf + {K1} * ((1 - {B}) + {B} * h.term_total / st.avgdl)))::float8 AS score
FROM hits h JOIN df ON df.term = h.term CROSS JOIN st
GROUP BY h.chunk_id, h.document_id
ORDER BY score DESC, h.chunk_id
LIMIT ?
"""


class PgIndex:
    """Search over the Postgres store. Thread-safe (each thread uses its own connection)."""

    def __init__(self, db: store.Connections, *, dim: int | None = None, analyzer: Analyzer | None = None):
        self.db = db  # Postgres connections (`rag.store.pg.PgConnections`)
        self.dim = dim
        self.analyzer = analyzer or get_analyzer()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> list[OpenReport]:
        """Makes sure the HNSW index for the embedder's dimension exists; reports each collection."""
        t0 = time.monotonic()
        conn = self.db.get()
        if self.dim:
            pg_schema.ensure_vector_index(conn, self.dim)
        self.analyzer.warm_up()
        seconds = time.monotonic() - t0
        return [OpenReport(rec.name, rec.change_seq, rec.chunk_count, "loaded" if rec.chunk_count else "empty", 0, 0,
                           seconds) for rec in store.list_collections(conn)]

    def close(self) -> None:
        """Nothing to save: Postgres holds the indexes."""

    def flush(self) -> None:
        """Nothing to save: Postgres holds the indexes."""

    # ------------------------------------------------------------------ writes

    def add_document(self, conn: store.Connection, collection: str, meta: store.NewDocument,
                     chunks: Sequence[store.ChunkSource], vectors: np.ndarray, job_id: str | None = None, *, embed_model: str,
                     windows: Sequence[store.ChunkWindows | None] | None = None) -> store.AddedDocument:
        """One transaction stores the document, its vectors and its BM25 postings: searchable from its commit."""
        terms = [self.analyzer.term_counts(c.text) for c in chunks]
        return store.add_document(conn, collection, meta, chunks, vectors, job_id, embed_model=embed_model,
                                  terms=terms, analyzer=self.analyzer.id, windows=windows)

    def delete_document(self, conn: store.Connection, document_id: int, *,
                        collection: str | None = None) -> store.DeletedDocument:
        return store.delete_document(conn, document_id, collection=collection)

    def delete_collection(self, conn: store.Connection, name: str) -> store.DeletedCollection:
        return store.delete_collection(conn, name)

    # ------------------------------------------------------------------ reads

    def _dense(self, collection: str, query_vector: np.ndarray | None, k: int) -> list[tuple[int, int, float]]:
        if query_vector is None or k <= 0:
            return []
        q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        conn = self.db.get()
        state = store.index_state(conn, collection)
        if state is None or state.embed_dim is None:
            return []
        dim = int(state.embed_dim)
        if q.shape[0] != dim:
            raise RagError(f"query vector has dimension {q.shape[0]}, the collection's vectors {dim}",
                           code="dimension_mismatch", status=409)
        rows = conn.execute(
            f"SELECT v.chunk_id, c.document_id, 1 - v.distance AS score FROM ("
            f" SELECT chunk_id, embedding::vector({dim}) <=> ?::vector({dim}) AS distance FROM chunk_vectors"
            f" WHERE dim = {dim} AND collection = ? ORDER BY embedding::vector({dim}) <=> ?::vector({dim}) LIMIT ?"
            f") v JOIN chunks c ON c.id = v.chunk_id ORDER BY v.distance, v.chunk_id",
            (vector_literal(q), collection, vector_literal(q), int(k))).fetchall()
        return [(int(c), int(d), float(s)) for c, d, s in rows]

    def _lexical(self, collection: str, query_text: str | None, k: int) -> list[tuple[int, int, float]]:
        terms = self.analyzer.query_terms(query_text) if query_text else []
        if not terms or k <= 0:
            return []
        rows = self.db.get().execute(BM25_SQL, (terms, collection, collection, int(k))).fetchall()
        return [(int(c), int(d), float(s)) for c, d, s in rows if s > 0]

    def dense_search(self, collection: str, query_vector: np.ndarray, k: int = 10) -> list[Hit]:
        return [Hit(c, d, s, dense_score=s, dense_rank=r)
                for r, (c, d, s) in enumerate(self._dense(collection, query_vector, k), start=1)]

    def lexical_search(self, collection: str, query_text: str, k: int = 10) -> list[Hit]:
        return [Hit(c, d, s, bm25_score=s, bm25_rank=r)
                for r, (c, d, s) in enumerate(self._lexical(collection, query_text, k), start=1)]

    def search(self, collection: str, query_vector: np.ndarray | None, query_text: str | None, k: int = 10, *,
               candidates: int | None = None, rrf_k: float = RRF_K,
               rescore: Rescore | None = None) -> list[Hit]:
        """Hybrid search, as `IndexManager.search`: top `candidates` (default max(50, 4k)) of each
        retriever, dense re-ranked by `rescore`, fused by RRF (`rag.index.fusion.hybrid_hits`)."""
        if k <= 0:
            return []
        n = candidates or max(50, 4 * k)
        dense_rows = self._dense(collection, query_vector, n)
        lexical_rows = self._lexical(collection, query_text, n)
        doc_of = {c: d for c, d, _ in dense_rows + lexical_rows}
        dense = [(c, s) for c, _, s in dense_rows]
        if rescore is not None and dense:
            dense = rescore(dense)
        lexical = [(c, s) for c, _, s in lexical_rows]
        return hybrid_hits(dense, lexical, k, rrf_k, lambda ids: [doc_of[c] for c in ids])

    def stats(self, collection: str) -> dict[str, Any]:
        conn = self.db.get()
        state = store.index_state(conn, collection)
        if state is None:
            raise RagError(f"collection {collection!r} does not exist", code="collection_not_found", status=404)
        chunks = int(conn.execute("SELECT count(*) FROM chunk_vectors WHERE collection = ?", (collection,)).fetchone()[0])
        vocabulary = int(conn.execute("SELECT count(DISTINCT term) FROM chunk_postings WHERE collection = ?",
                                      (collection,)).fetchone()[0])
        return {"collection": collection, "seq": state.change_seq, "saved_seq": state.change_seq, "chunks": chunks,
                "dim": state.embed_dim, "dense_bytes": None, "lexical_bytes": None, "vocabulary": vocabulary,
                "backend": "postgres"}
