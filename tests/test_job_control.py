"""Bounded work per document, cancelling jobs, and a bounded queue, through the HTTP API with the
real small embedder.

Where a test needs a job to be *running* at a known moment, the embedder's batch call waits on an
event the test controls (a gate): only the timing is arranged, the embedding itself is real.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing, contextmanager

import pytest

from tests.server import local_client

TEXT = "\n\n".join(f"Paragraph {i}. The pump station number {i} moves {i * 7} litres per second "
                   f"through the northern canal, and its operator checks the seals every {i % 9 + 1} days."
                   for i in range(60))


@contextmanager
def app_client(settings, **kwargs):
    from api.app import create_app

    with local_client(create_app(settings), settings.data_dir, **kwargs) as client:
        yield client


class Gate:
    """Holds every embedding batch until opened; says when the first batch is waiting."""

    def __init__(self, embedder):
        self.open = threading.Event()
        self.waiting = threading.Event()
        self._real = embedder.embed_passages

        def embed(texts):
            self.waiting.set()
            assert self.open.wait(120), "the test never opened the gate"
            return self._real(texts)

        embedder.embed_passages = embed

    def close(self) -> None:
        self.open.set()


def upload(client, name: str, text: str = TEXT, collection: str = "default"):
    return client.post(f"/v1/collections/{collection}/documents", files=[("files", (name, text.encode()))])


def wait_job(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def passages(client):
    """What ingestion embeds with (the child process by default, see rag.models.embed_process)."""
    return client.app.state.runtime.ingest.pipeline.passages


def gated(client) -> Gate:
    return Gate(passages(client))


def chunk_count(client) -> int:
    with closing(sqlite3.connect(client.app.state.runtime.settings.db_path)) as db:
        return db.execute("SELECT count(*) FROM chunks").fetchone()[0]


# --------------------------------------------------------------------------- cancel


def test_cancel_a_running_job_stops_it_and_stores_nothing(small_settings):
    with app_client(small_settings) as client:
        gate = gated(client)
        job_id = upload(client, "pumps.txt").json()["jobs"][0]["id"]
        assert gate.waiting.wait(60)
        r = client.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["error"]["code"] == "job_cancelled"
        gate.close()
        client.app.state.runtime.ingest.wait_idle(60)
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "cancelled" and job["document_id"] is None
        assert chunk_count(client) == 0
        assert not (small_settings.data_dir / "uploads" / job_id).exists()
        # the worker is free for the next upload
        done = wait_job(client, upload(client, "next.txt", TEXT + " Another.").json()["jobs"][0]["id"])
        assert done["status"] == "done" and chunk_count(client) > 0


def test_cancel_a_queued_job_means_it_never_runs(small_settings):
    with app_client(small_settings.model_copy(update={"ingest_workers": 1})) as client:  # the second job waits
        gate = gated(client)
        first = upload(client, "first.txt").json()["jobs"][0]["id"]
        assert gate.waiting.wait(60)
        second = upload(client, "second.txt", TEXT + " Second.").json()["jobs"][0]["id"]
        r = client.delete(f"/v1/jobs/{second}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert not (small_settings.data_dir / "uploads" / second).exists()
        gate.close()
        assert wait_job(client, first)["status"] == "done"
        client.app.state.runtime.ingest.wait_idle(60)
        job = client.get(f"/v1/jobs/{second}").json()
        assert job["status"] == "cancelled" and job["started_at"] is None
        docs = client.get("/v1/collections/default/documents").json()["documents"]
        assert [d["filename"] for d in docs] == ["first.txt"]


def test_cancel_errors(small_settings):
    with app_client(small_settings) as client:
        done = wait_job(client, upload(client, "a.txt").json()["jobs"][0]["id"])
        r = client.delete(f"/v1/jobs/{done['id']}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"
        r = client.delete("/v1/jobs/" + "0" * 32)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
        client.post("/v1/collections", json={"name": "other"})
        reader = client.post("/v1/keys", json={"role": "read"}).json()["key"]
        stranger = client.post("/v1/keys", json={"role": "write", "collections": ["other"]}).json()["key"]
        gate = gated(client)
        job_id = upload(client, "b.txt", TEXT + " B.").json()["jobs"][0]["id"]
        assert gate.waiting.wait(60)
        r = client.delete(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {reader}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = client.delete(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {stranger}"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
        gate.close()
        assert wait_job(client, job_id)["status"] == "done"


# --------------------------------------------------------------------------- a bounded queue


def test_a_full_queue_answers_429_with_retry_after_and_writes_nothing(small_settings):
    settings = small_settings.model_copy(update={"max_queued_jobs": 2, "ingest_workers": 1})
    with app_client(settings) as client:
        gate = gated(client)
        running = upload(client, "running.txt").json()["jobs"][0]["id"]
        assert gate.waiting.wait(60)
        queued = [upload(client, f"q{i}.txt", TEXT + f" {i}.").json()["jobs"][0]["id"] for i in range(2)]
        before = sorted(p.name for p in (settings.data_dir / "uploads").iterdir())
        r = upload(client, "over.txt", TEXT + " over.")
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        assert int(r.headers["Retry-After"]) >= 1
        # two files in one request count as two places
        r = client.delete(f"/v1/jobs/{queued[0]}")
        assert r.status_code == 200
        two = client.post("/v1/collections/default/documents",
                          files=[("files", ("x.txt", b"x " * 50)), ("files", ("y.txt", b"y " * 50))])
        assert two.status_code == 429
        assert sorted(p.name for p in (settings.data_dir / "uploads").iterdir()) == sorted(set(before) - {queued[0]})
        gate.close()
        for job_id in (running, queued[1]):
            assert wait_job(client, job_id)["status"] == "done"
        assert upload(client, "after.txt", TEXT + " after.").status_code == 202


# --------------------------------------------------------------------------- bounded work per document


@pytest.mark.parametrize("limit, code", [({"max_document_chars": 2000}, "document_too_long"),
                                         ({"max_document_chunks": 3}, "too_many_chunks"),
                                         ({"max_embed_seconds": 1.0, "embed_batch_size": 2}, "embed_time_limit")])
def test_a_document_over_a_limit_fails_with_its_code_and_stores_nothing(small_settings, limit, code):
    with app_client(small_settings.model_copy(update=limit)) as client:
        embedder = passages(client)
        real = embedder.embed_passages

        def slow(texts):  # 0.4 s a batch: the big document needs more batches than 1 s allows, the small one 1
            time.sleep(0.4)
            return real(texts)

        embedder.embed_passages = slow
        job = wait_job(client, upload(client, "big.txt").json()["jobs"][0]["id"])
        assert job["status"] == "failed" and job["error"]["code"] == code, job
        assert chunk_count(client) == 0
        small = wait_job(client, upload(client, "small.txt", "A short note about pumps.").json()["jobs"][0]["id"])
        assert small["status"] == "done"


# --------------------------------------------------------------------------- restarts


def test_a_job_that_was_running_at_three_crashes_is_not_run_again(small_settings):
    from rag import store

    with app_client(small_settings) as client:
        pass  # creates the database
    uploads = small_settings.data_dir / "uploads"
    with closing(store.connect(small_settings.db_path)) as conn:
        for name, attempt in (("killer.txt", 3), ("unlucky.txt", 1)):
            job = store.create_job(conn, "default", name, job_id=name.split(".")[0] * 2)
            (uploads / job.id).write_bytes(TEXT.encode())
            store.update_job(conn, job.id, status="running", progress={"stage": "embedding", "attempt": attempt})
    with app_client(small_settings) as client:
        client.app.state.runtime.ingest.wait_idle(120)
        killer = client.get("/v1/jobs/killerkiller").json()
        unlucky = client.get("/v1/jobs/unluckyunlucky").json()
    assert killer["status"] == "failed" and killer["error"]["code"] == "interrupted"
    assert "3 times" in killer["error"]["message"]
    assert unlucky["status"] == "done" and unlucky["progress"]["attempt"] == 2
