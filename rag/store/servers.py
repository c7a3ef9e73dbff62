"""The `servers` table: which processes answering questions are alive, and the questions of those that died.

A process registers a row at start and renews its heartbeat (seconds since the epoch by the
database's clock, so servers' clocks need not agree) a few times per lease. A server is dead when
its heartbeat is older than the lease, or, where the caller can tell (one machine: the embedded
store), when its process is gone. Its running questions are then closed as `interrupted`, each in
its own transaction and only while still `running` (two reapers at once close it once), with their
totals from the calls already in the ledger, and its row is deleted.

Questions from before m012/p005 have no server: they are leftovers of a crash only when no other
process is registered (an older server may still be answering them otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rag.store import ledger
from rag.store.connection import Connection
from rag.store.db import transaction, utcnow
from rag.store.dialect import dialect


def now_sql(conn: Connection) -> str:
    """SQL for the database's clock in seconds since the epoch."""
    if dialect(conn) == "postgres":
        return "extract(epoch FROM clock_timestamp())"
    return "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True)
class ServerRecord:
    id: str
    host: str
    pid: int
    data_dir: str
    started_at: str
    silent_s: float  # seconds since its last heartbeat


def register(conn: Connection, server_id: str, *, host: str, pid: int, data_dir: str) -> None:
    with transaction(conn):
        conn.execute(f"INSERT INTO servers (id, host, pid, data_dir, started_at, heartbeat) VALUES (?, ?, ?, ?, ?, {now_sql(conn)})",
                     (server_id, host, pid, data_dir, utcnow()))


def beat(conn: Connection, server_id: str) -> bool:
    """Renews the heartbeat; False when the row is gone (another process took this one for dead)."""
    with transaction(conn):
        return conn.execute(f"UPDATE servers SET heartbeat = {now_sql(conn)} WHERE id = ?", (server_id,)).rowcount == 1


def leave(conn: Connection, server_id: str) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM servers WHERE id = ?", (server_id,))


def list_servers(conn: Connection) -> list[ServerRecord]:
    rows = conn.execute(f"SELECT id, host, pid, data_dir, started_at, {now_sql(conn)} - heartbeat FROM servers"
                        " ORDER BY started_at, id").fetchall()
    return [ServerRecord(r[0], r[1], int(r[2]), r[3], r[4], float(r[5])) for r in rows]


def reap(conn: Connection, *, me: str, lease_s: float, gone: Callable[[ServerRecord], bool] = lambda s: False) -> list[str]:
    """Closes the running questions of dead processes as `interrupted` and forgets those processes.
    `gone(server)`: the caller knows it is dead before its lease ends (its pid on this machine).
    Returns the ids of the questions closed."""
    # questions first: a question's server registered before it started, so it is in the list read next
    running = conn.execute("SELECT id, server_id FROM questions WHERE status = 'running'").fetchall()
    servers = [s for s in list_servers(conn) if s.id != me]
    dead = {s.id: s for s in servers if s.silent_s > lease_s or gone(s)}
    alive = {s.id for s in servers} - set(dead)
    closed: list[str] = []
    for qid, server_id in running:
        if server_id == me or server_id in alive or (server_id is None and alive):
            continue
        s = dead.get(server_id)
        where = (f"{s.host} pid {s.pid}, data dir {s.data_dir}" if s is not None
                 else "a process that is no longer registered" if server_id else "a process from before servers were recorded")
        if ledger.finish_question(conn, qid, status="interrupted", result=None, trace=None, seconds=0.0,
                                  error_code="interrupted", only_running=True,
                                  error_message=f"the server answering this question ({where}) stopped before it ended"):
            closed.append(qid)
    for server_id in dead:
        leave(conn, server_id)
    return closed
