"""SQLite store: migrations, collections, documents (atomic add/delete, dedupe), chunks, vectors, jobs."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import threading

import numpy as np
import pytest

from ingest.types import ChunkDraft
from rag import store
from rag.errors import Conflict, IngestError, NotFound
from rag.store import connect, documents, integrity_check, migrations, open_db

DIM = 384
MODEL = "test-embedder"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def drafts(texts: list[str], *, shuffle: bool = False) -> list[ChunkDraft]:
    out, pos = [], 0
    for i, t in enumerate(texts):
        out.append(ChunkDraft(ordinal=i, text=t, char_start=pos, char_end=pos + len(t), token_count=len(t.split()),
                              page=1 + i // 2, section_path=("Intro", f"Part {i}")))
        pos += len(t) + 1
    return list(reversed(out)) if shuffle else out


def vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def meta(content: str, name: str = "doc.txt") -> store.NewDocument:
    return store.NewDocument(filename=name, format="text", sha256=sha(content), size_bytes=len(content),
                            page_count=1, title=name, encoding="utf-8")


def add(conn, content: str, n: int = 3, collection: str = "default", job_id=None, seed: int = 0, model=MODEL):
    texts = [f"{content} chunk {i}" for i in range(n)]
    return store.add_document(conn, collection, meta(content), drafts(texts), vectors(n, seed), job_id, embed_model=model)


def count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture()
def db_path(tmp_path):
    return tmp_path / "state" / "rag.sqlite3"


@pytest.fixture()
def conn(db_path):
    c = open_db(db_path)
    yield c
    c.close()


# ---------------------------------------------------------------- connection and migrations


def test_connection_pragmas(conn):
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_migrations_idempotent_and_healthy(db_path):
    c1 = open_db(db_path)
    assert migrations.current_version(c1) == migrations.latest_version()
    assert migrations.migrate(c1) == []  # nothing left to apply
    c1.close()
    c2 = open_db(db_path)  # re-open: still nothing to apply, default collection not duplicated
    assert [r.name for r in store.list_collections(c2)] == ["default"]
    rows = c2.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [tuple(r) for r in rows] == [(m.version, m.name) for m in migrations.MIGRATIONS]
    assert integrity_check(c2) == []
    c2.close()


def test_failed_migration_rolls_back(db_path, monkeypatch):
    c = open_db(db_path)
    broken = migrations.Migration(
        len(migrations.MIGRATIONS) + 1,
        "m999_broken",
        "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);",
    )
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, broken])
    with pytest.raises(sqlite3.OperationalError):
        migrations.migrate(c)
    assert migrations.current_version(c) == broken.version - 1
    assert c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    assert not c.in_transaction
    c.close()


def test_newer_database_is_refused(db_path):
    c = open_db(db_path)
    c.execute(f"PRAGMA user_version = {migrations.latest_version() + 1}")
    with pytest.raises(migrations.SchemaError):
        migrations.migrate(c)
    c.close()


def test_statement_splitter_keeps_triggers_whole():
    script = """
    CREATE TABLE a (x TEXT);  -- a comment; with a semicolon
    CREATE TRIGGER t AFTER INSERT ON a BEGIN
        UPDATE a SET x = 'b;c' WHERE x = new.x;
    END;
    """
    parts = migrations._statements(script)
    assert len(parts) == 2 and parts[1].startswith("CREATE TRIGGER") and parts[1].endswith("END;")


def test_concurrent_migrate_is_safe(db_path):
    errors = []

    def run():
        try:
            c = open_db(db_path)
            c.close()
        except Exception as e:  # pragma: no cover - the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    c = connect(db_path)
    assert [r.name for r in store.list_collections(c)] == ["default"]
    c.close()


def test_v5_database_upgrades_to_document_language(db_path, monkeypatch):
    """A database written by the code before m006: its documents read language None after the
    upgrade, nothing else changes, and new documents store their language."""
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:5])
    c = open_db(db_path)
    assert migrations.current_version(c) == 5
    assert "language" not in {r["name"] for r in c.execute("PRAGMA table_info(documents)")}
    c.execute("INSERT INTO documents (collection, filename, format, sha256, size_bytes, page_count, title, encoding,"
              " chunk_count, created_at) VALUES ('default', 'old.txt', 'text', ?, 3, 1, 'old', 'utf-8', 0, ?)",
              (sha("old"), store.utcnow()))
    c.close()
    monkeypatch.undo()

    c = open_db(db_path)
    assert migrations.current_version(c) == migrations.latest_version() >= 6
    assert (6, "m006_document_language") in [tuple(r) for r in c.execute("SELECT version, name FROM schema_migrations")]
    (old,) = store.list_documents(c, "default")
    assert (old.filename, old.sha256, old.encoding, old.language) == ("old.txt", sha("old"), "utf-8", None)
    new = store.add_document(c, "default", dataclasses.replace(meta("new"), language="zh-Hant"), drafts(["一", "二"]),
                             vectors(2), embed_model=MODEL).document
    assert new.language == "zh-Hant" and store.get_document(c, new.id).language == "zh-Hant"
    assert integrity_check(c) == []
    c.close()


def test_v6_database_upgrades_to_cancellable_jobs(db_path, monkeypatch):
    """m007 rebuilds the jobs table for the `cancelled` status: every row and index survives."""
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:6])
    c = open_db(db_path)
    done = store.create_job(c, "default", "done.txt")
    store.update_job(c, done.id, status="running", progress={"stage": "parsing"})
    store.update_job(c, done.id, status="failed", error_code="no_text", error_message="m")
    queued = store.create_job(c, "default", "queued.txt", progress={"stage": "queued", "bytes": 3})
    with pytest.raises(sqlite3.IntegrityError):
        c.execute("UPDATE ingestion_jobs SET status = 'cancelled' WHERE id = ?", (queued.id,))
    before = [tuple(r) for r in c.execute("SELECT * FROM ingestion_jobs ORDER BY rowid")]
    c.close()
    monkeypatch.undo()

    c = open_db(db_path)
    assert migrations.current_version(c) == migrations.latest_version() >= 7
    assert [tuple(r) for r in c.execute("SELECT * FROM ingestion_jobs ORDER BY rowid")] == before
    indexes = {r["name"] for r in c.execute("PRAGMA index_list(ingestion_jobs)")}
    assert {"ingestion_jobs_by_collection", "ingestion_jobs_unfinished"} <= indexes
    cancelled = store.cancel_job(c, queued.id, code="job_cancelled", message="m")
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(Conflict):
        store.cancel_job(c, done.id, code="job_cancelled", message="m")
    assert store.count_queued_jobs(c) == 0
    assert integrity_check(c) == []
    c.close()


# ---------------------------------------------------------------- collections


def test_a_collection_name_with_a_trailing_newline_is_invalid(conn):
    with pytest.raises(store.InvalidName):
        store.create_collection(conn, "manuals\n")


def test_collections_crud(conn):
    a = store.create_collection(conn, "manuals", "product manuals")
    assert a.change_seq == 0 and a.document_count == 0 and len(a.uid) == 32
    with pytest.raises(Conflict):
        store.create_collection(conn, "manuals")
    for bad in ["", "-x", "a/b", "x" * 65, "名字", "a b"]:
        with pytest.raises(store.InvalidName):
            store.create_collection(conn, bad)
    assert [c.name for c in store.list_collections(conn)] == ["default", "manuals"]
    with pytest.raises(NotFound):
        store.get_collection(conn, "nope")
    with pytest.raises(Conflict):
        store.delete_collection(conn, "default")


def test_delete_collection_removes_everything_but_job_history(conn):
    store.create_collection(conn, "tmp")
    done = store.create_job(conn, "tmp", "a.txt")
    add(conn, "alpha", collection="tmp", job_id=done.id)
    pending = store.create_job(conn, "tmp", "b.txt")
    add(conn, "beta", collection="default")
    result = store.delete_collection(conn, "tmp")
    assert result.document_count == 1 and result.chunk_count == 3 and result.failed_jobs == 1
    assert conn.execute("SELECT count(*) FROM chunks WHERE collection = 'tmp'").fetchone()[0] == 0
    assert count(conn, "documents") == 1 and count(conn, "chunks") == 3
    assert count(conn, "chunk_vectors") == 3
    assert store.get_job(conn, done.id).status == "done"
    failed = store.get_job(conn, pending.id)
    assert failed.status == "failed" and failed.error_code == "collection_deleted"
    with pytest.raises(NotFound):
        store.get_collection(conn, "tmp")
    assert integrity_check(conn) == []


# ---------------------------------------------------------------- documents


def test_add_document_stores_everything_in_order(conn):
    job = store.create_job(conn, "default", "doc.txt")
    texts = ["first part", "second part", "third part"]
    vecs = vectors(3, seed=7)
    result = store.add_document(conn, "default", meta("content"), drafts(texts, shuffle=True), vecs[::-1].copy(),
                               job.id, embed_model=MODEL)
    assert not result.duplicate and result.change_seq == 1 and len(result.chunk_ids) == 3
    chunks = store.list_chunks(conn, result.document.id)
    assert [c.text for c in chunks] == texts  # stored in ordinal order although given reversed
    assert [c.id for c in chunks] == list(result.chunk_ids)
    assert [c.prev_id for c in chunks] == [None, chunks[0].id, chunks[1].id]
    assert [c.next_id for c in chunks] == [chunks[1].id, chunks[2].id, None]
    assert chunks[1].section_path == ("Intro", "Part 1") and chunks[2].page == 2
    batch = next(store.iter_vectors(conn, "default"))
    assert batch.model == MODEL and list(batch.ids) == list(result.chunk_ids)
    np.testing.assert_array_equal(batch.vectors, vecs)  # row i of vectors stays with chunk i
    assert set(batch.document_ids) == {result.document.id}
    job = store.get_job(conn, job.id)
    assert job.status == "done" and job.document_id == result.document.id and job.finished_at
    coll = store.get_collection(conn, "default")
    assert (coll.change_seq, coll.embed_model, coll.embed_dim, coll.document_count, coll.chunk_count) == (1, MODEL, DIM, 1, 3)
    doc = store.get_document(conn, result.document.id)
    assert (doc.filename, doc.format, doc.size_bytes, doc.chunk_count, doc.status) == ("doc.txt", "text", 7, 3, "ready")


def test_add_document_failure_leaves_nothing(conn, db_path, monkeypatch):
    job = store.create_job(conn, "default", "doc.txt")
    seen_by_other_connection = []

    def exploding_insert(c, chunk_ids, vecs, model):
        other = connect(db_path)  # mid-transaction: another connection sees nothing yet
        seen_by_other_connection.append((count(other, "documents"), count(other, "chunks")))
        other.close()
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(documents, "insert_vectors", exploding_insert)
    with pytest.raises(RuntimeError):
        add(conn, "content", job_id=job.id)
    assert seen_by_other_connection == [(0, 0)]
    for table in ("documents", "chunks", "chunk_vectors", "chunk_terms"):
        assert count(conn, table) == 0
    coll = store.get_collection(conn, "default")
    assert coll.change_seq == 0 and coll.embed_model is None
    assert store.get_job(conn, job.id).status == "queued"  # the caller fails it
    assert not conn.in_transaction
    monkeypatch.undo()
    result = add(conn, "content", job_id=job.id)  # the same upload works afterwards
    assert result.change_seq == 1


def test_invalid_input_is_rejected_before_writing(conn):
    with pytest.raises(IngestError):
        store.add_document(conn, "default", meta("x"), drafts(["a", "b"]), vectors(3), embed_model=MODEL)
    bad = vectors(2)
    bad[1, 0] = np.nan
    with pytest.raises(IngestError):
        store.add_document(conn, "default", meta("x"), drafts(["a", "b"]), bad, embed_model=MODEL)
    with pytest.raises(NotFound):
        store.add_document(conn, "nope", meta("x"), drafts(["a"]), vectors(1), embed_model=MODEL)
    assert count(conn, "documents") == 0


def test_same_content_is_stored_once_per_collection(conn):
    first = add(conn, "same bytes")
    job = store.create_job(conn, "default", "again.txt")
    second = add(conn, "same bytes", job_id=job.id)
    assert second.duplicate and second.document.id == first.document.id and second.chunk_ids == ()
    assert second.change_seq == first.change_seq  # nothing changed
    assert count(conn, "documents") == 1 and count(conn, "chunks") == 3
    job = store.get_job(conn, job.id)
    assert job.status == "done" and job.document_id == first.document.id and job.progress["duplicate"] is True
    assert store.find_document_by_sha(conn, "default", sha("same bytes")).id == first.document.id
    assert store.find_document_by_sha(conn, "default", sha("other")) is None
    store.create_collection(conn, "other")
    third = add(conn, "same bytes", collection="other")  # other collection: stored again
    assert not third.duplicate and third.document.id != first.document.id


def test_embedder_is_fixed_per_collection_until_empty(conn):
    first = add(conn, "one")
    with pytest.raises(Conflict) as e:
        add(conn, "two", model="another-model")
    assert e.value.code == "embedder_mismatch"
    store.delete_document(conn, first.document.id)
    assert store.get_collection(conn, "default").embed_model is None
    add(conn, "two", model="another-model")
    assert store.get_collection(conn, "default").embed_model == "another-model"


def test_delete_document_removes_chunks_vectors_terms(conn):
    keep = add(conn, "keep")
    gone = store.add_document(conn, "default", meta("gone"), drafts(["x y", "y z"]), vectors(2), embed_model=MODEL,
                             terms=[(("x", "y"), (1, 1)), (("y", "z"), (1, 1))], analyzer="test/1")
    assert count(conn, "chunk_terms") == 2
    result = store.delete_document(conn, gone.document.id)
    assert result.chunk_ids == gone.chunk_ids and result.change_seq == gone.change_seq + 1
    assert store.get_chunks(conn, gone.chunk_ids) == []
    assert count(conn, "chunk_vectors") == 3 and count(conn, "chunk_terms") == 0
    assert [d.id for d in store.list_documents(conn, "default")] == [keep.document.id]
    with pytest.raises(NotFound):
        store.delete_document(conn, gone.document.id)
    with pytest.raises(NotFound):
        store.delete_document(conn, keep.document.id, collection="elsewhere")
    assert integrity_check(conn) == []


def test_chunk_ids_are_never_reused(conn):
    a = add(conn, "a")
    store.delete_document(conn, a.document.id)
    b = add(conn, "b")
    assert min(b.chunk_ids) > max(a.chunk_ids)


# ---------------------------------------------------------------- chunks


def test_chunk_lookups(conn):
    doc = add(conn, "doc", n=5)
    ids = list(doc.chunk_ids)
    assert [c.id for c in store.get_chunks(conn, [ids[3], ids[0], 999999])] == [ids[3], ids[0]]
    all_ids, doc_ids = store.chunk_ids(conn, "default")
    assert list(all_ids) == ids and set(doc_ids) == {doc.document.id}
    many = list(store.get_chunks(conn, list(range(1, 2000))))  # more ids than one IN batch
    assert len(many) == 5


def test_chunk_terms_cache_round_trip(conn):
    doc = add(conn, "doc", n=2)
    first, second = doc.chunk_ids
    cached = store.load_chunk_terms(conn, "default", "an/1")
    assert cached.ids == [] and cached.missing == [(first, "doc chunk 0"), (second, "doc chunk 1")]
    store.save_chunk_terms(conn, "an/1", [(first, ["doc", "chunk"], [1, 70000])])
    cached = store.load_chunk_terms(conn, "default", "an/1")
    assert cached.ids == [first] and cached.terms == ["doc chunk"] and cached.missing == [(second, "doc chunk 1")]
    assert list(np.frombuffer(cached.counts[0], "<u2")) == [1, 65535]  # counts saturate at uint16
    only = store.load_chunk_terms(conn, "default", "an/1", ids=[second])
    assert only.ids == [] and [cid for cid, _ in only.missing] == [second]
    other = store.load_chunk_terms(conn, "default", "an/2")  # another analyzer version: not used
    assert other.ids == [] and len(other.missing) == 2
    assert store.save_chunk_terms(conn, "an/1", [(999999, ["x"], [1])]) == 0  # deleted chunk: skipped


# ---------------------------------------------------------------- jobs


def test_job_lifecycle(conn):
    job = store.create_job(conn, "default", "a.pdf", progress={"stage": "queued"})
    assert job.status == "queued" and job.started_at is None
    job = store.update_job(conn, job.id, status="running", progress={"stage": "parsing", "pages": 3})
    assert job.status == "running" and job.started_at and job.progress == {"stage": "parsing", "pages": 3}
    job = store.update_job(conn, job.id, status="failed", error_code="parse_error", error_message="bad PDF")
    assert (job.status, job.error_code, job.error_message) == ("failed", "parse_error", "bad PDF")
    assert job.finished_at
    with pytest.raises(Conflict):
        store.update_job(conn, job.id, status="running")
    with pytest.raises(NotFound):
        store.get_job(conn, "nope")
    with pytest.raises(NotFound):
        store.create_job(conn, "no-such-collection", "a.pdf")
    with pytest.raises(Conflict):  # add_document on a finished job
        add(conn, "x", job_id=job.id)
    assert count(conn, "documents") == 0
    assert [j.id for j in store.list_jobs(conn, "default")] == [job.id]


def test_fail_unfinished_jobs(conn):
    queued = store.create_job(conn, "default", "a")
    running = store.update_job(conn, store.create_job(conn, "default", "b").id, status="running")
    finished = store.create_job(conn, "default", "c")
    add(conn, "c", job_id=finished.id)
    assert store.fail_unfinished_jobs(conn) == 2
    for j in (queued, running):
        j = store.get_job(conn, j.id)
        assert j.status == "failed" and j.error_code == "interrupted" and j.finished_at
    assert store.get_job(conn, finished.id).status == "done"
    assert store.fail_unfinished_jobs(conn) == 0
    assert [j.id for j in store.list_jobs(conn, status="done")] == [finished.id]


def test_transaction_nesting_uses_savepoints(conn):
    from rag.store import transaction

    with transaction(conn):
        store.create_collection(conn, "outer")
        with pytest.raises(Conflict):
            store.create_collection(conn, "outer")  # inner failure rolls back only the savepoint
        store.create_collection(conn, "second")
    assert {c.name for c in store.list_collections(conn)} == {"default", "outer", "second"}


def test_thread_connections_are_per_thread(db_path):
    from rag.store import ThreadConnections

    open_db(db_path).close()
    pool = ThreadConnections(db_path)
    mine = pool.get()
    assert pool.get() is mine
    other = []
    t = threading.Thread(target=lambda: other.append(pool.get()))
    t.start()
    t.join()
    assert other[0] is not mine
    pool.close_all()


# ---------------------------------------------------------------- durable files


def test_write_atomic_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    import os
    import stat

    from rag.store.files import atomic_writer, write_atomic

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    target = tmp_path / "uploads" / "job1"
    write_atomic(target, b"bytes")
    assert target.read_bytes() == b"bytes"
    assert synced == [False, True], "the file, then the folder holding its new name"
    assert [p.name for p in target.parent.iterdir()] == ["job1"]

    with pytest.raises(RuntimeError), atomic_writer(target.parent, "x") as pending:
        pending.file.write(b"half")
        raise RuntimeError("crash before commit")
    assert [p.name for p in target.parent.iterdir()] == ["job1"], "an uncommitted temp file is removed"
    assert target.read_bytes() == b"bytes"
