"""The api_keys table: who may call the API, with which role, on which collections.

Secrets never reach this module: callers pass and compare the keyed hash (`rag.service.auth`).
"""

from __future__ import annotations

import json

from rag.errors import NotFound
from rag.store.connection import Connection, Row
from rag.store.db import transaction, utcnow
from rag.store.records import KeyRecord


def _key(row: Row) -> KeyRecord:
    grants = None if row["grants"] is None else dict(json.loads(row["grants"]))
    return KeyRecord(id=row["id"], name=row["name"], role=row["role"], grants=grants,
                     secret_hash=bytes(row["secret_hash"]), created_at=row["created_at"], revoked_at=row["revoked_at"])


def insert_key(conn: Connection, key_id: str, *, name: str, role: str, grants: dict[str, str] | None,
               secret_hash: bytes) -> KeyRecord:
    with transaction(conn):
        conn.execute(
            "INSERT INTO api_keys (id, name, role, grants, secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, name, role, None if grants is None else json.dumps(grants, sort_keys=True), secret_hash, utcnow()),
        )
        return get_key(conn, key_id)


def get_key(conn: Connection, key_id: str) -> KeyRecord:
    row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"key {key_id!r} does not exist", code="key_not_found")
    return _key(row)


def find_key(conn: Connection, key_id: str) -> KeyRecord | None:
    row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return None if row is None else _key(row)


def list_keys(conn: Connection) -> list[KeyRecord]:
    return [_key(r) for r in conn.execute("SELECT * FROM api_keys ORDER BY created_at, id")]


def revoke_key(conn: Connection, key_id: str) -> KeyRecord:
    """Marks a key revoked (idempotent: a second revoke keeps the first time)."""
    with transaction(conn):
        get_key(conn, key_id)
        conn.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (utcnow(), key_id))
        return get_key(conn, key_id)


def has_active_admin(conn: Connection) -> bool:
    return conn.execute("SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL LIMIT 1").fetchone() is not None
