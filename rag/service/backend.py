"""The store and the search index over it, opened together from settings: the backend choice, made once.

`RAG_DATABASE_URL` empty: SQLite under `data_dir` with `IndexManager` (FAISS + bm25s in memory,
repaired from SQLite at `open()`). A PostgreSQL URL: `PgConnections` with `PgIndex` (pgvector and
BM25 in SQL, nothing in memory), state shared with every other process on that database.
`rag.store.engine` recognises the URL and migrates; this module pairs the index with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.index.manager import IndexManager
from rag.index.search_index import SearchIndex
from rag.settings import Settings
from rag.store import Connections, StoreLocation


@dataclass(frozen=True)
class Backend:
    location: StoreLocation
    db: Connections
    index: SearchIndex  # not opened yet: `index.open()` does the start-up work and reports it

    @property
    def shared(self) -> bool:
        """State shared with other processes (Postgres): nothing to recover here, workers may run elsewhere."""
        return self.location.shared


def open_backend(settings: Settings, *, dim: int | None) -> Backend:
    """Migrates the configured store (once, before any other connection) and builds its index;
    `dim` is the embedder's, for Postgres' HNSW index."""
    location = StoreLocation.from_settings(settings)
    location.migrate()
    db = location.connections()
    if location.shared:
        from rag.index.pgsearch import PgIndex  # imports psycopg: only with Postgres

        return Backend(location, db, PgIndex(db, dim=dim))
    return Backend(location, db, IndexManager.from_settings(settings))
