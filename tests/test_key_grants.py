"""A key's grant belongs to one collection, not to its name, on both backends: it cannot be given
before the collection exists, it ends when the collection is deleted, a later collection of the same
name is not readable through it, and databases written before grants had their own table keep the
grants whose collection still exists."""

from __future__ import annotations

import json

import pytest

from rag import store
from rag.errors import NotFound
from rag.store import migrations, pg_schema


def _connect(backend: str, tmp_path, pg_url):
    if backend == "sqlite":
        return store.open_db(tmp_path / "rag.db")
    from rag.store.pg import PgConnection

    conn = PgConnection(pg_url)
    pg_schema.migrate(conn)
    return conn


@pytest.fixture(params=["sqlite", "postgres"])
def conn(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    c = _connect(request.param, tmp_path, url)
    yield c
    c.close()


def test_a_grant_ends_with_its_collection_and_never_passes_to_a_namesake(conn):
    store.create_collection(conn, "tenant")
    with pytest.raises(NotFound) as missing:
        store.insert_key(conn, "k0", name="early", role="read", grants={"later": "read"}, secret_hash=b"h0")
    assert missing.value.code == "collection_not_found"
    assert store.find_key(conn, "k0") is None  # nothing half-written

    key = store.insert_key(conn, "k1", name="t", role="write", grants={"tenant": "write", "default": "read"},
                           secret_hash=b"h1")
    assert key.grants == {"tenant": "write", "default": "read"}
    every = store.insert_key(conn, "k2", name="all", role="read", grants=None, secret_hash=b"h2")
    assert every.grants is None

    store.delete_collection(conn, "tenant")
    assert store.get_key(conn, "k1").grants == {"default": "read"}
    store.create_collection(conn, "tenant")  # same name, another collection
    assert store.get_key(conn, "k1").grants == {"default": "read"}
    assert {k.id: k.grants for k in store.list_keys(conn)} == {"k1": {"default": "read"}, "k2": None}


def _old_key(conn, key_id: str, grants: dict | None) -> None:
    conn.execute("INSERT INTO api_keys (id, name, role, grants, secret_hash, created_at) VALUES (?, '', 'read', ?, ?, ?)",
                 (key_id, None if grants is None else json.dumps(grants), b"h", store.utcnow()))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_grants_by_name_upgrade_to_grants_of_collections(backend, tmp_path, monkeypatch, request):
    """A database from before m009/p002: grants of existing collections survive, grants naming a
    collection that did not exist are dropped (they could only ever have reached a namesake), and a
    key for every collection stays one."""
    module, old = (migrations, 8) if backend == "sqlite" else (pg_schema, 1)
    url = request.getfixturevalue("pg_url") if backend == "postgres" else ""
    monkeypatch.setattr(module, "MIGRATIONS", module.MIGRATIONS[:old])
    conn = _connect(backend, tmp_path, url)
    store.create_collection(conn, "kept")
    _old_key(conn, "a", {"kept": "write", "gone": "read"})
    _old_key(conn, "b", None)
    _old_key(conn, "c", {"gone": "read"})
    conn.close()
    monkeypatch.undo()

    conn = _connect(backend, tmp_path, url)
    try:
        assert module.current_version(conn) == module.latest_version()
        assert {k.id: k.grants for k in store.list_keys(conn)} == {"a": {"kept": "write"}, "b": None, "c": {}}
    finally:
        conn.close()
