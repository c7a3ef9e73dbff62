"""A collection's rows, read out and written back with their ids, on either engine: what `rag export`
and `rag import` (`rag.portable`) move between deployments.

The other table modules make rows (a new document gets new ids); this one copies them. Each table
that moves is one `Table`: the columns both engines share (Postgres' extra columns, such as job
leases, stay behind), the key it is read in order of (keyset pages, so a collection of any size is
read page by page), the rows that belong to one collection, and how a row that is already there is
treated (documents and chunks keep their ids and must not collide; the ledger's rows are history and
are skipped when their id is already present, `ON CONFLICT DO NOTHING`, which both engines speak).

Derived data is not a table here: vectors and windows go through `rag.store.vectors`, lexical terms
are re-analysed from the chunks' text (`save_chunk_terms`), BM25's statistics follow from them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rag.store.connection import Connection
from rag.store.dialect import dialect

PAGE = 2000  # rows per keyset page


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # unique, the order rows are read in
    scope: str  # SQL over alias `t` with one `?`: the collection's name
    history: bool = False  # True: a row whose key exists is skipped; False: ids must be free (checked first)
    identity: bool = False  # an `id` the engine generates (Postgres: GENERATED ALWAYS, needs OVERRIDING)


_OF_QUESTIONS = "t.question_id IN (SELECT id FROM questions WHERE collection = ? AND status <> 'running')"

DOCUMENTS = Table("documents", ("id", "collection", "filename", "format", "sha256", "size_bytes", "page_count",
                                "title", "encoding", "language", "chunk_count", "created_at", "status"),
                  ("id",), "t.collection = ?", identity=True)
CHUNKS = Table("chunks", ("id", "document_id", "collection", "ordinal", "text", "char_start", "char_end", "page",
                          "section_path", "token_count", "prev_id", "next_id"), ("id",), "t.collection = ?", identity=True)
WINDOWS = Table("chunk_windows", ("chunk_id", "n", "char_start", "char_end", "dim", "vector"), ("chunk_id", "n"),
                "t.chunk_id IN (SELECT id FROM chunks WHERE collection = ?)")
JOBS = Table("ingestion_jobs", ("id", "collection", "filename", "status", "document_id", "progress", "error_code",
                                "error_message", "created_at", "updated_at", "started_at", "finished_at"),
             ("id",), "t.collection = ? AND t.status IN ('done', 'failed', 'cancelled')", history=True)
CONVERSATIONS = Table("conversations", ("id", "collection", "title", "created_at"), ("id",), "t.collection = ?",
                      history=True)
QUESTIONS = Table("questions", ("id", "collection", "question", "status", "answer", "abstained", "stopped_by",
                                "error_code", "error_message", "model_calls", "prompt_tokens", "completion_tokens",
                                "cached_prompt_tokens", "seconds", "budget", "options", "models", "result", "trace",
                                "created_at", "finished_at", "conversation_id", "turn"),
                  ("id",), "t.collection = ? AND t.status <> 'running'", history=True)
MODEL_CALLS = Table("model_calls", ("question_id", "n", "purpose", "model_id", "runtime", "server", "status",
                                    "prompt_tokens", "completion_tokens", "cached_prompt_tokens", "wall_ms",
                                    "created_at"), ("question_id", "n"), _OF_QUESTIONS, history=True)
FEEDBACK = Table("question_feedback", ("question_id", "key_id", "rating", "comment", "created_at"),
                 ("question_id", "key_id"), _OF_QUESTIONS, history=True)

HISTORY: tuple[Table, ...] = (JOBS, CONVERSATIONS, QUESTIONS, MODEL_CALLS, FEEDBACK)  # in the order they are written


@contextmanager
def snapshot(conn: Connection) -> Iterator[Connection]:
    """One consistent view for a whole export while writers go on: SQLite's read transaction (WAL), or
    Postgres' REPEATABLE READ (its default READ COMMITTED would let each page see newer rows)."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if dialect(conn) == "postgres" else "BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def read_rows(conn: Connection, table: Table, collection: str, *, page: int = PAGE) -> Iterator[dict[str, Any]]:
    """The collection's rows of `table` in key order, page by page (never the whole table in memory)."""
    cols = ", ".join(f"t.{c}" for c in table.columns)
    order = ", ".join(f"t.{k}" for k in table.key)
    after = None
    while True:
        where, args = table.scope, [collection]
        if after is not None:
            where += f" AND ({order}) > ({', '.join('?' * len(after))})"
            args += list(after)
        rows = conn.execute(f"SELECT {cols} FROM {table.name} t WHERE {where} ORDER BY {order} LIMIT ?",
                            (*args, int(page))).fetchall()
        for r in rows:
            yield {c: r[i] for i, c in enumerate(table.columns)}
        if len(rows) < page:
            return
        after = tuple(rows[-1][table.columns.index(k)] for k in table.key)


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """Writes rows as they are, ids included. History rows already present are skipped; returns rows written."""
    if not rows:
        return 0
    cols = ", ".join(table.columns)
    overriding = " OVERRIDING SYSTEM VALUE" if table.identity and dialect(conn) == "postgres" else ""
    conflict = " ON CONFLICT DO NOTHING" if table.history else ""
    sql = f"INSERT INTO {table.name} ({cols}){overriding} VALUES ({', '.join('?' * len(table.columns))}){conflict}"
    return conn.executemany(sql, [tuple(r[c] for c in table.columns) for r in rows]).rowcount


def high_water(conn: Connection, table: str) -> int:
    """The largest id `table` ever handed out (deleted rows included): ids above it were never used, so
    rows copied in above it can never be taken for older ones by a stale index."""
    return max(_max_id(conn, table), _generated(conn, table))


def advance_ids(conn: Connection, table: str) -> None:
    """After rows were written with their own ids: the next generated id comes after them (SQLite's
    AUTOINCREMENT does this itself; a Postgres identity's sequence must be moved)."""
    top = _max_id(conn, table)
    if dialect(conn) == "postgres" and top > _generated(conn, table):
        conn.execute(f"SELECT setval('{table}_id_seq', ?)", (top,))


def _max_id(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])


def _generated(conn: Connection, table: str) -> int:
    """The last id the engine generated for `table` (0: none yet)."""
    if dialect(conn) == "postgres":
        row = conn.execute(f"SELECT last_value, is_called FROM {table}_id_seq").fetchone()
        return int(row[0]) if row[1] else 0
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0]) if row else 0


def document_ids_by_sha(conn: Connection, collection: str) -> dict[str, int]:
    """sha256 -> id of the collection's documents (what a merge skips)."""
    return {r[0]: int(r[1]) for r in conn.execute("SELECT sha256, id FROM documents WHERE collection = ?", (collection,))}


def set_embedder(conn: Connection, collection: str, model: str, dim: int) -> None:
    conn.execute("UPDATE collections SET embed_model = ?, embed_dim = ? WHERE name = ? AND embed_model IS NULL",
                 (model, int(dim), collection))
