"""The source of truth: SQLite (WAL) or PostgreSQL, one module per table group, and the question ledger.

    from rag import store
    conn = store.open_db(settings.db_path)     # SQLite: connect + apply pending migrations
    db = store.open_store(settings)            # the configured engine, migrated: per-thread connections
    store.get_collection(db.get(), "default")

The table modules are written once and run on both engines: they take a `Connection`
(`sqlite3.Connection`, or `rag.store.pg.PgConnection` with sqlite3's face) and write the SQL both
share; the few statements the engines spell differently are picked by `dialect.dialect(conn)`.

    engine       RAG_DATABASE_URL -> SQLite or Postgres; migrate, then open (`open_store`, `open_configured`)
    connection   the `Connection`/`Connections` protocols the table modules are typed with
    db           SQLite connections, transactions (both engines), batching of `IN (...)` lists
    migrations   SQLite's schema, as numbered migrations
    pg           a psycopg connection with the `Connection` face, per-thread Postgres connections
    pg_schema    Postgres' schema, as numbered migrations
    pg_jobs      the shared ingestion queue (Postgres only): payloads, leases, claims
    dialect      which engine a connection talks to
    records      the dataclasses handed out and taken in (no SQL)
    collections  collections and their change sequence numbers
    jobs         ingestion jobs
    documents    documents and chunks; adding and deleting a document with all it owns
    vectors      chunk vectors, window vectors and cached lexical terms (indexes are rebuilt from them)
    ledger       questions and their model calls
    conversations  a collection's conversations; their turns are ledger questions with a parent
    keys         API keys (hashes only), roles and grants
    files        atomic, durable file writes (uploads, index snapshots, prepared models)
    transfer     a collection's rows read out and written back with their ids (`rag export` / `rag import`)

Schema changes only through `rag.store.migrations.MIGRATIONS` and `rag.store.pg_schema.MIGRATIONS`.
"""

from __future__ import annotations

from rag.store.collections import (
    COLLECTION_NAME_RE,
    DEFAULT_COLLECTION,
    InvalidName,
    change_seq,
    create_collection,
    delete_collection,
    get_collection,
    index_state,
    list_collections,
    validate_collection_name,
)
from rag.store.connection import Connection, Connections, Row
from rag.store.db import ThreadConnections, connect, integrity_check, transaction, utcnow
from rag.store.documents import (
    add_document,
    chunk_context,
    chunk_ids,
    delete_document,
    find_document_by_sha,
    get_chunks,
    get_document,
    list_chunks,
    has_chunks,
    list_documents,
)
from rag.store.engine import Engine, StoreLocation, engine_of, open_configured, open_db, open_store
from rag.store.jobs import (
    FINISHED_JOB_STATUSES,
    JOB_STATUSES,
    cancel_job,
    count_queued_jobs,
    create_job,
    fail_unfinished_jobs,
    get_job,
    list_jobs,
    recent_job_seconds,
    update_job,
)
from rag.store.keys import find_key, first_active_admin, get_key, has_active_admin, insert_key, list_keys, revoke_key
from rag.store.migrations import migrate
from rag.store.records import (
    AddedDocument,
    CachedTerms,
    CallSource,
    ChunkContext,
    ChunkRecord,
    ChunkSource,
    ChunkWindows,
    CollectionRecord,
    DeletedCollection,
    DeletedDocument,
    DocumentRecord,
    IndexState,
    JobRecord,
    KeyRecord,
    NewDocument,
    VectorBatch,
)
from rag.store.vectors import iter_vectors, load_chunk_terms, save_chunk_terms, window_vectors


__all__ = [
    "COLLECTION_NAME_RE", "DEFAULT_COLLECTION", "FINISHED_JOB_STATUSES", "JOB_STATUSES",
    "AddedDocument", "CachedTerms", "CallSource", "ChunkContext", "ChunkRecord", "ChunkSource", "ChunkWindows", "CollectionRecord",
    "Connection", "Connections", "DeletedCollection", "DeletedDocument", "DocumentRecord", "Engine", "IndexState", "InvalidName", "JobRecord", "KeyRecord", "NewDocument",
    "Row", "StoreLocation", "ThreadConnections", "VectorBatch",
    "add_document", "cancel_job", "change_seq", "count_queued_jobs", "chunk_context", "chunk_ids", "connect", "create_collection", "create_job", "delete_collection",
    "delete_document", "engine_of", "fail_unfinished_jobs", "find_document_by_sha", "find_key", "first_active_admin", "get_key", "has_active_admin",
    "insert_key", "list_keys", "revoke_key", "get_chunks", "get_collection",
    "get_document", "get_job", "index_state", "integrity_check", "iter_vectors", "list_chunks", "list_collections",
    "has_chunks", "list_documents", "list_jobs", "open_configured", "open_store", "recent_job_seconds", "load_chunk_terms", "migrate", "open_db", "save_chunk_terms", "transaction",
    "update_job", "utcnow", "validate_collection_name", "window_vectors",
]
