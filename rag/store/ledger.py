"""The cost ledger and audit trail of questions: one row per question, one per model call.

Calls are committed one by one as they return (`record_call`), before the question finishes,
so whatever ends a question early (an error, a timeout, a client that went away) its cost is
already on record. The question's totals are recomputed from those rows when it is closed, so
they always equal the sum of its calls.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

from rag.errors import Conflict, NotFound, RagError
from rag.store.connection import Connection, Row
from rag.store.db import transaction, utcnow
from rag.store.records import CallSource


@dataclass(frozen=True)
class Totals:
    model_calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int


def start_question(conn: Connection, qid: str, collection: str, question: str, *,
                   budget: dict, options: dict, models: dict, conversation: str | None = None,
                   server: str | None = None) -> int | None:
    """Opens the question's row. With `conversation`, the question is that conversation's next turn:
    returns its index (0, 1, ...); a turn taken at the same moment by another question of the same
    conversation is a 409 `conversation_busy` (the unique index on (conversation_id, turn) decides).
    `server`: the process answering it, whose death closes it as `interrupted` (rag.store.servers)."""
    try:
        with transaction(conn):
            turn = None
            if conversation is not None:
                turn = int(conn.execute("SELECT coalesce(max(turn) + 1, 0) FROM questions WHERE conversation_id = ?",
                                        (conversation,)).fetchone()[0])
            conn.execute(
                "INSERT INTO questions (id, collection, question, status, budget, options, models, created_at,"
                " conversation_id, turn, server_id) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (qid, collection, question, json.dumps(budget), json.dumps(options), json.dumps(models), utcnow(),
                 conversation, turn, server),
            )
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"conversation {conversation!r} is answering another question; ask again when it ends",
                       code="conversation_busy") from exc
    return turn


def record_call(conn: Connection, qid: str, call: CallSource) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO model_calls (question_id, n, purpose, model_id, runtime, server, status, prompt_tokens,"
            " completion_tokens, cached_prompt_tokens, wall_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (qid, call.n, call.purpose, call.model_id, call.runtime or "", getattr(call, "server", "") or "",
             "failed" if getattr(call, "failed", False) else "ok", call.prompt_tokens,
             call.completion_tokens, call.cached_prompt_tokens, call.wall_ms, utcnow()),
        )


def totals(conn: Connection, qid: str) -> Totals:
    row = conn.execute(
        "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
        " coalesce(sum(cached_prompt_tokens), 0) FROM model_calls WHERE question_id = ?", (qid,)
    ).fetchone()
    return Totals(*map(int, row))


def finish_question(conn: Connection, qid: str, *, status: str, result: dict | None, trace: dict | None,
                    seconds: float, error_code: str | None = None, error_message: str | None = None,
                    only_running: bool = False) -> bool:
    """Closes a question in one transaction: status, answer, totals from its calls, result and trace.
    `only_running`: unless another process closed it first (then False)."""
    with transaction(conn):
        t = totals(conn, qid)
        return conn.execute(
            "UPDATE questions SET status = ?, answer = ?, abstained = ?, stopped_by = ?, error_code = ?,"
            " error_message = ?, model_calls = ?, prompt_tokens = ?, completion_tokens = ?,"
            " cached_prompt_tokens = ?, seconds = ?, result = ?, trace = ?, finished_at = ? WHERE id = ?"
            + (" AND status = 'running'" if only_running else ""),
            (status, (result or {}).get("answer"), None if result is None else int(bool(result.get("abstained"))),
             (result or {}).get("stopped_by"), error_code, error_message, t.model_calls, t.prompt_tokens,
             t.completion_tokens, t.cached_prompt_tokens, round(seconds, 3),
             None if result is None else json.dumps(result, ensure_ascii=False),
             None if trace is None else json.dumps(trace, ensure_ascii=False), utcnow(), qid),
        ).rowcount == 1


def _row(conn: Connection, qid: str) -> Row:
    row = conn.execute("SELECT * FROM questions WHERE id = ?", (qid,)).fetchone()
    if row is None:
        raise NotFound(f"question {qid!r} does not exist", code="question_not_found")
    return row


def calls(conn: Connection, qid: str) -> list[dict]:
    rows = conn.execute(
        "SELECT n, purpose, model_id, runtime, server, status, prompt_tokens, completion_tokens, cached_prompt_tokens,"
        " wall_ms, created_at"
        " FROM model_calls WHERE question_id = ? ORDER BY n", (qid,)
    ).fetchall()
    return [dict(r) for r in rows]


def summary(row: Row) -> dict[str, Any]:
    error = {"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None
    return {
        "id": row["id"], "collection": row["collection"], "question": row["question"], "status": row["status"],
        "answer": row["answer"], "abstained": None if row["abstained"] is None else bool(row["abstained"]),
        "stopped_by": row["stopped_by"], "error": error, "created_at": row["created_at"],
        "finished_at": row["finished_at"],
        "usage": {"model_calls": row["model_calls"], "prompt_tokens": row["prompt_tokens"],
                  "completion_tokens": row["completion_tokens"], "cached_prompt_tokens": row["cached_prompt_tokens"],
                  "seconds": row["seconds"]},
        **({"feedback": {"up": row["feedback_up"], "down": row["feedback_down"]}} if "feedback_up" in row.keys() else {}),
    }


def get_question(conn: Connection, qid: str) -> dict[str, Any]:
    """The stored final object (as the POST returned it) plus status; a summary for unfinished/failed ones."""
    row = _row(conn, qid)
    out = summary(row)
    if row["result"]:
        out = {**json.loads(row["result"]), **{k: out[k] for k in ("status", "collection", "question", "created_at",
                                                                    "finished_at", "error")}}
    out["calls"] = calls(conn, qid)
    out["feedback"] = feedback(conn, qid)
    return out


def get_trace(conn: Connection, qid: str) -> dict[str, Any]:
    row = _row(conn, qid)
    trace = json.loads(row["trace"]) if row["trace"] else {"events": [], "context": []}
    return {"id": qid, "question": row["question"], "collection": row["collection"], "status": row["status"],
            "budget": json.loads(row["budget"]), "options": json.loads(row["options"]),
            "models": json.loads(row["models"]), "calls": calls(conn, qid), **trace,
            "feedback": feedback(conn, qid)}


def _scope(sql: str, args: list, collections: Sequence[str] | None) -> tuple[str, list]:
    if collections is None:
        return sql, args
    return sql + f" AND collection IN ({','.join('?' * len(collections)) or 'NULL'})", [*args, *collections]


def collection_of(conn: Connection, qid: str) -> str:
    return _row(conn, qid)["collection"]


# How `list_questions` may sort: ORDER BY clauses (never built from user text).
QUESTION_ORDERS = {
    "recent": "created_at DESC, id DESC",
    "tokens": "prompt_tokens + completion_tokens DESC, created_at DESC, id DESC",
}
# How `usage` may group: (the key's SQL expression, ORDER BY).
USAGE_GROUPS = {
    "day": ("substr(created_at, 1, 10)", "day DESC"),
    "collection": ("collection", "collection"),
}


def list_questions(conn: Connection, *, collection: str | None = None, since: str | None = None,
                   limit: int = 50, collections: Sequence[str] | None = None,
                   order: str = "recent") -> list[dict[str, Any]]:
    """`order`: `recent` (newest first) or `tokens` (prompt + completion tokens, most first; ties newest
    first). `collections`: only questions of these (None: every collection)."""
    if order not in QUESTION_ORDERS:
        raise RagError(f"order must be one of {', '.join(map(repr, QUESTION_ORDERS))}", code="invalid_order", status=422)
    sql, args = _scope(f"SELECT *, {_RATED.format(rating='up')} AS feedback_up, {_RATED.format(rating='down')}"
                       " AS feedback_down FROM questions WHERE 1=1", [], collections)
    if collection:
        sql, args = sql + " AND collection = ?", [*args, collection]
    if since:
        sql, args = sql + " AND created_at >= ?", [*args, since]
    rows = conn.execute(sql + f" ORDER BY {QUESTION_ORDERS[order]} LIMIT ?", (*args, int(limit))).fetchall()
    return [summary(r) for r in rows]


# ------------------------------------------------------------------ feedback

RATINGS = ("up", "down")
# A question's ratings of one kind, as an INTEGER on both engines (Postgres' count is a bigint, whose sum
# would be a numeric).
_RATED = ("(SELECT CAST(count(*) AS INTEGER) FROM question_feedback f WHERE f.question_id = questions.id"
          " AND f.rating = '{rating}')")
# Which questions an export takes, by their ratings (never built from user text).
FEEDBACK_FILTERS = {
    "any": "",
    "rated": " AND EXISTS (SELECT 1 FROM question_feedback f WHERE f.question_id = questions.id)",
    "up": " AND EXISTS (SELECT 1 FROM question_feedback f WHERE f.question_id = questions.id AND f.rating = 'up')",
    "down": " AND EXISTS (SELECT 1 FROM question_feedback f WHERE f.question_id = questions.id AND f.rating = 'down')",
}


def record_feedback(conn: Connection, qid: str, key_id: str, rating: str, comment: str = "") -> dict[str, Any]:
    """A key's rating of a question: its first, or one that replaces its earlier one."""
    if rating not in RATINGS:
        raise RagError("rating must be 'up' or 'down'", code="invalid_request", status=422)
    _row(conn, qid)
    now = utcnow()
    with transaction(conn):
        conn.execute(
            "INSERT INTO question_feedback (question_id, key_id, rating, comment, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (question_id, key_id) DO UPDATE SET rating = excluded.rating, comment = excluded.comment,"
            " created_at = excluded.created_at", (qid, key_id, rating, comment, now))
    return {"question_id": qid, "rating": rating, "comment": comment, "created_at": now}


