"""The documents and chunks tables, and adding or deleting a document with everything it owns.

Writes run in one transaction (`BEGIN IMMEDIATE ... COMMIT`, or a SAVEPOINT when the caller already
opened one), so nothing half-written is ever visible to another connection.

Chunk ids are the FAISS ids. They come from an AUTOINCREMENT column, so they are never reused and
always grow: a later document's chunks have larger ids than an earlier one's.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np

from rag.errors import Conflict, IngestError, NotFound
from rag.store import pg_writes
from rag.store.connection import Connection, Row
from rag.store.collections import bump_seq, change_seq
from rag.store.dialect import dialect
from rag.store.db import in_batches, transaction, utcnow
from rag.store.jobs import FINISHED_JOB_STATUSES, finish_job, get_job
from rag.store.records import AddedDocument, ChunkContext, ChunkRecord, ChunkSource, ChunkWindows, DeletedDocument, DocumentRecord, NewDocument
from rag.store.vectors import insert_vectors, insert_windows, save_chunk_terms, validated_vectors

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")



def _document(row: Row) -> DocumentRecord:
    return DocumentRecord(
        id=row["id"],
        collection=row["collection"],
        filename=row["filename"],
        format=row["format"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        page_count=row["page_count"],
        title=row["title"],
        encoding=row["encoding"],
        chunk_count=row["chunk_count"],
        created_at=row["created_at"],
        status=row["status"],
        language=row["language"],
    )


def _chunk(row: Row) -> ChunkRecord:
    return ChunkRecord(
        id=row["id"],
        document_id=row["document_id"],
        collection=row["collection"],
        ordinal=row["ordinal"],
        text=row["text"],
        char_start=row["char_start"],
        char_end=row["char_end"],
        page=row["page"],
        section_path=tuple(json.loads(row["section_path"])),
        token_count=row["token_count"],
        prev_id=row["prev_id"],
        next_id=row["next_id"],
    )


def find_document_by_sha(conn: Connection, collection: str, sha256: str) -> DocumentRecord | None:
    row = conn.execute(
        "SELECT * FROM documents WHERE collection = ? AND sha256 = ?", (collection, sha256.lower())
    ).fetchone()
    return _document(row) if row else None


def get_document(conn: Connection, document_id: int, *, collection: str | None = None) -> DocumentRecord:
    """Raises `NotFound` if absent, or if `collection` is given and the document is in another one."""
    row = conn.execute("SELECT * FROM documents WHERE id = ?", (int(document_id),)).fetchone()
    if row is None or (collection is not None and row["collection"] != collection):
        raise NotFound(f"document {document_id} does not exist", code="document_not_found")
    return _document(row)


def has_chunks(conn: Connection, collection: str) -> bool:
    """Whether the collection holds anything to search (one indexed chunk is enough)."""
    return conn.execute("SELECT 1 FROM chunks WHERE collection = ? LIMIT 1", (collection,)).fetchone() is not None


def list_documents(
    conn: Connection, collection: str, *, limit: int | None = None, offset: int = 0
) -> list[DocumentRecord]:
    """Oldest first (by id)."""
    sql = "SELECT * FROM documents WHERE collection = ? ORDER BY id"
    args: list = [collection]
    if limit is not None:
        sql, args = sql + " LIMIT ?", [*args, int(limit)]
    if offset:
        sql, args = sql + (" OFFSET ?" if limit is not None else " LIMIT -1 OFFSET ?" if dialect(conn) == "sqlite"
                           else " OFFSET ?"), [*args, int(offset)]
    return [_document(r) for r in conn.execute(sql, args)]


def add_document(
    conn: Connection,
    collection: str,
    meta: NewDocument,
    chunks: Sequence[ChunkSource],
    vectors: np.ndarray,
    job_id: str | None = None,
    *,
    embed_model: str,
    terms: Sequence[tuple[Sequence[str], Sequence[int]]] | None = None,
    analyzer: str | None = None,
    windows: Sequence[ChunkWindows | None] | None = None,
) -> AddedDocument:
    """Stores a document with all its chunks and vectors in ONE transaction.

    In that transaction: the document row, its chunks in ordinal order with prev/next ids, one
    vector per chunk (row i of `vectors` belongs to `chunks[i]`), optionally the chunks' lexical
    terms (`terms[i]` = (distinct terms, counts) made by `analyzer`), optionally the chunks'
    sub-chunk windows (`windows[i]`, None for a chunk that is its own only window), the job (if given) set to
    `done` with the document id, and the collection's change_seq bumped. Any exception rolls all
    of it back; the job is then left as it was for the caller to fail.

    If the same bytes (sha256) are already in the collection nothing new is stored: the job is
    marked done pointing at the existing document (progress gets `"duplicate": true`) and the
    result has `duplicate=True`.

    The collection records the embedder of its vectors; adding vectors of another model or
    dimension raises `Conflict` (code `embedder_mismatch`).
    """
    sha = meta.sha256.lower()
    if not _SHA256_RE.match(sha):
        raise IngestError("sha256 must be 64 hex characters", code="bad_document")
    drafts = sorted(chunks, key=lambda c: c.ordinal)
    if len({c.ordinal for c in drafts}) != len(drafts):
        raise IngestError("chunk ordinals must be unique", code="bad_chunks")
    order = sorted(range(len(chunks)), key=lambda i: chunks[i].ordinal)
    vecs = validated_vectors(vectors, len(chunks))[order] if chunks else validated_vectors(vectors, 0)
    dim = int(vecs.shape[1]) if vecs.ndim == 2 and vecs.shape[0] else None
    if terms is not None:
        if len(terms) != len(chunks):
            raise IngestError("terms must have one entry per chunk", code="bad_chunks")
        if not analyzer:
            raise ValueError("analyzer is required with terms")
        terms = [terms[i] for i in order]
    if windows is not None:
        if len(windows) != len(chunks):
            raise IngestError("windows must have one entry per chunk", code="bad_chunks")
        windows = [windows[i] for i in order]

    with transaction(conn):
        coll = conn.execute(
            "SELECT name, embed_model, embed_dim FROM collections WHERE name = ?", (collection,)
        ).fetchone()
        if coll is None:
            raise NotFound(f"collection {collection!r} does not exist", code="collection_not_found")
        job = None
        if job_id is not None:
            job = get_job(conn, job_id, lock=True)
            if job.collection != collection:
                raise Conflict(f"job {job_id} belongs to collection {job.collection!r}", code="job_collection_mismatch")
            if job.status in FINISHED_JOB_STATUSES:
                raise Conflict(f"job {job_id} is already {job.status}", code="job_finished")

        existing = find_document_by_sha(conn, collection, sha)
        if existing is not None:
            if job is not None:
                finish_job(conn, job, existing.id, duplicate=True)
            return AddedDocument(existing, (), change_seq(conn, collection), duplicate=True)

        if dim is not None and coll["embed_model"] is not None:
            if coll["embed_model"] != embed_model or coll["embed_dim"] != dim:
                raise Conflict(
                    f"collection {collection!r} holds vectors of {coll['embed_model']} (dim {coll['embed_dim']}); "
                    f"got {embed_model} (dim {dim}). Re-index the collection or use another one.",
                    code="embedder_mismatch",
                )
        now = utcnow()
        row = (collection, meta.filename, meta.format, sha, int(meta.size_bytes), int(meta.page_count or 0),
               meta.title, meta.encoding, meta.language, len(drafts), now)
        try:
            # A savepoint: with several workers (Postgres) a twin upload committed since the check above
            # surfaces here as a unique violation, and this job then ends as its duplicate.
            with transaction(conn):
                doc_id = int(conn.execute(
                    "INSERT INTO documents (collection, filename, format, sha256, size_bytes, page_count, title,"
                    " encoding, language, chunk_count, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    row).fetchone()[0])
        except sqlite3.IntegrityError:
            twin = find_document_by_sha(conn, collection, sha)
            if twin is None:
                raise
            if job is not None:
                finish_job(conn, job, twin.id, duplicate=True)
            return AddedDocument(twin, (), change_seq(conn, collection), duplicate=True)
        chunk_ids = _insert_chunks(conn, collection, doc_id, drafts)
        insert_vectors(conn, chunk_ids, vecs, embed_model)
        if windows is not None:
            insert_windows(conn, chunk_ids, windows, dim)
        if terms is not None:
            save_chunk_terms(conn, analyzer, zip(chunk_ids, (t[0] for t in terms), (t[1] for t in terms)))
        if dim is not None and coll["embed_model"] is None:
            conn.execute(
                "UPDATE collections SET embed_model = ?, embed_dim = ? WHERE name = ?", (embed_model, dim, collection)
            )
        seq = bump_seq(conn, collection)
        if job is not None:
            finish_job(conn, job, doc_id, duplicate=False)
        return AddedDocument(get_document(conn, doc_id), tuple(chunk_ids), seq, duplicate=False)


def _insert_chunks(conn: Connection, collection: str, doc_id: int, drafts: Sequence[ChunkSource]) -> list[int]:
    """Writes the chunks (in ordinal order) with their prev/next ids; returns their ids in that order."""
    if dialect(conn) == "postgres":  # one COPY, ids drawn first (`rag.store.pg_writes`)
        return pg_writes.insert_chunks(conn, collection, doc_id, drafts)
    conn.executemany(
        "INSERT INTO chunks (document_id, collection, ordinal, text, char_start, char_end, page,"
        " section_path, token_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                doc_id,
                collection,
                int(c.ordinal),
                c.text,
                int(c.char_start),
                int(c.char_end),
                None if c.page is None else int(c.page),
                json.dumps(list(c.section_path), ensure_ascii=False),
                int(c.token_count),
            )
            for c in drafts
        ),
    )
    ids = [r[0] for r in conn.execute("SELECT id FROM chunks WHERE document_id = ? ORDER BY ordinal", (doc_id,))]
    if len(ids) > 1:
        conn.executemany(
            "UPDATE chunks SET prev_id = ?, next_id = ? WHERE id = ?",
            ((ids[i - 1] if i else None, ids[i + 1] if i + 1 < len(ids) else None, ids[i]) for i in range(len(ids))),
        )
    return ids


def delete_document(conn: Connection, document_id: int, *, collection: str | None = None) -> DeletedDocument:
    """Deletes a document, its chunks, vectors and cached terms in one transaction and bumps the
    collection's change_seq. When the collection becomes empty its embedder is forgotten, so the
    next document may use another one."""
    with transaction(conn):
        doc = get_document(conn, document_id, collection=collection)
        ids = tuple(
            r[0] for r in conn.execute("SELECT id FROM chunks WHERE document_id = ? ORDER BY id", (doc.id,))
        )
        if dialect(conn) == "postgres":  # BM25's collection statistics (rag.store.pg_schema) lose its chunks
            conn.execute(
                "UPDATE collections SET lex_chunks = lex_chunks - s.n, lex_terms = lex_terms - s.total FROM"
                " (SELECT count(*) AS n, coalesce(sum(term_total), 0) AS total FROM chunks"
                "  WHERE document_id = ? AND term_total IS NOT NULL) s WHERE name = ?", (doc.id, doc.collection))
        conn.execute("DELETE FROM documents WHERE id = ?", (doc.id,))
        seq = bump_seq(conn, doc.collection)
        conn.execute(
            "UPDATE collections SET embed_model = NULL, embed_dim = NULL WHERE name = ?"
            " AND NOT EXISTS (SELECT 1 FROM chunks WHERE collection = ?)",
            (doc.collection, doc.collection),
        )
    return DeletedDocument(doc, ids, seq)


def list_chunks(conn: Connection, document_id: int) -> list[ChunkRecord]:
    """A document's chunks in ordinal order."""
    return [_chunk(r) for r in conn.execute("SELECT * FROM chunks WHERE document_id = ? ORDER BY ordinal", (document_id,))]


