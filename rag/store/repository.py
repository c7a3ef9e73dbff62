"""Typed access to the source of truth: collections, documents, chunks, vectors, ingestion jobs.

All functions take an open connection (`rag.store.connect`). Functions that write run in one
transaction (`BEGIN IMMEDIATE ... COMMIT`, or a SAVEPOINT when the caller already opened one), so
nothing half-written is ever visible to another connection.

Chunk ids are the FAISS ids. They come from an AUTOINCREMENT column, so they are never reused and
always grow: a later document's chunks have larger ids than an earlier one's.

`collections.change_seq` is bumped in the same transaction as every document add and delete; it
is what derived indexes (`rag.index`) record to know which changes they include.

Deleting a collection deletes its documents, chunks, vectors and cached terms. Its ingestion jobs
are kept as history (jobs have no foreign keys): unfinished ones are marked failed with code
`collection_deleted`, so a client polling a job id always gets an answer.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ingest.types import ChunkDraft
from rag.errors import Conflict, IngestError, NotFound, RagError
from rag.index.windows import ChunkWindows
from rag.store.db import transaction, utcnow

DEFAULT_COLLECTION = "default"
COLLECTION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
JobStatus = Literal["queued", "running", "done", "failed"]
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed")
FINISHED_JOB_STATUSES: tuple[str, ...] = ("done", "failed")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_IN_BATCH = 500  # stays under SQLite's variable limit on old builds (999)


# --------------------------------------------------------------------------- records


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
class NewDocument:
    """What the pipeline knows about an upload before it is stored."""

    filename: str
    format: str
    sha256: str  # of the original bytes, lowercase hex
    size_bytes: int
    page_count: int = 0
    title: str | None = None
    encoding: str | None = None


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


class InvalidName(RagError):
    code = "invalid_collection_name"
    status = 400


# --------------------------------------------------------------------------- helpers


def _collection(row: sqlite3.Row) -> CollectionRecord:
    return CollectionRecord(
        name=row["name"],
        uid=row["uid"],
        description=row["description"],
        created_at=row["created_at"],
        change_seq=row["change_seq"],
        embed_model=row["embed_model"],
        embed_dim=row["embed_dim"],
        document_count=row["document_count"],
        chunk_count=row["chunk_count"],
    )


_COLLECTION_SELECT = """
SELECT c.*,
       (SELECT count(*) FROM documents d WHERE d.collection = c.name) AS document_count,
       (SELECT count(*) FROM chunks k WHERE k.collection = c.name) AS chunk_count
