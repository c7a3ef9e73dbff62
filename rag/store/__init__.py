"""The source of truth: SQLite (WAL), one module per table group, and the question ledger.

    from rag import store
    conn = store.open_db(settings.db_path)     # connect + apply pending migrations
    store.get_collection(conn, "default")

    db           connections, transactions, batching of `IN (...)` lists
    migrations   the one schema, as numbered migrations
    records      the dataclasses handed out and taken in (no SQL)
    collections  collections and their change sequence numbers
    jobs         ingestion jobs
    documents    documents and chunks; adding and deleting a document with all it owns
    vectors      chunk vectors, window vectors and cached lexical terms (indexes are rebuilt from them)
    ledger       questions and their model calls
    keys         API keys (hashes only), roles and grants
    files        atomic, durable file writes (uploads, index snapshots, prepared models)

Schema changes only through `rag.store.migrations.MIGRATIONS`.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from rag.errors import RagError

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
    list_documents,
)
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
from rag.store.keys import find_key, get_key, has_active_admin, insert_key, list_keys, revoke_key
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


def open_db(path: str | Path) -> sqlite3.Connection:
    """`connect(path)` and apply pending migrations (idempotent)."""
    conn = connect(path)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def check_database_url(url: str) -> str:
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise RagError("RAG_DATABASE_URL must be empty (the embedded SQLite store) or a postgresql:// URL",
                       code="invalid_setting", status=500)
    return url


def open_store(settings: Any) -> ThreadConnections | Any:
    """Per-thread connections to the configured store (`RAG_DATABASE_URL`: empty for SQLite under
    `data_dir`, or PostgreSQL), after applying its pending migrations once."""
    url = check_database_url(settings.database_url)
    if url:
        from rag.store import pg_schema
        from rag.store.pg import PgConnection, PgConnections

        with closing(PgConnection(url)) as conn:  # a connection made before the extension cannot use vectors
            pg_schema.migrate(conn)
        return PgConnections(url, ef_search=settings.pg_ef_search)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    open_db(settings.db_path).close()
    return ThreadConnections(settings.db_path)


def open_configured(settings: Any) -> Any:
    """One migrated connection to the configured store, for a command that needs no models; close it."""
    url = check_database_url(settings.database_url)
    if url:
        from rag.store import pg_schema
        from rag.store.pg import PgConnection

        with closing(PgConnection(url)) as conn:
            pg_schema.migrate(conn)
        return PgConnection(url, ef_search=settings.pg_ef_search)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return open_db(settings.db_path)


__all__ = [
    "COLLECTION_NAME_RE", "DEFAULT_COLLECTION", "FINISHED_JOB_STATUSES", "JOB_STATUSES",
    "AddedDocument", "CachedTerms", "CallSource", "ChunkContext", "ChunkRecord", "ChunkSource", "ChunkWindows", "CollectionRecord",
    "DeletedCollection", "DeletedDocument", "DocumentRecord", "IndexState", "InvalidName", "JobRecord", "KeyRecord", "NewDocument",
    "ThreadConnections", "VectorBatch",
    "add_document", "cancel_job", "change_seq", "count_queued_jobs", "chunk_context", "chunk_ids", "connect", "create_collection", "create_job", "delete_collection",
    "delete_document", "fail_unfinished_jobs", "find_document_by_sha", "find_key", "get_key", "has_active_admin",
    "insert_key", "list_keys", "revoke_key", "get_chunks", "get_collection",
    "get_document", "get_job", "index_state", "integrity_check", "iter_vectors", "list_chunks", "list_collections",
    "list_documents", "list_jobs", "open_configured", "open_store", "recent_job_seconds", "load_chunk_terms", "migrate", "open_db", "save_chunk_terms", "transaction",
    "update_job", "utcnow", "validate_collection_name", "window_vectors",
]
