"""Conversations: a collection's numbered sequence of questions (the turns live in the ledger's
`questions` rows, with `conversation_id` and `turn`; see `rag.store.migrations` m009)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rag.errors import NotFound
from rag.store.connection import Connection, Row
from rag.store.db import transaction, utcnow
from rag.store.ledger import calls, feedback, summary


def _missing(cid: str) -> NotFound:
    return NotFound(f"conversation {cid!r} does not exist", code="conversation_not_found")


def _out(row: Row, turns: int) -> dict[str, Any]:
    return {"id": row["id"], "collection": row["collection"], "title": row["title"],
            "created_at": row["created_at"], "turns": turns}


def create_conversation(conn: Connection, cid: str, collection: str, title: str = "") -> dict[str, Any]:
    """A new, empty conversation (the collection must exist: the foreign key refuses it otherwise)."""
    with transaction(conn):
        conn.execute("INSERT INTO conversations (id, collection, title, created_at) VALUES (?, ?, ?, ?)",
                     (cid, collection, title, utcnow()))
    return get_conversation(conn, cid)


def _row(conn: Connection, cid: str) -> Row:
    row = conn.execute("SELECT * FROM conversations WHERE id = ?", (cid,)).fetchone()
    if row is None:
        raise _missing(cid)
    return row


def get_conversation(conn: Connection, cid: str) -> dict[str, Any]:
    row = _row(conn, cid)
    n = conn.execute("SELECT count(*) FROM questions WHERE conversation_id = ?", (cid,)).fetchone()[0]
    return _out(row, int(n))


def collection_of(conn: Connection, cid: str) -> str:
    """The collection a conversation belongs to (404 `conversation_not_found` when there is none)."""
    return _row(conn, cid)["collection"]


def turns(conn: Connection, cid: str) -> list[dict[str, Any]]:
    """Every turn, in order: the question's stored answer (citations, usage, standalone form) when it
    finished, its summary otherwise, with its `turn` index, model calls and ratings."""
    _row(conn, cid)
    rows = conn.execute("SELECT * FROM questions WHERE conversation_id = ? ORDER BY turn", (cid,)).fetchall()
    out = []
    for r in rows:
        item = summary(r)
        if r["result"]:
            item = {**json.loads(r["result"]), **{k: item[k] for k in ("status", "collection", "question",
                                                                         "created_at", "finished_at", "error")}}
        item["turn"] = r["turn"]
        item["calls"] = calls(conn, r["id"])
        item["feedback"] = feedback(conn, r["id"])
        out.append(item)
    return out


def list_conversations(conn: Connection, collection: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """A collection's conversations, newest first, with their number of turns."""
    rows = conn.execute(
        "SELECT c.*, (SELECT count(*) FROM questions q WHERE q.conversation_id = c.id) AS n"
        " FROM conversations c WHERE c.collection = ? ORDER BY c.created_at DESC, c.id DESC LIMIT ?",
        (collection, int(limit))).fetchall()
    return [_out(r, int(r["n"])) for r in rows]


def delete_conversation(conn: Connection, cid: str) -> None:
    """Deletes the conversation; its questions stay in the ledger (their cost stays counted)."""
    with transaction(conn):
        _row(conn, cid)
        conn.execute("DELETE FROM conversations WHERE id = ?", (cid,))


def history(conn: Connection, cid: str, *, limit: int = 20) -> list[Row]:
    """The conversation's most recent finished turns (answered, abstained or stopped), oldest first."""
    rows = conn.execute(
        "SELECT question, answer, result FROM questions WHERE conversation_id = ?"
        " AND status IN ('answered', 'abstained', 'stopped') ORDER BY turn DESC LIMIT ?", (cid, int(limit))).fetchall()
    return list(reversed(rows))


__all__: Sequence[str] = ["create_conversation", "get_conversation", "collection_of", "turns",
                          "list_conversations", "delete_conversation", "history"]