FROM collections c
"""


def _document(row: sqlite3.Row) -> DocumentRecord:
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
    )


def _chunk(row: sqlite3.Row) -> ChunkRecord:
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


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        collection=row["collection"],
        filename=row["filename"],
        status=row["status"],
        document_id=row["document_id"],
        progress=json.loads(row["progress"]),
        error_code=row["error_code"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _batches(items: Sequence[int], size: int = _IN_BATCH) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _bump_seq(conn: sqlite3.Connection, collection: str) -> int:
    conn.execute("UPDATE collections SET change_seq = change_seq + 1 WHERE name = ?", (collection,))
    return int(conn.execute("SELECT change_seq FROM collections WHERE name = ?", (collection,)).fetchone()[0])


# --------------------------------------------------------------------------- collections


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not COLLECTION_NAME_RE.match(name):
        raise InvalidName(
            f"invalid collection name {name!r}: 1-64 characters, letters, digits, '_', '-', '.', "
            "starting with a letter or digit"
        )
    return name


def create_collection(conn: sqlite3.Connection, name: str, description: str = "") -> CollectionRecord:
    """Creates an empty collection. Raises `Conflict` (code `collection_exists`) if the name is taken."""
    validate_collection_name(name)
    with transaction(conn):
        try:
            conn.execute(
                "INSERT INTO collections (name, uid, description, created_at) VALUES (?, ?, ?, ?)",
                (name, uuid.uuid4().hex, description, utcnow()),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"collection {name!r} already exists", code="collection_exists") from None
        return get_collection(conn, name)


def get_collection(conn: sqlite3.Connection, name: str) -> CollectionRecord:
    row = conn.execute(_COLLECTION_SELECT + " WHERE c.name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"collection {name!r} does not exist", code="collection_not_found")
    return _collection(row)


def list_collections(conn: sqlite3.Connection) -> list[CollectionRecord]:
    return [_collection(r) for r in conn.execute(_COLLECTION_SELECT + " ORDER BY c.name")]


def change_seq(conn: sqlite3.Connection, collection: str) -> int:
    row = conn.execute("SELECT change_seq FROM collections WHERE name = ?", (collection,)).fetchone()
    if row is None:
        raise NotFound(f"collection {collection!r} does not exist", code="collection_not_found")
    return int(row[0])


def delete_collection(conn: sqlite3.Connection, name: str) -> DeletedCollection:
    """Deletes a collection with all its documents, chunks, vectors and cached terms, in one
    transaction. Its jobs stay (history); unfinished ones become failed/`collection_deleted`.
    The `default` collection cannot be deleted (`Conflict`, code `collection_protected`); delete
    its documents instead. The caller removes the index files (see `IndexManager.delete_collection`).
    """
    if name == DEFAULT_COLLECTION:
        raise Conflict("the default collection cannot be deleted", code="collection_protected")
    with transaction(conn):
        record = get_collection(conn, name)
        now = utcnow()
        failed = conn.execute(
            "UPDATE ingestion_jobs SET status = 'failed', error_code = 'collection_deleted',"
            " error_message = 'The collection was deleted before the job finished.',"
            " updated_at = ?, finished_at = ? WHERE collection = ? AND status IN ('queued', 'running')",
            (now, now, name),
        ).rowcount
        conn.execute("DELETE FROM collections WHERE name = ?", (name,))
    return DeletedCollection(
        collection=record,
        document_count=record.document_count,
        chunk_count=record.chunk_count,
        failed_jobs=failed,
    )


# --------------------------------------------------------------------------- jobs


def create_job(
    conn: sqlite3.Connection,
    collection: str,
    filename: str,
    *,
    job_id: str | None = None,
    progress: dict[str, Any] | None = None,
) -> JobRecord:
    """Creates a `queued` job (id: a random uuid4 unless given). The collection must exist."""
    job_id = job_id or str(uuid.uuid4())
    now = utcnow()
    with transaction(conn):
        get_collection(conn, collection)
        try:
            conn.execute(
                "INSERT INTO ingestion_jobs (id, collection, filename, status, progress, created_at, updated_at)"
                " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (job_id, collection, filename, json.dumps(progress or {}), now, now),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"job {job_id!r} already exists", code="job_exists") from None
        return get_job(conn, job_id)


def get_job(conn: sqlite3.Connection, job_id: str) -> JobRecord:
    row = conn.execute("SELECT * FROM ingestion_jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"job {job_id!r} does not exist", code="job_not_found")
    return _job(row)


def list_jobs(
    conn: sqlite3.Connection,
    collection: str | None = None,
    *,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[JobRecord]:
    """Newest first."""
    where, args = [], []
    if collection is not None:
        where.append("collection = ?")
        args.append(collection)
    if status is not None:
        where.append("status = ?")
        args.append(status)
    sql = "SELECT * FROM ingestion_jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
    return [_job(r) for r in conn.execute(sql, (*args, int(limit), int(offset)))]


def update_job(
    conn: sqlite3.Connection,
    job_id: str,
    *,
    status: JobStatus | None = None,
    progress: dict[str, Any] | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    document_id: int | None = None,
) -> JobRecord:
    """Updates a job. `progress` replaces the stored JSON. Moving to `running` sets started_at,
    to `done`/`failed` sets finished_at. A finished job cannot change (`Conflict`, `job_finished`).
    Successful completion with a document normally happens inside `add_document`."""
    if status is not None and status not in JOB_STATUSES:
        raise ValueError(f"invalid job status {status!r}")
    with transaction(conn):
        job = get_job(conn, job_id)
        if job.status in FINISHED_JOB_STATUSES:
            raise Conflict(f"job {job_id} is already {job.status}", code="job_finished")
        now = utcnow()
        sets, args = ["updated_at = ?"], [now]
        if status is not None:
            sets.append("status = ?")
            args.append(status)
            if status == "running" and job.started_at is None:
                sets.append("started_at = ?")
                args.append(now)
            if status in FINISHED_JOB_STATUSES:
                sets.append("finished_at = ?")
                args.append(now)
        if progress is not None:
            sets.append("progress = ?")
            args.append(json.dumps(progress))
        if error_code is not None:
            sets.append("error_code = ?")
            args.append(error_code)
        if error_message is not None:
            sets.append("error_message = ?")
            args.append(error_message)
        if document_id is not None:
            sets.append("document_id = ?")
            args.append(int(document_id))
        conn.execute(f"UPDATE ingestion_jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))
        return get_job(conn, job_id)


def fail_unfinished_jobs(
    conn: sqlite3.Connection,
    *,
    code: str = "interrupted",
    message: str = "The service stopped before the job finished; upload the file again.",
) -> int:
    """Start-up: jobs left `queued`/`running` by a crash or stop become `failed` with `code`.
    Their document was never committed (adding is one transaction), so nothing else needs undoing.
    Returns how many jobs changed."""
    now = utcnow()
    with transaction(conn):
        return conn.execute(
            "UPDATE ingestion_jobs SET status = 'failed', error_code = ?, error_message = ?,"
            " updated_at = ?, finished_at = ? WHERE status IN ('queued', 'running')",
            (code, message, now, now),
        ).rowcount


# --------------------------------------------------------------------------- documents


def find_document_by_sha(conn: sqlite3.Connection, collection: str, sha256: str) -> DocumentRecord | None:
    row = conn.execute(
        "SELECT * FROM documents WHERE collection = ? AND sha256 = ?", (collection, sha256.lower())
    ).fetchone()
    return _document(row) if row else None


def get_document(conn: sqlite3.Connection, document_id: int, *, collection: str | None = None) -> DocumentRecord:
    """Raises `NotFound` if absent, or if `collection` is given and the document is in another one."""
    row = conn.execute("SELECT * FROM documents WHERE id = ?", (int(document_id),)).fetchone()
    if row is None or (collection is not None and row["collection"] != collection):
        raise NotFound(f"document {document_id} does not exist", code="document_not_found")
    return _document(row)


def list_documents(
    conn: sqlite3.Connection, collection: str, *, limit: int | None = None, offset: int = 0
) -> list[DocumentRecord]:
    """Oldest first (by id)."""
    sql = "SELECT * FROM documents WHERE collection = ? ORDER BY id LIMIT ? OFFSET ?"
    return [_document(r) for r in conn.execute(sql, (collection, -1 if limit is None else int(limit), int(offset)))]


def _validated_vectors(vectors: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(vectors)
    if n == 0 and arr.size == 0:
        return np.zeros((0, arr.shape[-1] if arr.ndim == 2 else 0), dtype="<f4")
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0:
        raise IngestError(f"expected vectors of shape ({n}, dim), got {arr.shape}", code="bad_vectors")
    arr = np.ascontiguousarray(arr, dtype="<f4")
    if not np.isfinite(arr).all():
        raise IngestError("vectors contain NaN or infinity", code="bad_vectors")
    return arr


def add_document(
    conn: sqlite3.Connection,
    collection: str,
    meta: NewDocument,
    chunks: Sequence[ChunkDraft],
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
    vecs = _validated_vectors(vectors, len(chunks))[order] if chunks else _validated_vectors(vectors, 0)
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
            job = get_job(conn, job_id)
            if job.collection != collection:
                raise Conflict(f"job {job_id} belongs to collection {job.collection!r}", code="job_collection_mismatch")
            if job.status in FINISHED_JOB_STATUSES:
                raise Conflict(f"job {job_id} is already {job.status}", code="job_finished")

        existing = find_document_by_sha(conn, collection, sha)
        if existing is not None:
            if job is not None:
                _finish_job(conn, job, existing.id, duplicate=True)
            return AddedDocument(existing, (), change_seq(conn, collection), duplicate=True)

        if dim is not None and coll["embed_model"] is not None:
            if coll["embed_model"] != embed_model or coll["embed_dim"] != dim:
                raise Conflict(
                    f"collection {collection!r} holds vectors of {coll['embed_model']} (dim {coll['embed_dim']}); "
                    f"got {embed_model} (dim {dim}). Re-index the collection or use another one.",
                    code="embedder_mismatch",
                )
        now = utcnow()
        cur = conn.execute(
            "INSERT INTO documents (collection, filename, format, sha256, size_bytes, page_count, title,"
            " encoding, chunk_count, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                collection,
                meta.filename,
                meta.format,
                sha,
                int(meta.size_bytes),
                int(meta.page_count or 0),
                meta.title,
                meta.encoding,
                len(drafts),
                now,
            ),
        )
        doc_id = int(cur.lastrowid)
        chunk_ids = _insert_chunks(conn, collection, doc_id, drafts)
        _insert_vectors(conn, chunk_ids, vecs, embed_model)
        if windows is not None:
            _insert_windows(conn, chunk_ids, windows, dim)
        if terms is not None:
            save_chunk_terms(conn, analyzer, zip(chunk_ids, (t[0] for t in terms), (t[1] for t in terms)))
        if dim is not None and coll["embed_model"] is None:
            conn.execute(
                "UPDATE collections SET embed_model = ?, embed_dim = ? WHERE name = ?", (embed_model, dim, collection)
            )
        seq = _bump_seq(conn, collection)
        if job is not None:
            _finish_job(conn, job, doc_id, duplicate=False)
        return AddedDocument(get_document(conn, doc_id), tuple(chunk_ids), seq, duplicate=False)


def _finish_job(conn: sqlite3.Connection, job: JobRecord, document_id: int, *, duplicate: bool) -> None:
    now = utcnow()
    progress = {**job.progress, "stage": "done", "fraction": 1.0}
    if duplicate:
        progress["duplicate"] = True
    conn.execute(
        "UPDATE ingestion_jobs SET status = 'done', document_id = ?, progress = ?, updated_at = ?,"
        " finished_at = ?, started_at = coalesce(started_at, ?) WHERE id = ?",
        (document_id, json.dumps(progress), now, now, now, job.id),
    )


def _insert_chunks(conn: sqlite3.Connection, collection: str, doc_id: int, drafts: Sequence[ChunkDraft]) -> list[int]:
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


def _insert_vectors(conn: sqlite3.Connection, chunk_ids: Sequence[int], vecs: np.ndarray, model: str) -> None:
    if not len(chunk_ids):
        return
    dim = int(vecs.shape[1])
    conn.executemany(
        "INSERT INTO chunk_vectors (chunk_id, model, dim, vector) VALUES (?, ?, ?, ?)",
        ((cid, model, dim, vecs[i].tobytes()) for i, cid in enumerate(chunk_ids)),
    )


def _insert_windows(
    conn: sqlite3.Connection, chunk_ids: Sequence[int], windows: Sequence[ChunkWindows | None], dim: int | None
) -> None:
    rows = []
    for cid, w in zip(chunk_ids, windows):
        if w is None:
            continue
        vecs = np.ascontiguousarray(w.vectors, dtype="<f4")
        if dim is None or vecs.shape[1] != dim:
            raise IngestError("window vectors must have the chunk vectors' dimension", code="bad_vectors")
        rows += [(cid, n, s, e, dim, vecs[n].tobytes()) for n, (s, e) in enumerate(w.spans)]
    conn.executemany(
        "INSERT INTO chunk_windows (chunk_id, n, char_start, char_end, dim, vector) VALUES (?, ?, ?, ?, ?, ?)", rows
    )


def window_vectors(conn: sqlite3.Connection, chunk_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """chunk id -> (windows, dim) float32 array, for the given chunks that have windows."""
    found: dict[int, list[bytes]] = {}
    dims: dict[int, int] = {}
    for batch in _batches(sorted({int(i) for i in chunk_ids})):
        for cid, dim, vec in conn.execute(
            f"SELECT chunk_id, dim, vector FROM chunk_windows WHERE chunk_id IN ({','.join('?' * len(batch))})"
            " ORDER BY chunk_id, n", tuple(batch)
        ):
            found.setdefault(cid, []).append(vec)
            dims[cid] = dim
    return {cid: np.frombuffer(b"".join(v), dtype="<f4").reshape(len(v), dims[cid]).astype(np.float32)
            for cid, v in found.items()}


def delete_document(conn: sqlite3.Connection, document_id: int, *, collection: str | None = None) -> DeletedDocument:
    """Deletes a document, its chunks, vectors and cached terms in one transaction and bumps the
    collection's change_seq. When the collection becomes empty its embedder is forgotten, so the
    next document may use another one."""
    with transaction(conn):
        doc = get_document(conn, document_id, collection=collection)
        ids = tuple(
            r[0] for r in conn.execute("SELECT id FROM chunks WHERE document_id = ? ORDER BY id", (doc.id,))
        )
        conn.execute("DELETE FROM documents WHERE id = ?", (doc.id,))
        seq = _bump_seq(conn, doc.collection)
        conn.execute(
            "UPDATE collections SET embed_model = NULL, embed_dim = NULL WHERE name = ?"
            " AND NOT EXISTS (SELECT 1 FROM chunks WHERE collection = ?)",
            (doc.collection, doc.collection),
        )
    return DeletedDocument(doc, ids, seq)


# --------------------------------------------------------------------------- chunks


def list_chunks(conn: sqlite3.Connection, document_id: int) -> list[ChunkRecord]:
    """A document's chunks in ordinal order."""
    return [_chunk(r) for r in conn.execute("SELECT * FROM chunks WHERE document_id = ? ORDER BY ordinal", (document_id,))]


