"""Crash safety of ingestion: a real `rag serve` is SIGKILLed at several points of a batch upload
and restarted on the same data dir.

What must hold (the design: an acknowledged upload is durable, adding a document is one SQLite
transaction, FAISS is derived and repaired at start-up):

* at the moment of the kill, SQLite holds exactly the documents of the jobs that were done: no
  chunk of an unfinished document, and the bytes of every unfinished job are on disk;
* after the restart every job that was done is still done, with the same document, searchable;
  every job that was queued or running is re-queued from its stored bytes and completes;
* each file ends up stored exactly once; search never shows a chunk of an unfinished document;
* the saved FAISS ids equal SQLite's chunk ids, and `PRAGMA integrity_check` is `ok`.
"""

from __future__ import annotations

import gzip
import math
import re
import shutil
import sqlite3
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.server import Server

FAQ = Path("/usr/share/doc/debian/FAQ")
# Six distinct chapters of the Debian FAQ (HTML, 7-18 KB each, 5-13 chunks each).
PAGES = ["basic-defs", "compatibility", "getting-debian", "kernel", "nextrelease", "uptodate"]
BIG = FAQ / "debian-faq.en.txt.gz"  # the whole FAQ as text; its first 70 KB are ~70 chunks (3 embedding batches)
COLLECTION = "crash"

pytestmark = pytest.mark.skipif(not (FAQ / "basic-defs.en.html").is_file() or not BIG.is_file(),
                                reason="debian-faq is not installed")


def batch() -> list[tuple[str, bytes]]:
    return [(f"{p}.en.html", (FAQ / f"{p}.en.html").read_bytes()) for p in PAGES]


def big_document() -> tuple[str, bytes]:
    text = gzip.decompress(BIG.read_bytes())
    return ("debian-faq-part.en.txt", text[:text.index(b"\n", 70_000) + 1])


# --------------------------------------------------------------------------- helpers


def jobs_now(client: httpx.Client, ids: list[str]) -> dict[str, dict]:
    return {i: client.get(f"/v1/jobs/{i}").json() for i in ids}


def poll_until(client: httpx.Client, ids: list[str], cond, timeout: float = 180, interval: float = 0.05,
               missed=lambda jobs: False) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        jobs = jobs_now(client, ids)
        if cond(jobs):
            return jobs
        assert not missed(jobs), f"the kill point passed unseen: {[(j['status'], j['progress']) for j in jobs.values()]}"
        assert time.monotonic() < deadline, f"kill point not reached in {timeout}s: {[j['status'] for j in jobs.values()]}"
        time.sleep(interval)


def crash_copy(data_dir: Path, scratch: Path) -> sqlite3.Connection:
    """The database as the crash left it, opened on a copy so that only the server recovers the real one."""
    scratch.mkdir()
    for suffix in ("", "-wal"):
        src = data_dir / f"rag.sqlite3{suffix}"
        if src.exists():
            shutil.copy2(src, scratch / src.name)
    conn = sqlite3.connect(scratch / "rag.sqlite3")
    conn.row_factory = sqlite3.Row
    return conn


