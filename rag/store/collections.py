"""The collections table: names, uids, change sequence numbers.

`change_seq` is bumped in the same transaction as every document add and delete (`bump_seq`); it
is what the derived indexes (`rag.index`) record to know which changes they include.

Deleting a collection deletes its documents, chunks, vectors and cached terms. Its ingestion jobs
are kept as history (jobs have no foreign keys): unfinished ones are marked failed with code
`collection_deleted`, so a client polling a job id always gets an answer.
"""

from __future__ import annotations

import re
import sqlite3
import uuid

from rag.errors import Conflict, NotFound, RagError
from rag.store.connection import Connection, Row
from rag.store.db import transaction, utcnow
from rag.store.records import CollectionRecord, DeletedCollection, IndexState

DEFAULT_COLLECTION = "default"


COLLECTION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")



class InvalidName(RagError):
    code = "invalid_collection_name"
    status = 400


def _collection(row: Row) -> CollectionRecord:
    return CollectionRecord(
        name=row["name"],
        uid=row["uid"],
        description=row["description"],
        created_at=row["created_at"],
        change_seq=row["change_seq"],
        embed_model=row["embed_model"],
        embed_dim=row["embed_dim"],
        document_count=row["document_count"],
        chunk_count=row["chunk_count"],
    )


_COLLECTION_SELECT = """
SELECT c.*,
       (SELECT count(*) FROM documents d WHERE d.collection = c.name) AS document_count,
       (SELECT count(*) FROM chunks k WHERE k.collection = c.name) AS chunk_count
FROM collections c
"""


def bump_seq(conn: Connection, collection: str) -> int:
    conn.execute("UPDATE collections SET change_seq = change_seq + 1 WHERE name = ?", (collection,))
    return int(conn.execute("SELECT change_seq FROM collections WHERE name = ?", (collection,)).fetchone()[0])


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not COLLECTION_NAME_RE.fullmatch(name):
        raise InvalidName(
            f"invalid collection name {name!r}: 1-64 characters, letters, digits, '_', '-', '.', "
            "starting with a letter or digit"
        )
    return name


def create_collection(conn: Connection, name: str, description: str = "") -> CollectionRecord:
    """Creates an empty collection. Raises `Conflict` (code `collection_exists`) if the name is taken."""
    validate_collection_name(name)
    with transaction(conn):
        try:
            conn.execute(
                "INSERT INTO collections (name, uid, description, created_at) VALUES (?, ?, ?, ?)",
                (name, uuid.uuid4().hex, description, utcnow()),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"collection {name!r} already exists", code="collection_exists") from None
        return get_collection(conn, name)


def get_collection(conn: Connection, name: str) -> CollectionRecord:
    row = conn.execute(_COLLECTION_SELECT + " WHERE c.name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"collection {name!r} does not exist", code="collection_not_found")
    return _collection(row)


def list_collections(conn: Connection) -> list[CollectionRecord]:
    return [_collection(r) for r in conn.execute(_COLLECTION_SELECT + " ORDER BY c.name")]


def change_seq(conn: Connection, collection: str) -> int:
    row = conn.execute("SELECT change_seq FROM collections WHERE name = ?", (collection,)).fetchone()
    if row is None:
        raise NotFound(f"collection {collection!r} does not exist", code="collection_not_found")
    return int(row[0])


def delete_collection(conn: Connection, name: str) -> DeletedCollection:
    """Deletes a collection with all its documents, chunks, vectors and cached terms, in one
    transaction. Its jobs stay (history); unfinished ones become failed/`collection_deleted`.
    The `default` collection cannot be deleted (`Conflict`, code `collection_protected`); delete
    its documents instead. The caller removes the index files (see `IndexManager.delete_collection`).
    """
    if name == DEFAULT_COLLECTION:
        raise Conflict("the default collection cannot be deleted", code="collection_protected")
    with transaction(conn):
        record = get_collection(conn, name)
        now = utcnow()
        failed = conn.execute(
            "UPDATE ingestion_jobs SET status = 'failed', error_code = 'collection_deleted',"
            " error_message = 'The collection was deleted before the job finished.',"
            " updated_at = ?, finished_at = ? WHERE collection = ? AND status IN ('queued', 'running')",
            (now, now, name),
        ).rowcount
        conn.execute("DELETE FROM collections WHERE name = ?", (name,))
    return DeletedCollection(
        collection=record,
        document_count=record.document_count,
        chunk_count=record.chunk_count,
        failed_jobs=failed,
    )


def index_state(conn: Connection, name: str) -> IndexState | None:
    """What the derived indexes check themselves against; None when the collection is gone."""
    row = conn.execute("SELECT uid, change_seq, embed_dim FROM collections WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    return IndexState(row["uid"], int(row["change_seq"]), None if row["embed_dim"] is None else int(row["embed_dim"]))