def feedback(conn: Connection, qid: str) -> list[dict[str, Any]]:
    """A question's ratings, oldest first, without the keys that gave them (a reader of the question
    learns what was said, not who said it)."""
    rows = conn.execute("SELECT rating, comment, created_at FROM question_feedback WHERE question_id = ?"
                        " ORDER BY created_at, key_id", (qid,)).fetchall()
    return [dict(r) for r in rows]


def export_questions(conn: Connection, *, collection: str | None = None, since: str | None = None,
                     collections: Sequence[str] | None = None, rated: str = "any",
                     limit: int = 10_000) -> list[dict[str, Any]]:
    """Finished questions (oldest first) as evaluation records: the question, the answer, its citations,
    the context the answer was written from, usage and every rating. `rated`: any, rated, up or down."""
    if rated not in FEEDBACK_FILTERS:
        raise RagError(f"feedback must be one of {', '.join(map(repr, FEEDBACK_FILTERS))}", code="invalid_request",
                       status=422)
    sql, args = _scope("SELECT * FROM questions WHERE status <> 'running'", [], collections)
    if collection:
        sql, args = sql + " AND collection = ?", [*args, collection]
    if since:
        sql, args = sql + " AND created_at >= ?", [*args, since]
    rows = conn.execute(sql + FEEDBACK_FILTERS[rated] + " ORDER BY created_at, id LIMIT ?",
                        (*args, int(limit))).fetchall()
    return [_exported(conn, r) for r in rows]


