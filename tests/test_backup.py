"""`rag backup` / `rag restore` of the embedded store, with a real `rag serve` ingesting meanwhile.

What must hold (the design is in `rag.service.backup`):

* a backup taken while documents are being ingested restores into a data dir that passes the crash
  test's invariants: every job done in the copy keeps its document, every pending job re-runs from
  its copied bytes and completes, each file is stored once, the saved FAISS ids equal SQLite's;
* a backup of a settled server restores to the same documents, chunks and search results;
* `rag backup` killed (SIGKILL) part-way leaves the previous backup at its target intact and
  restorable; a damaged backup is refused with `backup_damaged`; a restore over a data dir a server
  uses is refused with `data_dir_in_use`, over a non-empty one without --force with `data_dir_not_empty`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.server import Server
from tests.test_crash import (
    COLLECTION, assert_faiss_matches_sqlite, batch, db_ro, distinctive_queries, poll_until,
)

pytestmark = pytest.mark.skipif(not Path("/usr/share/doc/debian/FAQ/basic-defs.en.html").is_file(),
                                reason="debian-faq is not installed")


def rag(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    """The real console command, in its own process."""
    done = subprocess.run([sys.executable, "-m", "rag_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def refused(done: subprocess.CompletedProcess, code: str) -> None:
    assert done.returncode == 1 and f"error [{code}]" in done.stderr, (done.returncode, done.stderr)


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def source(tmp_path_factory, models_dir, small_embedder_dir):
    root = tmp_path_factory.mktemp("backup")
    env = {"RAG_MODEL_CACHE_DIR": str(models_dir), "RAG_LOAD_GENERATOR": "false",
           "RAG_EMBEDDER": "all-minilm-l6-v2", "RAG_REQUESTS_PER_MINUTE": "1000000"}
    server = Server(root / "source", log=root / "source.log", env=env).start()
    with server.client() as c:
        assert c.post("/v1/collections", json={"name": COLLECTION}).status_code == 201
    yield server
    server.stop()


def sibling(server: Server, data_dir: Path) -> Server:
    """A server with the source's settings on another data dir, holding the source's admin key (restored)."""
    return Server(data_dir, log=data_dir.parent / f"{data_dir.name}.log",
                  env={k: v for k, v in server.env.items() if k != "RAG_DATA_DIR"})


def settled_state(c, data_dir: Path) -> dict:
    """Documents (filename, sha256, chunks with ids and text) as the API lists them."""
    docs = c.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]
    out = {}
    for d in docs:
        chunks = c.get(f"/v1/collections/{COLLECTION}/documents/{d['id']}/chunks").json()["chunks"]
        out[d["id"]] = (d["filename"], d["sha256"], [(ch["id"], ch["text"]) for ch in chunks])
    return out


def searches(c, queries: list[str]) -> list[list[tuple]]:
    return [[(r["chunk_id"], r["document_id"], r["rank"], round(r["scores"]["fused"], 6))
             for r in c.post(f"/v1/collections/{COLLECTION}/search", json={"query": q, "k": 8}).json()["results"]]
            for q in queries]


def test_backup_while_ingesting_restores_to_a_consistent_data_dir(source, tmp_path):
    from rag.service.backup import create_backup
    from rag.settings import Settings

    files = batch()
    with source.client() as c:
        r = c.post(f"/v1/collections/{COLLECTION}/documents",
                   files=[("files", (name, data, "application/octet-stream")) for name, data in files])
        assert r.status_code == 202, r.text
        ids = [j["id"] for j in r.json()["jobs"]]
        # once some documents are stored and others not yet: in this process, at once (the command's own
        # start-up could let a fast machine finish the batch first)
        poll_until(c, ids, lambda js: any(j["status"] == "done" for j in js.values())
                   and any(j["status"] != "done" for j in js.values()),
                   missed=lambda js: all(j["status"] == "done" for j in js.values()))
        create_backup(Settings(data_dir=source.data_dir), tmp_path / "during")
        during = manifest(tmp_path / "during")
        assert during["counts"]["pending_jobs"] >= 1 and during["counts"]["documents"] >= 1, during["counts"]
        with closing(sqlite3.connect(tmp_path / "during" / "rag.sqlite3")) as conn:
            copied = dict(conn.execute("SELECT id, status FROM ingestion_jobs").fetchall())
            done_in_copy = dict(conn.execute("SELECT id, document_id FROM ingestion_jobs WHERE status = 'done'").fetchall())
            assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == during["counts"]["chunks"]
        assert set(copied) == set(ids)
        pending = {i for i, s in copied.items() if s in ("queued", "running")}
        assert {p.name for p in (tmp_path / "during" / "uploads").iterdir()} == pending

        poll_until(c, ids, lambda js: all(j["status"] == "done" for j in js.values()), timeout=300, interval=0.2)
        assert_faiss_matches_sqlite(source.data_dir)  # the saved file is the settled state's
        rag("backup", tmp_path / "settled", "--data-dir", source.data_dir)
        settled = manifest(tmp_path / "settled")
        assert settled["counts"]["pending_jobs"] == 0
        assert {col["name"]: col["index"] for col in settled["collections"]}[COLLECTION] == "copied", settled
        expected = settled_state(c, source.data_dir)
        queries_by_doc = distinctive_queries({d: [{"id": i, "text": t} for i, t in chunks]
                                              for d, (_, _, chunks) in expected.items()})
        queries = [q for _, q in queries_by_doc.values()] + ["How do I keep my Debian system up to date?", "kernel"]
        expected_hits = searches(c, queries)

    # a data dir a server uses is not restored over, nor a non-empty one without --force
    refused(rag("restore", tmp_path / "settled", "--data-dir", source.data_dir, "--force", check=False), "data_dir_in_use")

    # ---- the backup taken mid-ingestion: the crash test's invariants after a start
    rag("restore", tmp_path / "during", "--data-dir", tmp_path / "r1")
    refused(rag("restore", tmp_path / "during", "--data-dir", tmp_path / "r1", check=False), "data_dir_not_empty")
    r1 = sibling(source, tmp_path / "r1").start()
    try:
        with r1.client() as c:
            jobs = poll_until(c, ids, lambda js: all(j["status"] in ("done", "failed") for j in js.values()),
                              timeout=300, interval=0.2)
            assert {i: j["status"] for i, j in jobs.items()} == {i: "done" for i in ids}, jobs
            for job_id, doc_id in done_in_copy.items():
                assert jobs[job_id]["document_id"] == doc_id, "a job done in the backup changed its document"
            restored = settled_state(c, r1.data_dir)
            assert sorted(f for f, _, _ in restored.values()) == sorted(name for name, _ in files)
            assert sorted((f, h) for f, h, _ in restored.values()) == sorted((f, h) for f, h, _ in expected.values())
            assert list((r1.data_dir / "uploads").iterdir()) == []
            assert_faiss_matches_sqlite(r1.data_dir)
    finally:
        r1.stop()
    with closing(db_ro(r1.data_dir)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # ---- the settled backup: the same documents, chunk ids and search results
    rag("restore", tmp_path / "settled", "--data-dir", tmp_path / "r2")
    r2 = sibling(source, tmp_path / "r2").start()
    try:
        with r2.client(key=source.admin_key) as c:  # the restored key secret verifies the source's keys
            assert settled_state(c, r2.data_dir) == expected
            assert searches(c, queries) == expected_hits
        assert_faiss_matches_sqlite(r2.data_dir)
    finally:
        r2.stop()


PAUSED_BACKUP = """
import sys, time
from pathlib import Path
from rag.service.backup import create_backup
from rag.settings import Settings

