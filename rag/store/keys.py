"""The api_keys and key_grants tables: who may call the API, with which role, on which collections.

A grant names a collection by its uid, so it ends with the collection (the foreign key cascades)
and never passes to a later collection of the same name. Secrets never reach this module: callers
pass and compare the keyed hash (`rag.service.auth`).
"""

from __future__ import annotations

from rag.errors import NotFound
from rag.store.connection import Connection, Row
from rag.store.db import transaction, utcnow
from rag.store.records import KeyRecord


_GRANTS = ("SELECT g.key_id, c.name, g.role FROM key_grants g JOIN collections c ON c.uid = g.collection_uid")


def _key(row: Row, grants: dict[str, dict[str, str]]) -> KeyRecord:
    return KeyRecord(id=row["id"], name=row["name"], role=row["role"],
                     grants=grants.get(row["id"], {}) if row["scoped"] else None,
                     secret_hash=bytes(row["secret_hash"]), created_at=row["created_at"], revoked_at=row["revoked_at"])


def _grants(conn: Connection, key_id: str | None = None) -> dict[str, dict[str, str]]:
    """key id -> {collection name: role}, over the collections that exist now."""
    rows = (conn.execute(_GRANTS + " WHERE g.key_id = ?", (key_id,)) if key_id is not None
            else conn.execute(_GRANTS))
    out: dict[str, dict[str, str]] = {}
    for kid, collection, role in rows:
        out.setdefault(kid, {})[collection] = role
    return out


def insert_key(conn: Connection, key_id: str, *, name: str, role: str, grants: dict[str, str] | None,
               secret_hash: bytes, created_at: str | None = None, revoked_at: str | None = None) -> KeyRecord:
    """A new key; `grants` ({collection name: role}) must name existing collections
    (`collection_not_found` otherwise: a grant cannot wait for a collection that does not exist yet).
    `created_at`/`revoked_at`: a key carried from another install (`rag import --include-keys`)."""
    with transaction(conn):
        uids = {}
        for collection in sorted(grants or {}):
            row = conn.execute("SELECT uid FROM collections WHERE name = ?", (collection,)).fetchone()
            if row is None:
                raise NotFound(f"collection {collection!r} does not exist: a key is granted existing collections",
                               code="collection_not_found")
            uids[collection] = row[0]
        conn.execute(
            "INSERT INTO api_keys (id, name, role, scoped, secret_hash, created_at, revoked_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_id, name, role, int(grants is not None), secret_hash, created_at or utcnow(), revoked_at),
        )
        for collection, uid in uids.items():
            conn.execute("INSERT INTO key_grants (key_id, collection_uid, role) VALUES (?, ?, ?)",
                         (key_id, uid, grants[collection]))
        return get_key(conn, key_id)


def get_key(conn: Connection, key_id: str) -> KeyRecord:
    record = find_key(conn, key_id)
    if record is None:
        raise NotFound(f"key {key_id!r} does not exist", code="key_not_found")
    return record


def find_key(conn: Connection, key_id: str) -> KeyRecord | None:
    row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        return None
    return _key(row, _grants(conn, key_id) if row["scoped"] else {})


def list_keys(conn: Connection) -> list[KeyRecord]:
    rows = conn.execute("SELECT * FROM api_keys ORDER BY created_at, id").fetchall()
    grants = _grants(conn)
    return [_key(r, grants) for r in rows]


def revoke_key(conn: Connection, key_id: str) -> KeyRecord:
    """Marks a key revoked (idempotent: a second revoke keeps the first time)."""
    with transaction(conn):
        get_key(conn, key_id)
        conn.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (utcnow(), key_id))
        return get_key(conn, key_id)


def has_active_admin(conn: Connection) -> bool:
    return first_active_admin(conn) is not None


def first_active_admin(conn: Connection) -> KeyRecord | None:
    """The oldest admin key not revoked (its name says who created it), or None."""
    row = conn.execute("SELECT id FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL"
                       " ORDER BY created_at, id LIMIT 1").fetchone()
    return None if row is None else get_key(conn, row[0])
