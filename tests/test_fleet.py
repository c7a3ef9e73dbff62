"""Several servers on one PostgreSQL, what the scale-out issue's fleet items promise: exactly one admin
key at a first start on an empty store, a dead server's questions closed as `interrupted` by another
one, and a key's limits counted once across servers.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import closing
from dataclasses import dataclass

import psycopg
import pytest

from rag import store
from rag.store import ledger, migrations, pg_schema, servers
from rag.store.db import integrity_check
from tests.conftest import fresh_database
from tests.server import Server
from tests.test_ask_e2e import DATA, GARAGE_Q, cli_env, wait_job
from tests.test_key_grants import _connect, conn  # noqa: F401 - `conn`: a fixture over both backends
from tests.test_usage_api import Call


def test_first_start_of_several_servers_creates_exactly_one_admin_key(tmp_path, pg_url, caplog):
    """Eight fresh servers' start-up (the key service over its store, then `bootstrap`) at once on one
    empty Postgres without RAG_ADMIN_KEY: one admin key row, one `admin.key` file, and the others log
    which host and file hold it."""
    from rag.service.auth import open_keys
    from rag.settings import Settings

    n = 8
    services = [open_keys(Settings(data_dir=tmp_path / f"server{i}", database_url=pg_url, admin_key=None, auth="on"))
                for i in range(n)]
    for i in range(n):
        (tmp_path / f"server{i}").mkdir()
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def start(keys) -> None:
        try:
            barrier.wait()
            keys.bootstrap()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    caplog.set_level("INFO", logger="rag.service.auth")
    threads = [threading.Thread(target=start, args=(keys,)) for keys in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    written = [i for i in range(n) if (tmp_path / f"server{i}" / "admin.key").exists()]
    assert len(written) == 1, written
    with closing(psycopg.connect(pg_url)) as conn:
        rows = conn.execute("SELECT id, name FROM api_keys WHERE role = 'admin'").fetchall()
    assert len(rows) == 1, rows
    path = tmp_path / f"server{written[0]}" / "admin.key"
    assert str(path) in rows[0][1]
    told = [r.getMessage() for r in caplog.records if "exists already" in r.getMessage()]
    assert len(told) == n - 1 and all(str(path) in m for m in told), told
    assert services[0].authenticate(path.read_text().strip()).is_admin  # any server accepts it
    for keys in services:
        keys.db.close_all()


# ---------------------------------------------------------------- a dead server's questions, at the store


def _ask(conn, qid: str, server: str | None, calls: int = 0) -> None:
    ledger.start_question(conn, qid, "default", f"question {qid}", budget={}, options={}, models={}, server=server)
    for n in range(1, calls + 1):
        ledger.record_call(conn, qid, Call(n, 100 * n, 10))


def test_questions_of_a_dead_server_are_interrupted_with_their_calls_kept(conn):
    """A server silent longer than the lease, one that left, one whose pid is gone: their running
    questions end `interrupted` with their calls and totals; a live server's questions (and, while
    one lives, questions from before servers were recorded) are left running."""
    servers.register(conn, "me", host="h1", pid=1, data_dir="/d1")
    servers.register(conn, "silent", host="h2", pid=2, data_dir="/d2")
    servers.register(conn, "live", host="h3", pid=3, data_dir="/d3")
    servers.register(conn, "no-pid", host="h1", pid=4, data_dir="/d4")
    with store.transaction(conn):
        conn.execute("UPDATE servers SET heartbeat = heartbeat - 100 WHERE id = 'silent'")
    for qid, server in (("q-me", "me"), ("q-silent", "silent"), ("q-live", "live"), ("q-old", None), ("q-nopid", "no-pid")):
        _ask(conn, qid, server, calls=2 if qid == "q-silent" else 0)

    closed = servers.reap(conn, me="me", lease_s=30, gone=lambda s: s.id == "no-pid")
    assert sorted(closed) == ["q-nopid", "q-silent"]
    q = ledger.get_question(conn, "q-silent")
    assert q["status"] == "interrupted" and q["error"]["code"] == "interrupted" and "h2 pid 2" in q["error"]["message"]
    assert [c["prompt_tokens"] for c in q["calls"]] == [100, 200]
    assert (q["usage"]["model_calls"], q["usage"]["prompt_tokens"], q["usage"]["completion_tokens"]) == (2, 300, 20)
    assert {ledger.get_question(conn, i)["status"] for i in ("q-me", "q-live", "q-old")} == {"running"}
    assert sorted(s.id for s in servers.list_servers(conn)) == ["live", "me"]
    assert servers.reap(conn, me="me", lease_s=30) == []  # closed once

    servers.leave(conn, "live")  # left while its question ran (a shutdown that did not wait for it)
    assert sorted(servers.reap(conn, me="me", lease_s=30)) == ["q-live", "q-old"]
    assert ledger.get_question(conn, "q-me")["status"] == "running"
    assert servers.beat(conn, "me") and not servers.beat(conn, "silent")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_before_servers_upgrades_with_its_questions(backend, tmp_path, monkeypatch, request):
    """m012/p005 on a database with questions: every row and call survives (SQLite widens the status
    constraint without rebuilding the table, which would cascade-delete calls), a question from before
    has no server, and `interrupted` is a status from then on."""
    module, old = (migrations, 11) if backend == "sqlite" else (pg_schema, 4)
    url = request.getfixturevalue("pg_url") if backend == "postgres" else ""
    monkeypatch.setattr(module, "MIGRATIONS", module.MIGRATIONS[:old])
    conn = _connect(backend, tmp_path, url)
    for qid in ("left", "done"):  # as the code before it wrote them
        conn.execute("INSERT INTO questions (id, collection, question, status, budget, options, created_at)"
                     " VALUES (?, 'default', 'q', 'running', '{}', '{}', ?)", (qid, store.utcnow()))
    ledger.record_call(conn, "left", Call(1, 50, 5))
    ledger.finish_question(conn, "done", status="answered", result={"answer": "a"}, trace=None, seconds=1.0)
    with pytest.raises(Exception, match="(?i)check"):
        with store.transaction(conn):
            conn.execute("UPDATE questions SET status = 'interrupted' WHERE id = 'left'")
    before = [tuple(r) for r in conn.execute("SELECT id, status, answer FROM questions ORDER BY id")]
    conn.close()
    monkeypatch.undo()

    conn = _connect(backend, tmp_path, url)
    try:
        assert module.current_version(conn) == module.latest_version() >= old + 1
        assert [tuple(r) for r in conn.execute("SELECT id, status, answer FROM questions ORDER BY id")] == before
        assert conn.execute("SELECT server_id FROM questions WHERE id = 'left'").fetchone()[0] is None
        assert servers.reap(conn, me="new", lease_s=30) == ["left"]  # no other process: a crash leftover
        q = ledger.get_question(conn, "left")
        assert q["status"] == "interrupted" and q["usage"]["prompt_tokens"] == 50 and len(q["calls"]) == 1
        if backend == "sqlite":
            assert integrity_check(conn) == []
    finally:
        conn.close()


def test_a_process_on_one_folder_leaves_a_live_servers_questions_and_closes_a_dead_ones(tmp_path):
    """The embedded store: a process starting beside a live server (`rag ask`, `rag replay`, `rag mcp`)
    leaves its running question alone; once that server's process is gone its question is closed at
    the next beat, without waiting for the lease; so is one of an earlier process with this pid."""
    import os
    import socket
    import subprocess
    import sys

    from rag.service.presence import Presence
    from rag.settings import Settings

    settings = Settings(data_dir=tmp_path, server_lease_s=3600)
    db = store.open_store(settings)
    conn = db.get()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        servers.register(conn, "server", host=socket.gethostname(), pid=other.pid, data_dir=str(tmp_path))
        servers.register(conn, "earlier", host=socket.gethostname(), pid=os.getpid(), data_dir=str(tmp_path))
        _ask(conn, "q-server", "server", calls=1)
        _ask(conn, "q-earlier", "earlier")
        presence = Presence(settings, db, shared=False)
        presence.start()
        assert ledger.get_question(conn, "q-server")["status"] == "running"
        assert ledger.get_question(conn, "q-earlier")["status"] == "interrupted"
        other.kill()
        other.wait(10)
        assert presence.reap() == ["q-server"]
        q = ledger.get_question(conn, "q-server")
        assert q["status"] == "interrupted" and q["usage"]["model_calls"] == 1
        assert [s.id for s in servers.list_servers(conn)] == [presence.id]
        presence.close()
        assert servers.list_servers(conn) == []
    finally:
        other.kill()
        db.close_all()



# ---------------------------------------------------------------- a key's limits, in Postgres


def test_shared_windows_and_slots_count_a_key_once_across_connections(pg_url):
    """Two servers' connections on one Postgres: a window's uses add up across both and stop exactly at
    the limit (a use that does not fit counts nothing), a new window starts once it ends; eight threads
    racing for two slots of one key get two; a dead server's slots go with its row."""
    from rag.store import limits
    from rag.store.pg import PgConnection

    with closing(PgConnection(pg_url)) as one, closing(PgConnection(pg_url)) as two:
        pg_schema.migrate(one)
        hits = [limits.hit((one, two)[i % 2], "k", "requests", cost=1, limit=5, window_s=1.5) for i in range(7)]
        assert hits[:5] == [None] * 5 and all(0 < w <= 1.5 for w in hits[5:]), hits
        assert limits.room(one, "k", "requests", cost=1, limit=5, window_s=1.5) is not None
        assert limits.hit(two, "other", "requests", cost=1, limit=5, window_s=1.5) is None  # per key
        assert limits.hit(one, "k", "upload_bytes", cost=6, limit=5, window_s=1.5) == 1.5  # never fits
        time.sleep(1.6)
        assert limits.room(two, "k", "requests", cost=1, limit=5, window_s=1.5) is None
        assert limits.hit(two, "k", "requests", cost=5, limit=5, window_s=1.5) is None  # a new window

        for sid in ("s1", "s2"):
            servers.register(one, sid, host="h", pid=1, data_dir="/d")
    barrier = threading.Barrier(8)
    taken: list[bool] = []

    def take(i: int) -> None:
        with closing(PgConnection(pg_url)) as conn:
            barrier.wait()
            taken.append(limits.take_slot(conn, f"slot{i}", "k", server_id=f"s{i % 2 + 1}", most=2))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == [False] * 6 + [True] * 2, taken
    with closing(PgConnection(pg_url)) as conn:
        held = [r[0] for r in conn.execute("SELECT server_id FROM question_slots ORDER BY server_id")]
        servers.leave(conn, held[0])  # its server reaped: its slots go too
        assert conn.execute("SELECT count(*) FROM question_slots").fetchone()[0] == 2 - held.count(held[0])
        servers.register(conn, held[0], host="h", pid=1, data_dir="/d")
        assert limits.take_slot(conn, "again", "k", server_id=held[0], most=2)

