"""Which SQL engine a connection talks to, for the few statements the two engines spell differently."""

from __future__ import annotations

from rag.store.connection import Connection


def dialect(conn: Connection) -> str:
    """`postgres` for a `rag.store.pg.PgConnection`, `sqlite` for a `sqlite3.Connection`."""
    return getattr(conn, "dialect", "sqlite")
