"""A document's rows on Postgres in a handful of statements: binary COPY for its chunks, vectors,
windows and BM25 postings, whatever the document's size.

SQLite runs in process, so a statement per row (`executemany`) is cheap there. Over a socket every
statement is parsed, planned and executed on its own, and a document of 300 chunks was ~1,300 of
them (a chunk row, its prev/next update, its vector, its length, its postings): 0.75-1.4 s per
document on a loaded 2-core machine, against 35 ms in SQLite (`rag bench backends`, part 3, put the
Postgres worker at 0.6x the embedded one). Here each table gets one `COPY ... FROM STDIN (FORMAT
BINARY)` (`PgConnection.copy`), chunk ids are drawn from the chunks' identity sequence first so a
chunk row is written once with its prev/next ids, and the few remaining statements take arrays.

Callers are the store's table modules (`documents`, `vectors`), inside their transaction: a failure
anywhere rolls every row back, as before. No psycopg import here (the module is imported with the
store, which SQLite-only installs use without psycopg).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np

from rag.store.connection import Connection
from rag.store.records import ChunkSource, ChunkWindows

_CHUNK_COLUMNS = ("id", "document_id", "collection", "ordinal", "text", "char_start", "char_end", "page",
                  "section_path", "token_count", "prev_id", "next_id")
_CHUNK_TYPES = ("bigint", "bigint", "text", "integer", "text", "integer", "integer", "integer", "text", "integer",
                "bigint", "bigint")


def insert_chunks(conn: Connection, collection: str, doc_id: int, drafts: Sequence[ChunkSource]) -> list[int]:
    """Writes `drafts` (in ordinal order) as the document's chunks and returns their ids, ascending with
    the ordinals. The ids come from the identity sequence up front (COPY writes given identity
    values, as `OVERRIDING SYSTEM VALUE` does), so each row carries its neighbours' ids from the start."""
    if not drafts:
        return []
    ids = sorted(int(r[0]) for r in conn.execute(
        "SELECT nextval(pg_get_serial_sequence('chunks', 'id')) FROM generate_series(1, ?)", (len(drafts),)))
    last = len(ids) - 1
    conn.copy("chunks", _CHUNK_COLUMNS, _CHUNK_TYPES, (
        (ids[i], doc_id, collection, int(c.ordinal), c.text, int(c.char_start), int(c.char_end),
         None if c.page is None else int(c.page), json.dumps(list(c.section_path), ensure_ascii=False),
         int(c.token_count), ids[i - 1] if i else None, ids[i + 1] if i < last else None)
        for i, c in enumerate(drafts)))
    return ids


def insert_vectors(conn: Connection, chunk_ids: Sequence[int], vecs: np.ndarray, model: str) -> None:
    """One pgvector row per chunk (row i of `vecs` is chunk `chunk_ids[i]`'s), with the chunk's collection
    beside it (the HNSW search filters on it); chunks that do not exist (deleted meanwhile) are skipped."""
    ids = [int(i) for i in chunk_ids]
    owner = dict(conn.execute("SELECT id, collection FROM chunks WHERE id = ANY(?)", (ids,)).fetchall())
    dim = int(vecs.shape[1])
    conn.copy("chunk_vectors", ("chunk_id", "collection", "model", "dim", "embedding"),
              ("bigint", "text", "text", "integer", "vector"),
              ((cid, owner[cid], model, dim, vecs[i]) for i, cid in enumerate(ids) if cid in owner))


def insert_windows(conn: Connection, rows: Iterable[tuple[int, int, int, int, int, bytes]]) -> None:
    """(chunk id, n, char_start, char_end, dim, float32 LE bytes) rows of the chunks' window vectors."""
    conn.copy("chunk_windows", ("chunk_id", "n", "char_start", "char_end", "dim", "vector"),
              ("bigint", "integer", "integer", "integer", "integer", "bytea"), rows)


def save_postings(conn: Connection, rows: Iterable[tuple[int, Sequence[str], Sequence[int]]]) -> int:
    """BM25's statistics for (chunk id, distinct terms, counts) rows: the chunk's length in terms, one
    posting (term, chunk, count) per term counted, and the collection's totals. Chunks that do not
    exist (deleted meanwhile) or already have postings (saved twice) are skipped. Returns chunks saved."""
    wanted = [(int(c), list(t), [min(int(x), 65535) for x in n]) for c, t, n in rows]
    for _, terms, tfs in wanted:
        if len(terms) != len(tfs):
            raise ValueError("terms and counts differ in length")
    fresh = {int(r[0]): (r[1], int(r[2])) for r in conn.execute(
        "SELECT id, collection, document_id FROM chunks WHERE id = ANY(?) AND term_total IS NULL",
        ([cid for cid, _, _ in wanted],))}
    todo = [(cid, terms, tfs, sum(tfs)) for cid, terms, tfs in wanted if cid in fresh]
    if not todo:
        return 0
    conn.execute("UPDATE chunks SET term_total = u.total FROM unnest(?::bigint[], ?::int[]) AS u(id, total)"
                 " WHERE chunks.id = u.id", ([r[0] for r in todo], [r[3] for r in todo]))
    conn.copy("chunk_postings", ("collection", "term", "chunk_id", "tf", "term_total", "document_id"),
              ("text", "text", "bigint", "integer", "integer", "bigint"),
              ((fresh[cid][0], term, cid, tf, total, fresh[cid][1])
               for cid, terms, tfs, total in todo if total > 0 for term, tf in zip(terms, tfs) if tf > 0))
    conn.execute(
        "UPDATE collections c SET lex_chunks = c.lex_chunks + s.n, lex_terms = c.lex_terms + s.total"
        " FROM (SELECT collection, count(*) AS n, sum(term_total) AS total FROM chunks"
        "       WHERE id = ANY(?) GROUP BY collection) s WHERE c.name = s.collection",
        ([r[0] for r in todo],))
    return len(todo)