# ---------------------------------------------------------------- two real servers on one Postgres

ADMIN_KEY = "rag_fleet_test_admin_key_0123456789"
LEASE_S = 3.0
REQUESTS_PER_MINUTE = 300


@dataclass
class Fleet:
    servers: list[Server]
    pg_url: str


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, models_dir, pg_server, small_embedder_dir, small_generator_dir):
    """Two `rag serve` with the small models on one fresh Postgres, a collection of one document both
    see; a short server lease, and tight per-key limits for the limits test (the setup stays far below)."""
    tmp = tmp_path_factory.mktemp("fleet")
    with fresh_database(pg_server) as pg_url:
        env = cli_env(tmp / "unused", models_dir)
        env.update(RAG_DATABASE_URL=pg_url, RAG_ADMIN_KEY=ADMIN_KEY, RAG_SERVER_LEASE_S=str(LEASE_S),
                   RAG_INGEST_EMBED_PROCESS="false", RAG_MAX_ANSWER_TOKENS="48",
                   RAG_REQUESTS_PER_MINUTE=str(REQUESTS_PER_MINUTE), RAG_QUESTIONS_IN_FLIGHT="1")
        servers = [Server(tmp / f"serve{i}", env=env) for i in range(2)]
        try:
            for s in servers:
                s.start()
            with servers[0].client(key=ADMIN_KEY) as c:
                assert c.post("/v1/collections", json={"name": "fleet"}).status_code == 201
                r = c.post("/v1/collections/fleet/documents",
                           files=[("files", ("parking.txt", (DATA / "parking.txt").read_bytes(), "text/plain"))])
                assert r.status_code == 202, r.text
                assert wait_job(c, r.json()["jobs"][0]["id"])["status"] == "done"
            yield Fleet(servers, pg_url)
        finally:
            for s in servers:
                s.stop()