def _exported(conn: Connection, row: Row) -> dict[str, Any]:
    result = json.loads(row["result"]) if row["result"] else {}
    trace = json.loads(row["trace"]) if row["trace"] else {}
    base = summary(row)
    return {"id": row["id"], "collection": row["collection"], "question": row["question"], "status": row["status"],
            "answer": row["answer"], "abstained": base["abstained"], "citations": result.get("citations", []),
            "context": trace.get("context", []), "usage": base["usage"], "error": base["error"],
            "created_at": row["created_at"], "feedback": feedback(conn, row["id"])}


def usage(conn: Connection, *, collection: str | None = None, group_by: str = "day",
          collections: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Questions, model calls and tokens per day (UTC; newest first) or per collection (by name)."""
    if group_by not in USAGE_GROUPS:
        raise RagError(f"group_by must be one of {', '.join(map(repr, USAGE_GROUPS))}", code="invalid_group_by")
    key, order = USAGE_GROUPS[group_by]
    sql = (f"SELECT {key} AS {group_by}, count(*) AS questions, sum(model_calls) AS model_calls,"
           " sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,"
           " sum(cached_prompt_tokens) AS cached_prompt_tokens, sum(abstained) AS abstained,"
           # an interrupted question (its server died) failed too, as crash leftovers always counted
           " sum(CASE WHEN status IN ('failed', 'interrupted') THEN 1 ELSE 0 END) AS failed,"
           f" sum({_RATED.format(rating='up')}) AS feedback_up, sum({_RATED.format(rating='down')}) AS feedback_down"
           " FROM questions WHERE 1=1")
    sql, args = _scope(sql, [], collections)
    if collection:
        sql, args = sql + " AND collection = ?", [*args, collection]
    rows = conn.execute(sql + f" GROUP BY {group_by} ORDER BY {order}", args).fetchall()
    return [{k: (r[k] if r[k] is not None else 0) for k in r.keys()} for r in rows]
