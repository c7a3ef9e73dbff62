"""What the store asks of a database connection, whichever engine answers it.

The store's modules are written once and run on `sqlite3.Connection` (the embedded store) and on
`rag.store.pg.PgConnection` (PostgreSQL). These protocols name the surface they share, and
nothing more, so a module typed with them runs on both:

* `Connection`: `execute`/`executemany` with `?` placeholders, `in_transaction`, `close`. There is
  no `commit`/`rollback`: both engines run in autocommit and transactions are SQL
  (`rag.store.db.transaction`: `BEGIN`, `COMMIT`, `SAVEPOINT`).
* `Cursor`: `fetchone`, `fetchall`, iteration, `rowcount`.
* `Row`: by position and by column name, `keys()` (so `dict(row)` works), iteration.
* `Connections`: one connection per thread (`rag.store.db.ThreadConnections`,
  `rag.store.pg.PgConnections`): `get()` for the calling thread's, `close_all()` at shutdown.

Errors are `sqlite3`'s DB-API classes on both engines (`PgConnection` translates psycopg's). Code
that only SQLite can run (PRAGMAs, its migrations, the embedded index's connection factory) keeps
`sqlite3.Connection`. Postgres-only code (`pg_schema`, `pg_jobs`, `rag.index.pgsearch`) takes a
`Connection` too: it needs no more of the connection than this, only SQL that SQLite lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable


class Row(Protocol):
    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    def fetchone(self) -> Any: ...  # a Row, or None when no row is left

    def fetchall(self) -> list[Any]: ...  # Rows

    def __iter__(self) -> Iterator[Any]: ...

    @property
    def rowcount(self) -> int: ...


@runtime_checkable
class Connection(Protocol):
    """One thread at a time (see `rag.store.db`); rows come back as `Row`s."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    @property
    def in_transaction(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class Connections(Protocol):
    """Per-thread connections to one store; a connection from `get()` is the calling thread's only."""

    def get(self) -> Connection: ...

    def close_all(self) -> None: ...