def test_a_keys_limits_hold_once_across_two_servers(fleet):
    """One key on two servers: while its question streams on one, the other refuses a second one (429
    `too_many_questions`, RAG_QUESTIONS_IN_FLIGHT=1) and accepts it once the first ended; its requests
    per minute are counted once: exactly the limit succeed across both, then both answer 429
    `rate_limited` with `Retry-After`. (Runs before the kill test, which takes a server away.)"""
    with fleet.servers[0].client(key=ADMIN_KEY) as admin:
        listed = admin.get("/health").json()["store"]["servers"]
        assert sorted(s["pid"] for s in listed) == sorted(s.proc.pid for s in fleet.servers)
        r = admin.post("/v1/keys", json={"role": "read", "name": "shared by two servers"})
        assert r.status_code == 201, r.text
        key = r.json()["key"]
    a, b = (s.client(key=key) for s in fleet.servers)
    try:
        body = {"question": GARAGE_Q, "stream": True, "options": {"force_rewrite": True}}
        with a.stream("POST", "/v1/collections/fleet/questions", json=body) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            assert next(lines) == "event: question"  # its slot was taken before the response began
            refused = b.post("/v1/collections/fleet/questions", json={"question": GARAGE_Q})
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_questions", refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert any(line == "event: final" for line in lines)
        cheap = {"question": GARAGE_Q, "budget": {"max_model_calls": 0}}  # recorded without a model call
        assert b.post("/v1/collections/fleet/questions", json=cheap).status_code == 200  # the slot came back

        used = 3  # this key's requests so far: the stream, the refusal, the cheap question
        ok = 0
        for i in range(REQUESTS_PER_MINUTE):
            r = (a, b)[i % 2].get("/v1/collections")
            if r.status_code != 200:
                break
            ok += 1
        assert ok == REQUESTS_PER_MINUTE - used, ok
        for c in (a, b):
            r = c.get("/v1/collections")
            assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited", r.text
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        with fleet.servers[1].client(key=ADMIN_KEY) as admin:  # another key's window is its own
            assert admin.get("/v1/collections").status_code == 200
    finally:
        a.close()
        b.close()


