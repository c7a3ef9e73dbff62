"""SQLite connections, and transactions for either engine.

Every connection is opened the same way (`connect`):

* `journal_mode=WAL`: readers never block the writer and see only committed transactions.
* `synchronous=FULL`: in WAL mode this fsyncs the WAL at every commit, so a commit that returned
  (an *acknowledged* write: a job marked done, a document listed) survives power loss, not only a
  process crash. `NORMAL` would skip that fsync and could lose the last commits on power loss. The
  cost is one fsync per commit; writes here are one transaction per document or job update, so
  the cost is small next to parsing and embedding (measured: see `rag_bench.search`).
* `foreign_keys=ON`: deletes cascade from collection to documents to chunks to vectors.
* `busy_timeout`: a second writer (another thread or process) waits instead of failing at once.
* autocommit mode (`isolation_level=None`): nothing is in a transaction unless `transaction()`
  opened one, so no implicit transaction is left open by a read.

Threads: a `sqlite3.Connection` must not be used by two threads at the same time. Give every
thread its own connection (`ThreadConnections`, or call `connect` per thread); connections are
cheap. Connections are opened with `check_same_thread=False` only so a pool may hand one to a
different thread *sequentially*.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from rag.store.connection import Connection

BUSY_TIMEOUT_MS = 10_000
IN_BATCH = 500  # ids per `IN (...)`: stays under SQLite's variable limit on old builds (999)

ConnectionFactory = Callable[[], sqlite3.Connection]


def connect(path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """Opens (creating if needed) the database at `path` with the project's pragmas.

    Rows come back as `sqlite3.Row` (index by name or position). Does not migrate: call
    `rag.store.open_db` (connect + migrate) at start-up.
    """
    path = Path(path)
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path),
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(path) != ":memory:" and mode.lower() != "wal":
        conn.close()
        raise RuntimeError(f"{path}: could not switch SQLite to WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


@contextmanager
def transaction(conn: Connection, *, immediate: bool = True) -> Iterator[Connection]:
    """Runs the block in one transaction: COMMIT on success, ROLLBACK on any exception. Either engine:
    transactions are SQL on an autocommit connection (`rag.store.pg` turns `BEGIN IMMEDIATE` into `BEGIN`).

    `BEGIN IMMEDIATE` takes the write lock up front, so a read-then-write block cannot fail
    half-way with SQLITE_BUSY on lock upgrade (it waits up to busy_timeout at BEGIN instead).
    Nested use becomes a SAVEPOINT, so helpers can open a transaction whether or not their
    caller already did.
    """
    if conn.in_transaction:
        name = f"sp_{threading.get_ident()}_{id(conn) & 0xFFFF}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        else:
            conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def utcnow() -> str:
    """Timestamp format used in every table: ISO 8601 UTC with milliseconds, e.g. `2025-01-31T12:00:00.123Z`.

    Same text as SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`, so both sort together.
    """
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class ThreadConnections:
    """One connection per thread for a database file, opened lazily; `close_all()` at shutdown
    (`rag.store.connection.Connections`, as `rag.store.pg.PgConnections` is).

    Not a `ConnectionFactory`: a factory returns a new connection its caller closes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close_all(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()


def integrity_check(conn: sqlite3.Connection) -> list[str]:
    """`PRAGMA integrity_check` plus `foreign_key_check`; an empty list means healthy."""
    problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
    problems += [f"foreign key: {tuple(r)}" for r in conn.execute("PRAGMA foreign_key_check").fetchall()]
    return problems


def in_batches(items: Sequence[int], size: int = IN_BATCH) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@contextmanager
def read_view(conn: Connection) -> Iterator[Connection]:
    """Runs a block of reads in one deferred transaction: every read sees the same committed state."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")
