"""`rag export` / `rag import` (`rag.portable`): moving collections between deployments and backends.

End to end with the real small models: a collection ingested and questioned on SQLite is exported
(the CLI), imported into a real PostgreSQL (the CLI), and there the same searches return the same
chunk ids in the same order and a replay of the recorded question is identical; exported again
from Postgres, every member is byte-identical to the first export, and imported into a new SQLite
store it searches the same again. Then, on a small synthetic store (no model): a corrupted or
truncated member, an unknown version, another embedder, a collection already there, and a failure
halfway through the writes each leave the target untouched, with their codes; `--merge` adds only
what is missing.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.server import local_client
from tests.test_ask_e2e import DATA, DESCALE_Q, GARAGE_Q, SHIPPING_Q, en_settings, wait_job
from tests.test_backends import TEXTS, Draft, add

FILES = ["parking.txt", "shipping.html", "brewmaster.md"]
QUERIES = [GARAGE_Q, SHIPPING_Q, DESCALE_Q, "bicycles park by the entrance", "warranty of the espresso machine"]


def _settings(data_dir: Path, models_dir: Path, **over):
    return en_settings(data_dir, models_dir, window_tokens=48, **over)  # chunks longer than 48 tokens get windows


def _searches(client) -> list[list[int]]:
    out = []
    for q in QUERIES:
        r = client.post("/v1/collections/move/search", json={"query": q, "k": 6})
        assert r.status_code == 200, r.text
        out.append([h["chunk_id"] for h in r.json()["results"]])
    return out


def _run(args: list[str]):
    from rag_cli import app

    return CliRunner().invoke(app, args)


def test_sqlite_to_postgres_and_back_keeps_ids_searches_and_replays(tmp_path, models_dir, pg_url, monkeypatch):
    from api.app import create_app
    from rag.portable import export_store, import_store

    lite = _settings(tmp_path / "lite", models_dir)
    with local_client(create_app(lite), lite.data_dir, raise_server_exceptions=False) as c:
        assert c.post("/v1/collections", json={"name": "move"}).status_code == 201
        r = c.post("/v1/collections/move/documents",
                   files=[("files", (f, (DATA / f).read_bytes(), "application/octet-stream")) for f in FILES])
        assert [wait_job(c, j["id"])["status"] for j in r.json()["jobs"]] == ["done"] * 3
        asked = c.post("/v1/collections/move/questions", json={"question": SHIPPING_Q,
                                                                "options": {"max_answer_tokens": 24}}).json()
        assert c.post(f"/v1/questions/{asked['id']}/feedback", json={"rating": "up"}).status_code in (200, 201)
        trace = c.get(f"/v1/questions/{asked['id']}/trace").json()
        before = _searches(c)
        docs = c.get("/v1/collections/move/documents").json()["documents"]
        chunks = {d["id"]: c.get(f"/v1/collections/move/documents/{d['id']}/chunks").json()["chunks"] for d in docs}

    first = tmp_path / "from-sqlite"
    r = _run(["export", str(first), "--collection", "move", "--data-dir", str(lite.data_dir)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["format"] == "rag-export" and manifest["version"] == 1 and manifest["source"]["backend"] == "sqlite"
    rows = {k.rsplit("/", 1)[1]: m["rows"] for k, m in manifest["members"].items()}
    assert rows["documents.jsonl"] == 3 and rows["vectors.f32"] == rows["chunks.jsonl"] == sum(map(len, chunks.values()))
    assert rows["windows.jsonl"] > 0 and rows["questions.jsonl"] == 1 and rows["question_feedback.jsonl"] == 1
    assert rows["ingestion_jobs.jsonl"] == 3 and rows["model_calls.jsonl"] == asked["usage"]["model_calls"]

    monkeypatch.setenv("RAG_DATABASE_URL", pg_url)
    monkeypatch.setenv("RAG_EMBEDDER", lite.embedder)
    r = _run(["import", str(first), "--data-dir", str(tmp_path / "pg")])
    assert r.exit_code == 0, r.output
    assert "move: 3 documents" in r.output and "ids shifted" not in r.output
    monkeypatch.delenv("RAG_DATABASE_URL")

    pg = _settings(tmp_path / "pg", models_dir, database_url=pg_url)
    with local_client(create_app(pg), pg.data_dir, raise_server_exceptions=False) as c:
        assert _searches(c) == before  # same chunk ids, same order
        assert c.get("/v1/collections/move/documents").json()["documents"] == docs
        assert {d: c.get(f"/v1/collections/move/documents/{d}/chunks").json()["chunks"] for d in chunks} == chunks
        assert c.get(f"/v1/questions/{asked['id']}/trace").json() == trace
        # back out of Postgres (while its server runs): every member byte-identical to the SQLite export
        second = tmp_path / "from-postgres"
        again = export_store(pg, second, collection="move")
        assert again.source_backend == "postgres"
        assert {k: (m.sha256, m.rows) for k, m in again.members.items()} == \
            {k: (m["sha256"], m["rows"]) for k, m in manifest["members"].items()}
        replay = c.post(f"/v1/questions/{asked['id']}/replay").json()
        assert replay["identical"] is True, [x for x in replay["changes"] if x["changed"]]
        assert replay["note"] is None

    # and into a new SQLite store: the same searches again
    back = _settings(tmp_path / "back", models_dir)
    (done,) = import_store(back, second).collections
    assert done.ids_kept and done.documents == 3
    with local_client(create_app(back), back.data_dir, raise_server_exceptions=False) as c:
        assert _searches(c) == before
        assert c.get(f"/v1/questions/{asked['id']}").json()["answer"] == asked["answer"]


# ---------------------------------------------------------------------------- refusals, on a synthetic store

@pytest.fixture()
def exported(tmp_path):
    """A SQLite store with collection `docs` (two documents, vectors of a test embedder) and its export."""
    from rag import store
    from rag.index.manager import IndexManager
    from rag.portable import export_store
    from rag.settings import Settings
    from rag.store import conversations, ledger

    source = Settings(data_dir=tmp_path / "src", embedder="test-model")
    with closing(store.open_db(source.db_path)) as conn:
        index = IndexManager(source.data_dir / "indexes", lambda: store.connect(source.db_path), autosave_delay_s=60)
        index.open()
        vecs = np.random.default_rng(3).standard_normal((len(TEXTS), 16)).astype(np.float32)
        store.create_collection(conn, "docs")
        add(index, conn, "docs", "a.txt", TEXTS[:5], vecs[:5])
        add(index, conn, "docs", "b.txt", TEXTS[5:], vecs[5:])
        index.close()
        conversations.create_conversation(conn, "c1", "docs", "walls")  # a turn of a conversation, rated
        ledger.start_question(conn, "q1", "docs", "How long is the wall?", budget={}, options={}, models={},
                              conversation="c1")
        ledger.finish_question(conn, "q1", status="answered", result={"answer": "8851.8 km"}, trace={"events": []},
                               seconds=1.5)
        ledger.record_feedback(conn, "q1", "k1", "up", "right")
    out = tmp_path / "export"
    export_store(source, out, collection="docs")
    return source, out


def _target(tmp_path, pg_url: str = ""):
    from rag.settings import Settings

    return Settings(data_dir=tmp_path / "dst", embedder="test-model", database_url=pg_url)


def _counts(settings) -> dict[str, int]:
    from rag.store import open_configured

    with closing(open_configured(settings)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("collections", "documents", "chunks", "chunk_vectors", "ingestion_jobs", "questions")}


def _reseal(root: Path, member: str) -> None:
    """Makes the manifest agree with an altered member, so only the import's own checks can catch it."""
    manifest = json.loads((root / "manifest.json").read_text())
    data = (root / member).read_bytes()
    manifest["members"][member].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_a_corrupt_or_unknown_export_is_refused_before_anything_is_written(exported, tmp_path, pg_url):
    from rag.errors import RagError
    from rag.portable import import_store

    _, out = exported
    target = _target(tmp_path, pg_url)
    empty = _counts(target)
    chunks = out / "collections/docs/chunks.jsonl"
    original = chunks.read_bytes()

    chunks.write_bytes(original.replace(b"Great Wall", b"Great Hall"))  # one byte-level edit, same size
    with pytest.raises(RagError) as e:
        import_store(target, out)
    assert e.value.code == "export_corrupt" and "chunks.jsonl" in e.value.message
    chunks.write_bytes(original)

    vectors = out / "collections/docs/vectors.f32"
    whole = vectors.read_bytes()
    vectors.write_bytes(whole[:-4])  # truncated
    with pytest.raises(RagError) as e:
        import_store(target, out)
    assert e.value.code == "export_corrupt" and "vectors.f32" in e.value.message
    vectors.write_bytes(whole)

    manifest = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(manifest.replace('"version": 1', '"version": 2'))
    with pytest.raises(RagError) as e:
        import_store(target, out)
    assert e.value.code == "export_unsupported"
    (out / "manifest.json").write_text(manifest)

    with pytest.raises(RagError) as e:
        import_store(target.model_copy(update={"embedder": "all-minilm-l6-v2"}), out)
    assert e.value.code == "embedder_mismatch"
    assert _counts(target) == empty

    # past the checksums, a row that cannot be written fails halfway: the transaction leaves nothing behind
    lines = original.splitlines(keepends=True)
    chunks.write_bytes(b"".join(lines[:-1]) + lines[-1].replace(b'"ordinal":', b'"ordinal_":'))
    _reseal(out, "collections/docs/chunks.jsonl")
    with pytest.raises(RagError) as e:
        import_store(target, out)
    assert e.value.code == "export_corrupt"
    assert _counts(target) == empty
    chunks.write_bytes(original)
    _reseal(out, "collections/docs/chunks.jsonl")

    # rows that contradict each other (two documents with the same sha256 in one collection): refused too
    documents = out / "collections/docs/documents.jsonl"
    rows = [json.loads(line) for line in documents.read_bytes().splitlines()]
    rows[1]["sha256"] = rows[0]["sha256"]
    documents.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _reseal(out, "collections/docs/documents.jsonl")
    with pytest.raises(RagError) as e:
        import_store(target, out)
    assert e.value.code == "export_corrupt" and "contradict" in e.value.message
    assert _counts(target) == empty


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_existing_collection_is_refused_unless_merged(exported, tmp_path, backend, request):
    from rag import store
    from rag.errors import RagError
    from rag.portable import export_store, import_store
    from rag.store import conversations, ledger, open_configured

    source, _ = exported
    whole = tmp_path / "whole"
    manifest = export_store(source, whole)  # every collection: `default` (empty here and there) and `docs`
    assert [c.name for c in manifest.collections] == ["default", "docs"]
    target = _target(tmp_path, request.getfixturevalue("pg_url") if backend == "postgres" else "")
    done = import_store(target, whole).collections
    assert [(d.collection, d.documents, d.chunks, d.vectors, d.ids_kept) for d in done] == \
        [("default", 0, 0, 0, True), ("docs", 2, 10, 10, True)]
    assert done[1].history == {"ingestion_jobs": 0, "conversations": 1, "questions": 1, "model_calls": 0,
                               "question_feedback": 1}
    with closing(store.open_db(source.db_path)) as a, closing(open_configured(target)) as b:
        ids = "SELECT id, document_id, prev_id, next_id, text FROM chunks ORDER BY id"
        assert [tuple(r) for r in a.execute(ids)] == [tuple(r) for r in b.execute(ids)]
        mine = [(v.ids.tobytes(), v.vectors.tobytes()) for v in store.iter_vectors(a, "docs")]
        assert mine == [(v.ids.tobytes(), v.vectors.tobytes()) for v in store.iter_vectors(b, "docs")]
        assert [t["question"] for t in conversations.turns(b, "c1")] == ["How long is the wall?"]
        assert ledger.get_question(b, "q1")["answer"] == "8851.8 km"
        assert ledger.feedback(b, "q1")[0]["comment"] == "right"
    filled = _counts(target)
    with pytest.raises(RagError) as e:
        import_store(target, whole)
    assert e.value.code == "collection_exists" and e.value.status == 409
    assert _counts(target) == filled

    # merge: a document the collection lacks comes in (its ids past the target's), the one it has stays
    with closing(open_configured(target)) as conn:
        store.delete_document(conn, store.list_documents(conn, "docs")[1].id)
    merged = import_store(target, whole, merge=True).collections[1]
    assert (merged.documents, merged.skipped_documents, merged.chunks, merged.vectors, merged.ids_kept) == (1, 1, 5, 5, False)
    assert sum(merged.history.values()) == 0  # the ledger rows were there already
    with closing(open_configured(target)) as conn:
        assert sorted(d.filename for d in store.list_documents(conn, "docs")) == ["a.txt", "b.txt"]
        assert conn.execute("SELECT min(id) FROM chunks WHERE document_id = "
                            "(SELECT id FROM documents WHERE filename = 'b.txt')").fetchone()[0] > 10
        # the engine's own ids go on past the imported ones (Postgres' identity sequences were moved)
        meta = store.NewDocument(filename="c.txt", format="text", sha256="c" * 64, size_bytes=5)
        added = store.add_document(conn, "docs", meta, [Draft(0, "later")], np.ones((1, 16), np.float32),
                                   embed_model="test-model")
        assert added.document.id > 4 and added.chunk_ids[0] > 20


