"""The source of truth: SQLite (WAL) with collections, documents, chunks, vectors, jobs, and the
question ledger (`ledger`).

    from rag.store import open_db, repository as repo
    conn = open_db(settings.db_path)          # connect + apply pending migrations

Schema changes only through `rag.store.migrations.MIGRATIONS`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rag.store.db import ThreadConnections, connect, integrity_check, transaction, utcnow
from rag.store.migrations import migrate


def open_db(path: str | Path) -> sqlite3.Connection:
    """`connect(path)` and apply pending migrations (idempotent)."""
    conn = connect(path)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


__all__ = ["ThreadConnections", "connect", "integrity_check", "migrate", "open_db", "transaction", "utcnow"]