def get_chunks(conn: Connection, ids: Iterable[int]) -> list[ChunkRecord]:
    """Chunks by id, in the order asked; ids that do not exist (deleted) are skipped."""
    wanted = [int(i) for i in ids]
    found: dict[int, ChunkRecord] = {}
    for batch in in_batches(sorted(set(wanted))):
        sql = f"SELECT * FROM chunks WHERE id IN ({','.join('?' * len(batch))})"
        for r in conn.execute(sql, tuple(batch)):
            found[r["id"]] = _chunk(r)
    return [found[i] for i in wanted if i in found]


def chunk_context(conn: Connection, chunk_id: int, *, collection: str, neighbours: int) -> ChunkContext:
    """A chunk of `collection` with up to `neighbours` chunks of its document on each side, read in one
    snapshot. Raises `NotFound` (code `chunk_not_found`) when the chunk is absent or in another collection."""
    n = max(0, int(neighbours))
    with transaction(conn, immediate=False):
        row = conn.execute("SELECT * FROM chunks WHERE id = ?", (int(chunk_id),)).fetchone()
        if row is None or row["collection"] != collection:
            raise NotFound(f"chunk {chunk_id} does not exist", code="chunk_not_found")
        chunk = _chunk(row)
        before = conn.execute(
            "SELECT * FROM chunks WHERE document_id = ? AND ordinal < ? ORDER BY ordinal DESC LIMIT ?",
            (chunk.document_id, chunk.ordinal, n),
        ).fetchall()
        after = conn.execute(
            "SELECT * FROM chunks WHERE document_id = ? AND ordinal > ? ORDER BY ordinal LIMIT ?",
            (chunk.document_id, chunk.ordinal, n),
        ).fetchall()
        return ChunkContext(chunk, tuple(_chunk(r) for r in reversed(before)), tuple(_chunk(r) for r in after),
                            get_document(conn, chunk.document_id))


def chunk_ids(conn: Connection, collection: str) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids ascending, their document ids) of a collection, as int64 arrays."""
    rows = conn.execute("SELECT id, document_id FROM chunks WHERE collection = ? ORDER BY id", (collection,)).fetchall()
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.asarray(rows, dtype=np.int64)
    return arr[:, 0].copy(), arr[:, 1].copy()

