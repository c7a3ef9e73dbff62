"""The backend interfaces are honest: both engines' classes satisfy the protocols the services are
typed with, member by member (each member exists; a method accepts every call the protocol allows),
and one function opens the configured backend.

`sqlite3.Connection.execute` has no signature Python can read; the calls the protocol allows are
made on real connections here (SQLite) and in `tests/test_backends.py` (Postgres).
"""

from __future__ import annotations

import inspect
import sqlite3
import types
from contextlib import closing

import pytest
from typing_extensions import get_protocol_members

from rag.errors import RagError
from rag.index.manager import IndexManager
from rag.index.pgsearch import PgIndex
from rag.index.search_index import SearchIndex
from rag.store import db as sqlite_db
from rag.store import pg
from rag.store.connection import Connection, Connections, Cursor, Row
from rag.store.engine import StoreLocation, engine_of, open_configured, open_store

DATA_DESCRIPTORS = (property, types.GetSetDescriptorType, types.MemberDescriptorType)
P = inspect.Parameter


def _calls(want: inspect.Signature) -> list[tuple[int, set[str]]]:
    """Every shape of call the protocol allows (after `self`): (positional count, keyword names)."""
    params = list(want.parameters.values())[1:]
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is P.empty]
    kw_only = [p for p in params if p.kind is P.KEYWORD_ONLY]
    kw_required = {p.name for p in kw_only if p.default is P.empty}
    by_name = [p for p in positional if p.kind is P.POSITIONAL_OR_KEYWORD]
    shapes = [(len(required), kw_required), (len(positional), {p.name for p in kw_only})]
    pos_only = [p for p in positional if p.kind is P.POSITIONAL_ONLY]
    shapes.append((len(pos_only), {p.name for p in by_name} | {p.name for p in kw_only}))
    return shapes


def unsatisfied(cls: type, proto: type) -> list[str]:
    """What `cls` lacks of `proto`: missing members, a method where data is wanted, a method that
    refuses a call the protocol allows. Empty when it satisfies it."""
    problems = []
    for name in sorted(get_protocol_members(proto)):
        want = inspect.getattr_static(proto, name)
        try:
            have = inspect.getattr_static(cls, name)
        except AttributeError:
            problems.append(f"{name}: missing")
            continue
        if isinstance(want, property):
            if not isinstance(have, DATA_DESCRIPTORS):
                problems.append(f"{name}: wanted an attribute, found {type(have).__name__}")
            continue
        if not callable(getattr(cls, name)):
            problems.append(f"{name}: not callable")
            continue
        try:
            have_sig = inspect.signature(getattr(cls, name))
        except ValueError:  # a C method without a readable signature: called for real in the tests below
            continue
        for n_pos, keywords in _calls(inspect.signature(want)):
            try:
                have_sig.bind(None, *[None] * n_pos, **dict.fromkeys(keywords))
            except TypeError as e:
                problems.append(f"{name}{have_sig}: refuses {n_pos} positional + {sorted(keywords)}: {e}")
    return problems


@pytest.mark.parametrize(("cls", "proto"), [
    (sqlite3.Connection, Connection), (pg.PgConnection, Connection),
    (sqlite3.Cursor, Cursor), (pg.Cursor, Cursor),
    (sqlite3.Row, Row), (pg.Row, Row),
    (sqlite_db.ThreadConnections, Connections), (pg.PgConnections, Connections),
    (IndexManager, SearchIndex), (PgIndex, SearchIndex),
], ids=lambda x: getattr(x, "__qualname__", str(x)))
def test_both_engines_satisfy_the_protocols(cls, proto):
    assert unsatisfied(cls, proto) == []


def test_the_check_sees_a_missing_member_and_a_refused_call():
    class Narrow:
        def search(self, collection, query_vector, query_text):  # no k, no keywords
            return []

    problems = unsatisfied(Narrow, SearchIndex)
    assert "open: missing" in problems and "stats: missing" in problems
    assert any(p.startswith("search(") for p in problems)


def exercise(conn: Connection) -> None:
    """Every call `Connection` allows, on a real connection (shared with the Postgres test)."""
    assert isinstance(conn, Connection)
    assert conn.in_transaction is False
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.executemany("INSERT INTO t (id, name) VALUES (?, ?)", [(1, "a"), (2, "b")])
    conn.execute("BEGIN")
    assert conn.in_transaction is True
    assert conn.execute("UPDATE t SET name = ? WHERE id = ?", ("c", 2)).rowcount == 1
    conn.execute("COMMIT")
    row = conn.execute("SELECT id, name FROM t WHERE id = ?", (2,)).fetchone()
    assert (row[0], row["name"], list(row.keys()), dict(row), len(row), tuple(row)) == \
        (2, "c", ["id", "name"], {"id": 2, "name": "c"}, 2, (2, "c"))
    assert [r["id"] for r in conn.execute("SELECT id FROM t ORDER BY id")] == [1, 2]
    assert len(conn.execute("SELECT * FROM t").fetchall()) == 2
    assert conn.execute("SELECT id FROM t WHERE id = 3").fetchone() is None


def test_a_sqlite_connection_takes_every_call_of_the_protocol(tmp_path):
    with closing(sqlite_db.connect(tmp_path / "x.sqlite3")) as conn:
        exercise(conn)


def settings_for(tmp_path, url: str = ""):
    from rag.settings import Settings

    return Settings(data_dir=tmp_path / "state", database_url=url)


def test_the_database_url_is_recognised_in_one_place(tmp_path):
    assert engine_of("") == "sqlite"
    assert engine_of("postgresql://u@h/db") == engine_of("postgres://u@h/db") == "postgres"
    with pytest.raises(RagError) as e:
        engine_of("mysql://u@h/db")
    assert e.value.code == "invalid_setting" and e.value.status == 500
    location = StoreLocation.from_settings(settings_for(tmp_path))
    assert (location.engine, location.shared, location.path) == ("sqlite", False, tmp_path / "state" / "rag.sqlite3")
    assert StoreLocation.from_settings(settings_for(tmp_path, "postgresql://u@h/db")).shared


def test_open_store_and_open_configured_migrate_the_embedded_store(tmp_path):
    from rag import store
    from rag.store.migrations import latest_version

    settings = settings_for(tmp_path)
    with closing(open_configured(settings)) as conn:
        assert isinstance(conn, sqlite3.Connection)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
        store.create_collection(conn, "docs")
    db = open_store(settings)
    try:
        assert isinstance(db, sqlite_db.ThreadConnections) and isinstance(db, Connections)
        assert [c.name for c in store.list_collections(db.get())] == ["default", "docs"]
    finally:
        db.close_all()


def test_open_backend_pairs_the_embedded_store_with_the_index_manager(tmp_path):
    from rag.service.backend import open_backend

    backend = open_backend(settings_for(tmp_path), dim=16)
    try:
        assert not backend.shared
        assert isinstance(backend.db, sqlite_db.ThreadConnections) and isinstance(backend.index, IndexManager)
        assert isinstance(backend.index, SearchIndex)
        assert [r.collection for r in backend.index.open()] == ["default"]
    finally:
        backend.index.close()
        backend.db.close_all()