def get_chunks(conn: sqlite3.Connection, ids: Iterable[int]) -> list[ChunkRecord]:
    """Chunks by id, in the order asked; ids that do not exist (deleted) are skipped."""
    wanted = [int(i) for i in ids]
    found: dict[int, ChunkRecord] = {}
    for batch in _batches(sorted(set(wanted))):
        sql = f"SELECT * FROM chunks WHERE id IN ({','.join('?' * len(batch))})"
        for r in conn.execute(sql, tuple(batch)):
            found[r["id"]] = _chunk(r)
    return [found[i] for i in wanted if i in found]


def neighbours(conn: sqlite3.Connection, chunk_id: int, *, before: int = 1, after: int = 1) -> list[ChunkRecord]:
    """The chunk with up to `before` chunks preceding it and `after` following it in its
    document, in document order (follows prev_id/next_id). Empty if the chunk does not exist."""
    row = conn.execute("SELECT * FROM chunks WHERE id = ?", (int(chunk_id),)).fetchone()
    if row is None:
        return []
    centre = _chunk(row)
    prev: list[ChunkRecord] = []
    cur = centre
    while len(prev) < before and cur.prev_id is not None:
        r = conn.execute("SELECT * FROM chunks WHERE id = ?", (cur.prev_id,)).fetchone()
        if r is None:
            break
        cur = _chunk(r)
        prev.append(cur)
    nxt: list[ChunkRecord] = []
    cur = centre
    while len(nxt) < after and cur.next_id is not None:
        r = conn.execute("SELECT * FROM chunks WHERE id = ?", (cur.next_id,)).fetchone()
        if r is None:
            break
        cur = _chunk(r)
        nxt.append(cur)
    return [*reversed(prev), centre, *nxt]


