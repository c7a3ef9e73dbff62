"""PostgreSQL as the store: a connection that speaks the store's SQL, per-thread connections, migrations.

The store's modules are written once, in the SQL both engines share (`?` placeholders, standard
functions, `RETURNING`). `PgConnection` gives a psycopg 3 connection the face of `sqlite3`'s that
the store uses: `execute`/`executemany` with `?` placeholders, rows indexable by position and by
name, `in_transaction`, and the DB-API error classes of `sqlite3` (`IntegrityError`,
`OperationalError`), so the store catches one set of errors. The few statements that differ are
chosen by `dialect(conn)`; the schema is its own numbered set (`rag.store.pg_schema`).

Transactions are the store's own (`rag.store.db.transaction`): the connection runs in autocommit
and `BEGIN`/`COMMIT`/`SAVEPOINT` are sent as SQL, READ COMMITTED like every Postgres client.
Concurrency that SQLite's single writer gave for free is explicit here: job claims use
`FOR UPDATE SKIP LOCKED`, schema changes and index creation an advisory lock.

Imported only when `RAG_DATABASE_URL` names Postgres (`rag.store.engine`; psycopg is not needed otherwise).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.numeric import FloatLoader

from rag.errors import RagError

# The store's SQL uses `?`; psycopg wants `%s` and a literal `%` doubled.
_PLACEHOLDER = re.compile(r"\?")


def translate(sql: str, *, with_params: bool = True) -> str:
    if with_params:
        sql = _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))
    if sql.strip().upper() == "BEGIN IMMEDIATE":  # SQLite's write lock up front; rows are locked as written here
        return "BEGIN"
    return sql


class Row(tuple):
    """A result row like `sqlite3.Row`: by position, by column name, `keys()`, `dict(row)`."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]):
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: psycopg.Cursor):
    names = {d.name: i for i, d in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        return Row(values, names)

    return make


class StoreUnavailable(RagError):
    """Postgres cannot be reached (down, restarting, the connection dropped): 503, try again. The
    connection is discarded; the thread's next `PgConnections.get()` opens a new one."""

    code = "store_unavailable"
    status = 503


def _unreachable(exc: psycopg.Error, conn: psycopg.Connection | None) -> bool:
    state = exc.sqlstate or ""
    return (conn is not None and conn.closed) or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _as_sqlite_error(exc: psycopg.Error, conn: psycopg.Connection | None = None) -> Exception:
    """The matching `sqlite3` DB-API class, so the store's `except sqlite3.IntegrityError` serves both;
    a lost server is `StoreUnavailable`."""
    if _unreachable(exc, conn):
        return StoreUnavailable(f"the database is unreachable: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
    cls = sqlite3.IntegrityError if isinstance(exc, psycopg.IntegrityError) else sqlite3.OperationalError
    err = cls(str(exc).strip())
    err.sqlstate = exc.sqlstate  # type: ignore[attr-defined]
    return err


class Cursor:
    def __init__(self, cur: psycopg.Cursor):
        self._cur = cur

    def fetchone(self):
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self) -> list:
        return self._cur.fetchall() if self._cur.description else []

    def __iter__(self) -> Iterator:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount


class PgConnection:
    """A psycopg connection with the surface the store uses (`rag.store.connection.Connection`, as
    `sqlite3.Connection` has it). One thread at a time."""

    dialect = "postgres"

    def __init__(self, url: str, *, ef_search: int = 200):
        self.url = url
        try:
            self.raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to the database at {redact(url)}: "
                                   f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else 'no answer'}") from exc
        self.raw.adapters.register_loader("numeric", FloatLoader)  # sums and averages come back as float
        if self.raw.execute("SELECT to_regtype('vector') IS NOT NULL").fetchone()[0]:  # not before migration 1
            register_vector(self.raw)
        self.raw.execute(f"SET hnsw.ef_search = {int(ef_search)}")  # >= the candidates a search asks for (max(50, 4k))
        self.raw.execute("SET hnsw.iterative_scan = strict_order")  # filtered by collection, still exact order

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        cur = self.raw.cursor(row_factory=_row_factory)
        try:
            if params is None:
                cur.execute(translate(sql, with_params=False))
            else:
                cur.execute(translate(sql), tuple(params))
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc, self.raw) from exc
        return Cursor(cur)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        rows = [tuple(r) for r in rows]
        cur = self.raw.cursor()
        if rows:
            try:
                cur.executemany(translate(sql), rows)
            except psycopg.Error as exc:
                raise _as_sqlite_error(exc, self.raw) from exc
        return Cursor(cur)

    def copy(self, table: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Writes `rows` into `table` with one binary `COPY ... FROM STDIN`: one statement for any number
        of rows (a statement per row cost a document of 300 chunks ~0.7 s). `types` are the columns'
        Postgres types, in order (`vector` once pgvector's adapters are registered). Returns rows written;
        inside the caller's transaction like any statement, so a failure leaves nothing."""
        n = 0
        try:
            with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as out:
                out.set_types(list(types))
                for row in rows:
                    out.write_row(row)
                    n += 1
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc, self.raw) from exc
        return n

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


def redact(url: str) -> str:
    """The URL without its password, for logs and health output."""
    url = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


class _Holder:
    """A thread's connection; when the thread ends (its locals are dropped) the connection is closed,
    so threads that come and go (a request thread pool) do not leave connections behind."""

    def __init__(self, conn: PgConnection, owner: "PgConnections"):
        self.conn = conn
        weakref.finalize(self, owner._release, conn)


class PgConnections:
    """One Postgres connection per thread, opened lazily, closed when its thread ends; `Connections`,
    as `ThreadConnections` is. A process holds at most (live threads that touched the store)
    connections: `rag serve` bounds its request threads by `RAG_DATABASE_POOL_SIZE`."""

    def __init__(self, url: str, *, ef_search: int = 200):
        self.url = url
        self.ef_search = ef_search
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[PgConnection] = set()

    def get(self) -> PgConnection:
        holder = getattr(self._local, "holder", None)
        if holder is not None and not holder.conn.raw.closed:
            return holder.conn
        conn = PgConnection(self.url, ef_search=self.ef_search)
        with self._lock:
            self._open.add(conn)
        self._local.holder = _Holder(conn, self)
        return conn

    def _release(self, conn: PgConnection) -> None:
        with self._lock:
            self._open.discard(conn)
        try:
            conn.close()
        except psycopg.Error:
            pass

    @property
    def open_count(self) -> int:
        return len(self._open)

    def close_all(self) -> None:
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            try:
                conn.close()
            except psycopg.Error:
                pass
        self._local = threading.local()


def vector_literal(vec: np.ndarray) -> Any:
    """A float32 vector as pgvector's `vector` parameter."""
    from pgvector import Vector

    return Vector(np.asarray(vec, dtype=np.float32).reshape(-1))