def test_keys_move_only_when_asked_and_only_onto_their_own_secret(exported, tmp_path, pg_url):
    from rag.errors import RagError
    from rag.portable import export_store, import_store
    from rag.service.auth import open_keys

    source, _ = exported
    keys = open_keys(source)
    keys.db.get().execute("INSERT INTO collections (name, uid, created_at) VALUES ('other', 'u-other', 'x')")
    admin = keys.create("admin", name="admin").key
    reader = keys.create("read", collections=["docs"], name="docs reader").key
    elsewhere = keys.create("read", collections=["other"], name="other reader").key
    revoked = keys.create("write", name="gone")
    keys.revoke(revoked.record.id)
    keys.db.close_all()
    out = tmp_path / "with-keys"
    manifest = export_store(source, out, collection="docs", include_keys=True)
    assert manifest.keys and manifest.members["keys/api_keys.jsonl"].rows == 3  # not the key of `other` only
    assert b"rag_" not in (out / "keys/api_keys.jsonl").read_bytes()  # hashes, never a key

    plain = _target(tmp_path)  # without --include-keys nothing of them comes in
    assert import_store(plain, out).keys is None
    assert not (plain.data_dir / "auth.secret").exists()

    target = _target(tmp_path, pg_url)
    assert import_store(target, out, include_keys=True).keys == 3
    there = open_keys(target)
    assert there.authenticate(admin).role == "admin"
    assert there.authenticate(reader).grants == {"docs": "read"}
    assert there.authenticate(elsewhere) is None and there.authenticate(revoked.key) is None
    there.db.close_all()

    own = _target(tmp_path / "own")  # a store with keys of its own, hashed with its own secret
    mine = open_keys(own)
    mine.create("admin", name="here")
    mine.db.close_all()
    with pytest.raises(RagError) as e:
        import_store(own, out, include_keys=True)
    assert e.value.code == "key_secret_mismatch"
    assert _counts(own)["documents"] == 0