def db_ro(data_dir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{data_dir / 'rag.sqlite3'}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


_FAISS_RE = re.compile(r"^dense-(\d{12})-[0-9a-f]{8}\.faiss$")


def newest_saved(folder: Path) -> tuple[int, Path] | None:
    files = sorted(((int(m.group(1)), p) for p in (folder.iterdir() if folder.is_dir() else ())
                    if (m := _FAISS_RE.match(p.name))), reverse=True)
    return files[0] if files else None


def faiss_ids(path: Path) -> set[int]:
    import faiss

    index = faiss.read_index(str(path))  # keep this reference: it owns the C++ object
    assert isinstance(index, faiss.IndexIDMap2), type(index)
    return set(faiss.vector_to_array(index.id_map).tolist())


def sqlite_state(data_dir: Path) -> tuple[str, int, set[int]]:
    with closing(db_ro(data_dir)) as conn:
        conn.execute("BEGIN")
        uid, seq = conn.execute("SELECT uid, change_seq FROM collections WHERE name = ?", (COLLECTION,)).fetchone()
        ids = {r[0] for r in conn.execute("SELECT id FROM chunks WHERE collection = ?", (COLLECTION,))}
        conn.execute("COMMIT")
    return uid, int(seq), ids


def assert_faiss_matches_sqlite(data_dir: Path, timeout: float = 30) -> None:
    """Waits for the debounced autosave of the current change_seq, then compares id sets."""
    deadline = time.monotonic() + timeout
    while True:
        uid, seq, ids = sqlite_state(data_dir)
        saved = newest_saved(data_dir / "indexes" / uid)
        if saved is not None:
            assert saved[0] <= seq, f"saved FAISS seq {saved[0]} ahead of SQLite {seq}"
            if saved[0] == seq:
                try:
                    got = faiss_ids(saved[1])
                except RuntimeError:  # superseded and deleted while we read it
                    continue
                assert got == ids, f"FAISS has {len(got - ids)} extra and lacks {len(ids - got)} ids"
                return
        assert time.monotonic() < deadline, f"no FAISS file for seq {seq} after {timeout}s (newest: {saved})"
        time.sleep(0.2)


def _terms(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def distinctive_queries(chunks_by_doc: dict[int, list[dict]], width: int = 12) -> dict[int, tuple[int, str]]:
    """Per document: (chunk id, the run of `width` words of it with the highest summed IDF over all
    chunks of the collection), i.e. a phrase that is typical of that chunk and rare elsewhere."""
    all_chunks = [ch for chunks in chunks_by_doc.values() for ch in chunks]
    df = Counter(t for ch in all_chunks for t in _terms(ch["text"]))
    idf = {t: math.log(len(all_chunks) / n) for t, n in df.items()}
    out = {}
    for doc_id, chunks in chunks_by_doc.items():
        best = (-1.0, 0, "")
        for ch in chunks:
            words = ch["text"].split()
            for i in range(max(1, len(words) - width + 1)):
                phrase = " ".join(words[i:i + width])
                score = sum(idf.get(t, 0.0) for t in _terms(phrase))
                if score > best[0]:
                    best = (score, ch["id"], phrase)
        out[doc_id] = best[1:]
    return out


# --------------------------------------------------------------------------- the test

KILL_POINTS = ["queued", "running", "before_autosave", "mid_embedding"]


@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_sigkill_during_ingestion_loses_nothing_acknowledged(kill_point, tmp_path, models_dir, small_embedder_dir):
    data_dir = tmp_path / "state"
    server = Server(data_dir, log=tmp_path / "server.log", env={
        "RAG_MODEL_CACHE_DIR": str(models_dir),
        "RAG_LOAD_GENERATOR": "false",
        "RAG_EMBEDDER": "all-minilm-l6-v2",
        # the test polls every job every 50 ms to hit its kill point; the per-key limit is not under test
        "RAG_REQUESTS_PER_MINUTE": "1000000",
    })
    server.start()
    try:
        _run(kill_point, server, tmp_path)
    finally:
        server.stop()


def _run(kill_point: str, server: Server, tmp_path: Path) -> None:
    data_dir = server.data_dir
    files = batch()
    if kill_point == "mid_embedding":
        files = [big_document(), *files[:2]]

    with server.client() as c:
        assert c.post("/v1/collections", json={"name": COLLECTION}).status_code == 201
        resp = c.post(f"/v1/collections/{COLLECTION}/documents",
                      files=[("files", (name, data, "application/octet-stream")) for name, data in files])
        assert resp.status_code == 202, resp.text
        ids = [j["id"] for j in resp.json()["jobs"]]
        filename_of = {j["id"]: j["filename"] for j in resp.json()["jobs"]}

        if kill_point == "queued":
            seen = {}
        elif kill_point == "running":
            seen = poll_until(c, ids, lambda js: any(j["status"] == "done" for j in js.values())
                              and any(j["status"] == "running" for j in js.values()),
                              missed=lambda js: all(j["status"] == "done" for j in js.values()))
        elif kill_point == "before_autosave":
            seen = poll_until(c, ids, lambda js: all(j["status"] in ("done", "failed") for j in js.values()))
        else:  # mid_embedding of the big document (the first job)
            seen = poll_until(c, ids, lambda js: js[ids[0]]["progress"].get("stage") == "embedding"
                              and js[ids[0]]["progress"].get("fraction", 1) < 0.9,
                              missed=lambda js: js[ids[0]]["status"] in ("done", "failed")
                              or js[ids[0]]["progress"].get("stage") == "indexing")
        server.kill()

    done_before = {i: j["document_id"] for i, j in seen.items() if j["status"] == "done"}
    assert all(j["status"] != "failed" for j in seen.values()), seen
    if kill_point == "running":
        assert done_before and len(done_before) < len(ids)
    if kill_point == "before_autosave":
        assert len(done_before) == len(ids)
    if kill_point == "mid_embedding":
        assert ids[0] not in done_before

    # ---- the state the crash left, before anything recovers it
    with closing(crash_copy(data_dir, tmp_path / "crash-copy")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        jobs = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM ingestion_jobs")}
        assert set(jobs) == set(ids), "an acknowledged upload has no job row"
        for job_id, doc_id in done_before.items():
            assert jobs[job_id]["status"] == "done" and jobs[job_id]["document_id"] == doc_id
        done_docs = {j["document_id"] for j in jobs.values() if j["status"] == "done"}
        unfinished = [i for i, j in jobs.items() if j["status"] in ("queued", "running")]
        assert len(done_docs) + len(unfinished) == len(ids)
        for job_id in unfinished:
            assert jobs[job_id]["document_id"] is None
            assert (data_dir / "uploads" / job_id).is_file(), "the bytes of an acknowledged upload are gone"
        docs = {r["id"] for r in conn.execute("SELECT id FROM documents")}
        assert docs == done_docs, "a document without a done job (or a done job without its document)"
        chunk_docs = {r[0] for r in conn.execute("SELECT DISTINCT document_id FROM chunks")}
        assert chunk_docs <= done_docs, "chunks of an unfinished document were committed"
        n_chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM chunk_vectors").fetchone()[0] == n_chunks
        for doc_id, count in conn.execute("SELECT id, chunk_count FROM documents"):
            assert conn.execute("SELECT count(*) FROM chunks WHERE document_id = ?", (doc_id,)).fetchone()[0] == count
    if kill_point != "before_autosave":
        assert unfinished, "the kill came too late: nothing was left unfinished"
    with closing(crash_copy(data_dir, tmp_path / "crash-copy-2")) as conn:
        uid, seq = conn.execute("SELECT uid, change_seq FROM collections WHERE name = ?", (COLLECTION,)).fetchone()
    saved = newest_saved(data_dir / "indexes" / uid)
    # the FAISS file on disk may lag SQLite (that is what the restart repairs), never lead it
    assert saved is None or saved[0] <= seq

    # ---- restart on the same data dir
    server.start()
    with server.client() as c:
        # while the re-queued jobs run, search shows only documents whose job is done
        queries = ["How do I keep my Debian system up to date?", "kernel"]
        for _ in range(15):
            results = [r for q in queries for r in c.post(f"/v1/collections/{COLLECTION}/search",
                                                          json={"query": q, "k": 20}).json()["results"]]
            jobs = jobs_now(c, ids)
            finished_docs = {j["document_id"] for j in jobs.values() if j["status"] == "done"}
            assert {r["document_id"] for r in results} <= finished_docs
            if len(finished_docs) == len(ids):
                break
            time.sleep(0.5)

        jobs = poll_until(c, ids, lambda js: all(j["status"] in ("done", "failed") for j in js.values()),
                          timeout=240, interval=0.2)
        # the design: interrupted jobs are re-queued from their stored bytes and complete
        assert {i: j["status"] for i, j in jobs.items()} == {i: "done" for i in ids}, \
            {i: (j["status"], j["error"]) for i, j in jobs.items()}
        for job_id, doc_id in done_before.items():
            assert jobs[job_id]["document_id"] == doc_id, "a finished job changed its document"
        for job_id in unfinished:
            assert not jobs[job_id]["progress"].get("duplicate"), "a re-run found a half-stored copy of itself"

        docs = c.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]
        assert sorted(d["filename"] for d in docs) == sorted(filename_of.values()), "a file was stored twice or lost"
        assert {d["id"] for d in docs} == {j["document_id"] for j in jobs.values()}

        # every document is searchable: a passage from it ranks its chunk in the top 3 on BM25
        chunks_by_doc = {}
        for doc in docs:
            chunks = c.get(f"/v1/collections/{COLLECTION}/documents/{doc['id']}/chunks").json()["chunks"]
            assert len(chunks) == doc["chunk_count"] > 0
            chunks_by_doc[doc["id"]] = chunks
        queries_by_doc = distinctive_queries(chunks_by_doc)
        for doc in docs:
            chunk_id, query = queries_by_doc[doc["id"]]
            results = c.post(f"/v1/collections/{COLLECTION}/search", json={"query": query, "k": 5}).json()["results"]
            hit = next((r for r in results if r["chunk_id"] == chunk_id), None)
            assert hit is not None and hit["rank"] <= 3, (doc["filename"], query)
            assert hit["scores"]["bm25_rank"] is not None and hit["scores"]["bm25_rank"] <= 3
            assert hit["scores"]["dense_rank"] is not None

        assert list((data_dir / "uploads").iterdir()) == [], "stored upload bytes left behind"
        assert_faiss_matches_sqlite(data_dir)

    # ---- a clean stop (SIGTERM flushes), then the stores are checked at rest
    server.stop()
    with closing(db_ro(data_dir)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM ingestion_jobs WHERE status != 'done'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM chunk_vectors v LEFT JOIN chunks c ON c.id = v.chunk_id "
                            "WHERE c.id IS NULL").fetchone()[0] == 0
    uid, seq, ids_sql = sqlite_state(data_dir)
    saved = newest_saved(data_dir / "indexes" / uid)
    assert saved is not None and saved[0] == seq and faiss_ids(saved[1]) == ids_sql