def chunk_ids(conn: sqlite3.Connection, collection: str) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids ascending, their document ids) of a collection, as int64 arrays."""
    rows = conn.execute("SELECT id, document_id FROM chunks WHERE collection = ? ORDER BY id", (collection,)).fetchall()
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.asarray(rows, dtype=np.int64)
    return arr[:, 0].copy(), arr[:, 1].copy()


def iter_vectors(
    conn: sqlite3.Connection, collection: str, *, ids: Sequence[int] | None = None, batch_size: int = 8192
) -> Iterator[VectorBatch]:
    """A collection's stored vectors in ascending chunk id order (all, or only `ids`), in batches."""

    def pack(rows: list[sqlite3.Row]) -> VectorBatch:
        dim = rows[0]["dim"]
        if any(r["dim"] != dim for r in rows):
            raise RagError("stored vectors of different dimensions in one collection", code="store_corrupt", status=500)
        vecs = np.frombuffer(b"".join(r["vector"] for r in rows), dtype="<f4").reshape(len(rows), dim)
        return VectorBatch(
            ids=np.fromiter((r["chunk_id"] for r in rows), np.int64, len(rows)),
            document_ids=np.fromiter((r["document_id"] for r in rows), np.int64, len(rows)),
            vectors=vecs.astype(np.float32, copy=False),
            model=rows[0]["model"],
        )

    base = (
        "SELECT v.chunk_id, c.document_id, v.model, v.dim, v.vector FROM chunk_vectors v"
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
            rows: list[sqlite3.Row] = []
            for batch in _batches(wanted[start : start + batch_size]):
                rows += conn.execute(
                    base + f" AND c.id IN ({','.join('?' * len(batch))}) ORDER BY c.id", (collection, *batch)
                ).fetchall()
            if rows:
                yield pack(rows)


def chunk_texts(
    conn: sqlite3.Connection, collection: str, *, ids: Sequence[int] | None = None
) -> Iterator[tuple[int, str]]:
    """(chunk id, text) of a collection's chunks (all, or only `ids`), ascending id."""
    if ids is None:
        yield from ((r[0], r[1]) for r in conn.execute(
            "SELECT id, text FROM chunks WHERE collection = ? ORDER BY id", (collection,)
        ))
        return
    wanted = sorted({int(i) for i in ids})
    for batch in _batches(wanted):
        yield from ((r[0], r[1]) for r in conn.execute(
            f"SELECT id, text FROM chunks WHERE collection = ? AND id IN ({','.join('?' * len(batch))}) ORDER BY id",
            (collection, *batch),
        ))


def load_chunk_terms(
    conn: sqlite3.Connection, collection: str, analyzer: str, *, ids: Sequence[int] | None = None
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
        for batch in _batches(sorted({int(i) for i in ids})):
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
    conn: sqlite3.Connection, analyzer: str, rows: Iterable[tuple[int, Sequence[str], Sequence[int]]]
) -> int:
    """Caches (chunk id, distinct terms, counts) rows; rows of chunks deleted meanwhile are skipped.
    Terms must not contain spaces (the analyzer guarantees it). Returns rows written."""

    def encode(row: tuple[int, Sequence[str], Sequence[int]]):
        cid, terms, counts = row
        counts_arr = np.minimum(np.asarray(counts, dtype=np.int64), 65535).astype("<u2")
        if len(terms) != len(counts_arr):
            raise ValueError("terms and counts differ in length")
        return (int(cid), analyzer, " ".join(terms), counts_arr.tobytes(), int(cid))

    with transaction(conn):
        return conn.executemany(
            "INSERT OR REPLACE INTO chunk_terms (chunk_id, analyzer, terms, tfs)"
            " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?)",
            (encode(r) for r in rows),
        ).rowcount
