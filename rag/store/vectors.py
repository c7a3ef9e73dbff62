"""Per-chunk derived data kept in SQLite so indexes can be rebuilt without the models: vectors,
sub-chunk window vectors, and the lexical analyzer's cached term counts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from rag.errors import IngestError, RagError
from rag.store import pg_writes
from rag.store.connection import Connection, Row
from rag.store.db import in_batches, transaction
from rag.store.dialect import dialect
from rag.store.records import CachedTerms, ChunkWindows, VectorBatch

def validated_vectors(vectors: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(vectors)
    if n == 0 and arr.size == 0:
        return np.zeros((0, arr.shape[-1] if arr.ndim == 2 else 0), dtype="<f4")
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0:
        raise IngestError(f"expected vectors of shape ({n}, dim), got {arr.shape}", code="bad_vectors")
    arr = np.ascontiguousarray(arr, dtype="<f4")
    if not np.isfinite(arr).all():
        raise IngestError("vectors contain NaN or infinity", code="bad_vectors")
    return arr


def insert_vectors(conn: Connection, chunk_ids: Sequence[int], vecs: np.ndarray, model: str) -> None:
    """Row i of `vecs` is chunk `chunk_ids[i]`'s vector. Postgres keeps the chunk's collection beside it
    and skips chunks that do not exist (`rag.store.pg_writes`)."""
    if not len(chunk_ids):
        return
    if dialect(conn) == "postgres":
        pg_writes.insert_vectors(conn, chunk_ids, vecs, model)
        return
    dim = int(vecs.shape[1])
    conn.executemany(
        "INSERT INTO chunk_vectors (chunk_id, model, dim, vector) VALUES (?, ?, ?, ?)",
        ((cid, model, dim, vecs[i].tobytes()) for i, cid in enumerate(chunk_ids)),
    )


def insert_windows(
    conn: Connection, chunk_ids: Sequence[int], windows: Sequence[ChunkWindows | None], dim: int | None
) -> None:
    rows = []
    for cid, w in zip(chunk_ids, windows):
        if w is None:
            continue
        vecs = np.ascontiguousarray(w.vectors, dtype="<f4")
        if dim is None or vecs.shape[1] != dim:
            raise IngestError("window vectors must have the chunk vectors' dimension", code="bad_vectors")
        rows += [(cid, n, s, e, dim, vecs[n].tobytes()) for n, (s, e) in enumerate(w.spans)]
    if not rows:  # most documents: every chunk is its own only window
        return
    if dialect(conn) == "postgres":
        pg_writes.insert_windows(conn, rows)
        return
    conn.executemany(
        "INSERT INTO chunk_windows (chunk_id, n, char_start, char_end, dim, vector) VALUES (?, ?, ?, ?, ?, ?)", rows
    )


def window_vectors(conn: Connection, chunk_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """chunk id -> (windows, dim) float32 array, for the given chunks that have windows."""
    found: dict[int, list[bytes]] = {}
    dims: dict[int, int] = {}
    for batch in in_batches(sorted({int(i) for i in chunk_ids})):
        for cid, dim, vec in conn.execute(
            f"SELECT chunk_id, dim, vector FROM chunk_windows WHERE chunk_id IN ({','.join('?' * len(batch))})"
            " ORDER BY chunk_id, n", tuple(batch)
        ):
            found.setdefault(cid, []).append(vec)
            dims[cid] = dim
    return {cid: np.frombuffer(b"".join(v), dtype="<f4").reshape(len(v), dims[cid]).astype(np.float32)
            for cid, v in found.items()}


def iter_vectors(
    conn: Connection, collection: str, *, ids: Sequence[int] | None = None, batch_size: int = 8192
) -> Iterator[VectorBatch]:
    """A collection's stored vectors in ascending chunk id order (all, or only `ids`), in batches.
    Either engine: Postgres' pgvector column (a `pgvector.Vector`) is packed the same way, float32 LE."""

    def raw(value) -> bytes:
        if isinstance(value, bytes):
            return value
        return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype="<f4").tobytes()

    def pack(rows: list[Row]) -> VectorBatch:
        dim = rows[0]["dim"]
        if any(r["dim"] != dim for r in rows):
            raise RagError("stored vectors of different dimensions in one collection", code="store_corrupt", status=500)
        vecs = np.frombuffer(b"".join(raw(r["vector"]) for r in rows), dtype="<f4").reshape(len(rows), dim)
        return VectorBatch(
            ids=np.fromiter((r["chunk_id"] for r in rows), np.int64, len(rows)),
            document_ids=np.fromiter((r["document_id"] for r in rows), np.int64, len(rows)),
            vectors=vecs.astype(np.float32, copy=False),
            model=rows[0]["model"],
        )

    base = (
        f"SELECT v.chunk_id, c.document_id, v.model, v.dim, {'v.embedding AS vector' if dialect(conn) == 'postgres' else 'v.vector'}"
        " FROM chunk_vectors v"
        " JOIN chunks c ON c.id = v.chunk_id WHERE c.collection = ?"
    )
    if ids is None:
        last = -1
        while True:
            rows = conn.execute(base + " AND c.id > ? ORDER BY c.id LIMIT ?", (collection, last, batch_size)).fetchall()
            if not rows:
                return
            yield pack(rows)
            last = rows[-1]["chunk_id"]
    else:
        wanted = sorted({int(i) for i in ids})
        for start in range(0, len(wanted), batch_size):
            rows: list[Row] = []
            for batch in in_batches(wanted[start : start + batch_size]):
                rows += conn.execute(
                    base + f" AND c.id IN ({','.join('?' * len(batch))}) ORDER BY c.id", (collection, *batch)
                ).fetchall()
            if rows:
                yield pack(rows)


