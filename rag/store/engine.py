"""Which engine holds the store, and opening it: the one place `RAG_DATABASE_URL` is read.

Empty: SQLite under `data_dir` (`rag.sqlite3`, this process only). A `postgresql://` (or
`postgres://`) URL: PostgreSQL, shared by every `rag serve` and `rag worker` pointed at it. Anything
else is refused at start-up (500 `invalid_setting`) rather than taken for SQLite.

Opening always migrates first, once, before any other connection is made: a Postgres connection
made before migration 1 created the `vector` extension could not use vectors.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from rag.errors import RagError
from rag.store.connection import Connection, Connections
from rag.store.db import ThreadConnections, connect
from rag.store.migrations import migrate

Engine = Literal["sqlite", "postgres"]


class StoreSettings(Protocol):
    """The settings the store reads (`rag.settings.Settings` has them)."""

    @property
    def database_url(self) -> str: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def db_path(self) -> Path: ...

    @property
    def pg_ef_search(self) -> int: ...


def engine_of(url: str) -> Engine:
    """`sqlite` for an empty URL, `postgres` for a PostgreSQL one; any other URL is a setting error."""
    if not url:
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgres"
    raise RagError("RAG_DATABASE_URL must be empty (the embedded SQLite store) or a postgresql:// URL",
                   code="invalid_setting", status=500)


def open_db(path: str | Path) -> sqlite3.Connection:
    """`connect(path)` and apply pending migrations (idempotent)."""
    conn = connect(path)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass(frozen=True)
class StoreLocation:
    """Where the configured store is, and how to open it."""

    engine: Engine
    url: str  # Postgres; "" for SQLite
    path: Path  # SQLite's file; unused with Postgres
    ef_search: int  # Postgres: pgvector's hnsw.ef_search on every connection

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> StoreLocation:
        return cls(engine_of(settings.database_url), settings.database_url, settings.db_path, settings.pg_ef_search)

    @property
    def shared(self) -> bool:
        """State shared with other processes (Postgres): nothing in this process to recover at start."""
        return self.engine == "postgres"

    def migrate(self) -> None:
        """Applies the engine's pending migrations (idempotent; safe from several processes at once)."""
        if self.shared:
            from rag.store import pg_schema
            from rag.store.pg import PgConnection

            with closing(PgConnection(self.url)) as conn:
                pg_schema.migrate(conn)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        open_db(self.path).close()

    def connect(self) -> Connection:
        """One new connection; its caller closes it."""
        if self.shared:
            from rag.store.pg import PgConnection

            return PgConnection(self.url, ef_search=self.ef_search)
        return connect(self.path)

    def connections(self) -> Connections:
        """One connection per thread, opened as threads ask (`Connections.get`)."""
        if self.shared:
            from rag.store.pg import PgConnections

            return PgConnections(self.url, ef_search=self.ef_search)
        return ThreadConnections(self.path)


def open_store(settings: StoreSettings) -> Connections:
    """Per-thread connections to the configured store, after applying its pending migrations once."""
    location = StoreLocation.from_settings(settings)
    location.migrate()
    return location.connections()


def open_configured(settings: StoreSettings) -> Connection:
    """One migrated connection to the configured store, for a command that needs no models; close it."""
    location = StoreLocation.from_settings(settings)
    location.migrate()
    return location.connect()