def step(message):
    print(message, flush=True)
    if message.startswith(sys.argv[3]):
        time.sleep(600)  # holds the process at this step until the test kills it

create_backup(Settings(data_dir=Path(sys.argv[2])), Path(sys.argv[1]), on_step=step)
"""


def killed_backup(target: Path, data_dir: Path, step: str) -> None:
    """`create_backup`, paused at `step` (a deterministic kill point), then SIGKILLed."""
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_BACKUP, str(target), str(data_dir), step],
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.startswith(step):
                break
            assert time.monotonic() < deadline
        else:
            pytest.fail(f"the backup ended before its step {step!r}: {proc.wait()}")
        time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(10)


def test_killed_backup_leaves_the_previous_one_and_a_damaged_one_is_refused(source, tmp_path):
    from rag.service.backup import verify_backup

    with source.client() as c:
        if not c.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]:  # this test alone
            r = c.post(f"/v1/collections/{COLLECTION}/documents",
                       files=[("files", (n, d, "application/octet-stream")) for n, d in batch()[:2]])
            ids = [j["id"] for j in r.json()["jobs"]]
            poll_until(c, ids, lambda js: all(j["status"] == "done" for j in js.values()), timeout=300)
        count = len(c.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"])

    target = tmp_path / "nightly"
    rag("backup", target, "--data-dir", source.data_dir)
    before = manifest(target)
    for step in ("database", "indexes"):
        killed_backup(target, source.data_dir, step)
        assert list(tmp_path.glob(".nightly.partial-*")), "the kill came after the backup, not part-way"
        assert verify_backup(target) == before, f"killed at {step}: the previous backup changed"
    rag("backup", target, "--data-dir", source.data_dir)  # the next one clears what the killed ones left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nightly"]
    assert manifest(target)["created_at"] > before["created_at"]

    rag("restore", target, "--data-dir", tmp_path / "restored")
    with closing(db_ro(tmp_path / "restored")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == count

    def damaged(change) -> subprocess.CompletedProcess:
        copy = tmp_path / "damaged"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(target, copy)
        change(copy)
        shutil.rmtree(tmp_path / "into", ignore_errors=True)
        done = rag("restore", copy, "--data-dir", tmp_path / "into", check=False)
        assert not (tmp_path / "into" / "rag.sqlite3").exists(), "a refused restore wrote the data dir"
        return done

    def flip_a_byte(copy: Path) -> None:
        with open(copy / "rag.sqlite3", "r+b") as fh:
            fh.seek(os.path.getsize(copy / "rag.sqlite3") // 2)
            b = fh.read(1)
            fh.seek(-1, 1)
            fh.write(bytes([b[0] ^ 0xFF]))

    refused(done := damaged(flip_a_byte), "backup_damaged")
    assert "rag.sqlite3: sha256" in done.stderr
    refused(damaged(lambda copy: (copy / "auth.secret").unlink()), "backup_damaged")
    refused(damaged(lambda copy: (copy / "uploads" / "extra").write_bytes(b"x")), "backup_damaged")
    refused(damaged(lambda copy: (copy / "manifest.json").unlink()), "backup_damaged")
    refused(damaged(lambda copy: (copy / "manifest.json").write_text("{")), "backup_damaged")
    # a backup replaces only an earlier backup
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    refused(rag("backup", tmp_path / "notes", "--data-dir", source.data_dir, check=False), "backup_target_not_empty")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