def test_a_killed_servers_question_is_interrupted_by_the_other_after_the_lease(fleet):
    """A question streaming on one server when it is killed (SIGKILL, mid-answer, after its rewrite call
    returned): it stays `running` until the lease runs out, then the other server closes it as
    `interrupted`; the rewrite call and its tokens stay in the ledger."""
    victim, survivor = fleet.servers
    body = {"question": GARAGE_Q, "stream": True, "options": {"force_rewrite": True}}
    qid = None
    with victim.client(key=ADMIN_KEY) as c, c.stream("POST", "/v1/collections/fleet/questions", json=body) as resp:
        assert resp.status_code == 200
        event = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "question":
                qid = json.loads(line[6:])["id"]
            elif event == "token":  # the answer call is under way: its rewrite call has been recorded
                victim.kill()
                break
    killed = time.monotonic()
    assert qid and event == "token"
    with survivor.client(key=ADMIN_KEY) as c:
        assert c.get(f"/v1/questions/{qid}").json()["status"] == "running"  # the lease has not run out yet
        while (got := c.get(f"/v1/questions/{qid}").json())["status"] == "running":
            assert time.monotonic() - killed < LEASE_S * 4 + 10, got
            time.sleep(0.2)
    waited = time.monotonic() - killed
    assert waited > LEASE_S * (1 - 1 / 4) - 0.5, waited  # not before the lease (less one beat) ran out
    assert got["status"] == "interrupted" and got["error"]["code"] == "interrupted", got
    assert [c["purpose"] for c in got["calls"]] == ["rewrite"], got["calls"]
    assert got["usage"]["model_calls"] == 1 and got["usage"]["prompt_tokens"] == got["calls"][0]["prompt_tokens"] > 0
    with closing(psycopg.connect(fleet.pg_url)) as conn:
        alive = [r[0] for r in conn.execute("SELECT pid FROM servers").fetchall()]
    assert alive == [survivor.proc.pid]  # the dead server's row is gone with its questions
    with survivor.client(key=ADMIN_KEY) as c:
        listed = c.get("/health").json()["store"]["servers"]
    assert [(s["pid"], s["this"]) for s in listed] == [(survivor.proc.pid, True)] and listed[0]["silent_s"] < LEASE_S
