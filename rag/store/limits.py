"""Per-key limits kept in the shared store (Postgres), so every server counts a key once.

`rate_windows`: one row per key and limit (requests, model calls, upload bytes): a fixed window of
`window_s` starting at its first use, counted with one atomic upsert (`INSERT ... ON CONFLICT DO
UPDATE ... WHERE ...`): a use that would pass the limit changes nothing and returns no row, whichever
server sends it. Times are the database's clock, so servers' clocks need not agree. A fixed window
started by the key's first request (not the clock's minute) lets a key use at most twice its limit
in any `window_s` straddling two windows, as the in-memory moving window does not; that is the price
of one row per key instead of one per request.

`question_slots`: one row per question running, with the server running it; taken under a per-key
advisory lock (count, then insert), given back when the question ends, and gone with its server's
row (the foreign key cascades) when that server dies and another one reaps it (rag.store.servers).
"""

from __future__ import annotations

from rag.store.connection import Connection
from rag.store.db import transaction, utcnow
from rag.store.pg_schema import SLOTS_LOCK
from rag.store.servers import now_sql


def hit(conn: Connection, key: str, name: str, *, cost: int, limit: int, window_s: float) -> float | None:
    """Counts `cost` against the key's window of `name`: None when it fits, else the seconds until the
    window ends (nothing counted)."""
    if cost > limit:
        return window_s
    now = now_sql(conn)
    with transaction(conn):
        _no_flush(conn)
        row = conn.execute(
            f"INSERT INTO rate_windows (key_id, name, started, used) VALUES (?, ?, {now}, ?)"
            " ON CONFLICT (key_id, name) DO UPDATE SET"
            " started = CASE WHEN rate_windows.started + ? <= excluded.started THEN excluded.started"
            "                ELSE rate_windows.started END,"
            " used = CASE WHEN rate_windows.started + ? <= excluded.started THEN excluded.used"
            "             ELSE rate_windows.used + excluded.used END"
            " WHERE rate_windows.started + ? <= excluded.started OR rate_windows.used + excluded.used <= ?"
            " RETURNING used", (key, name, cost, window_s, window_s, window_s, limit)).fetchone()
        if row is not None:
            return None
        return _left(conn, key, name, window_s)


def room(conn: Connection, key: str, name: str, *, cost: int, limit: int, window_s: float) -> float | None:
    """As `hit` without counting: None when `cost` more would fit now."""
    row = conn.execute(f"SELECT used, started + ? - {now_sql(conn)} FROM rate_windows WHERE key_id = ? AND name = ?",
                       (window_s, key, name)).fetchone()
    if row is None or float(row[1]) <= 0 or int(row[0]) + cost <= limit:
        return None
    return float(row[1])


def _no_flush(conn: Connection) -> None:
    """A count need not survive a database crash (a key then gets a fresh window, or a slot more for a
    moment): the commit does not wait for the WAL flush, which was most of an upsert's time (p50 4.0 ->
    0.12 ms on a busy 2-core machine, README)."""
    conn.execute("SET LOCAL synchronous_commit = off")


def _left(conn: Connection, key: str, name: str, window_s: float) -> float:
    row = conn.execute(f"SELECT started + ? - {now_sql(conn)} FROM rate_windows WHERE key_id = ? AND name = ?",
                       (window_s, key, name)).fetchone()
    return max(0.0, float(row[0])) if row is not None else 0.0


def take_slot(conn: Connection, slot_id: str, key: str, *, server_id: str, most: int) -> bool:
    """Takes one of the key's `most` question slots across every server; False when all are taken."""
    with transaction(conn):
        _no_flush(conn)
        conn.execute("SELECT pg_advisory_xact_lock(?::int, hashtext(?))", (SLOTS_LOCK, key))
        (held,) = conn.execute("SELECT count(*) FROM question_slots WHERE key_id = ?", (key,)).fetchone()
        if int(held) >= most:
            return False
        conn.execute("INSERT INTO question_slots (id, key_id, server_id, taken_at) VALUES (?, ?, ?, ?)",
                     (slot_id, key, server_id, utcnow()))
        return True


def give_slot(conn: Connection, slot_id: str) -> None:
    """Durably: a give-back lost in a database crash would hold the slot as long as its server lives."""
    with transaction(conn):
        conn.execute("DELETE FROM question_slots WHERE id = ?", (slot_id,))