def load_chunk_terms(
    conn: Connection, collection: str, analyzer: str, *, ids: Sequence[int] | None = None
) -> CachedTerms:
    """A collection's chunks (all, or only `ids`; ascending id) split into those with cached
    terms from `analyzer` (kept in the cache encoding) and those without (missing, or made by
    another analyzer version), which come with their text to analyse."""
    sql = (
        "SELECT c.id, t.terms, t.tfs, CASE WHEN t.analyzer IS ? THEN NULL ELSE c.text END AS text"
        " FROM chunks c LEFT JOIN chunk_terms t ON t.chunk_id = c.id AND t.analyzer = ?"
        " WHERE c.collection = ?"
    )

    def rows() -> Iterator[tuple]:
        if ids is None:
            yield from conn.execute(sql + " ORDER BY c.id", (analyzer, analyzer, collection))
            return
        for batch in in_batches(sorted({int(i) for i in ids})):
            yield from conn.execute(
                sql + f" AND c.id IN ({','.join('?' * len(batch))}) ORDER BY c.id",
                (analyzer, analyzer, collection, *batch),
            )

    out = CachedTerms([], [], [], [])
    for cid, terms, tfs, text in rows():
        if text is None:
            out.ids.append(cid)
            out.terms.append(terms)
            out.counts.append(tfs)
        else:
            out.missing.append((cid, text))
    return out


def save_chunk_terms(
    conn: Connection, analyzer: str, rows: Iterable[tuple[int, Sequence[str], Sequence[int]]]
) -> int:
    """Caches (chunk id, distinct terms, counts) rows; rows of chunks deleted meanwhile are skipped.
    Terms must not contain spaces (the analyzer guarantees it). Returns rows written."""

    def encode(row: tuple[int, Sequence[str], Sequence[int]]):
        cid, terms, counts = row
        counts_arr = np.minimum(np.asarray(counts, dtype=np.int64), 65535).astype("<u2")
        if len(terms) != len(counts_arr):
            raise ValueError("terms and counts differ in length")
        return (int(cid), analyzer, " ".join(terms), counts_arr.tobytes(), int(cid))

    if dialect(conn) == "postgres":  # BM25's statistics instead of a cache (`rag.store.pg_writes.save_postings`)
        with transaction(conn):
            return pg_writes.save_postings(conn, rows)
    with transaction(conn):
        return conn.executemany(
            "INSERT OR REPLACE INTO chunk_terms (chunk_id, analyzer, terms, tfs)"
            " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?)",
            (encode(r) for r in rows),
        ).rowcount
