"""The questions API with real models (all-MiniLM-L6-v2 + SmolLM2-135M-Instruct): Server-Sent Events,
a client that goes away mid-stream (a real `rag serve` process), listing and usage, validation
errors, the ledger's sums, and a failing generator.

Most tests use one module-scoped in-process app (`TestClient`); only the disconnect test needs a
real server, since only a real socket can be closed under a running stream. Settings and their
reasons are those of `tests/test_ask_e2e.py` (one torch thread on a shared 2-core machine, short
answers).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing

import pytest

from tests.server import Server, local_client
from tests.test_ask_e2e import (
    CITATION_KEYS,
    CONTRACT_KEYS,
    DATA,
    GARAGE_Q,
    SHIPPING_Q,
    USAGE_KEYS,
    check_contract,
    cli_env,
    en_settings,
    events,
    make_collection,
    wait_job,
)

FILES = ["parking.txt", "shipping.html", "brewmaster.md"]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory, models_dir):
    from api.app import create_app

    settings = en_settings(tmp_path_factory.mktemp("api") / "state", models_dir)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as client:
        make_collection(client, "api", FILES)
        yield client


def runtime_of(client):
    return client.app.state.runtime


def db_of(client) -> sqlite3.Connection:
    conn = sqlite3.connect(runtime_of(client).settings.db_path)
    conn.row_factory = sqlite3.Row
    return conn


def parse_sse(lines) -> list[tuple[str, dict]]:
    out, event, data = [], None, []
    for line in lines:
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
        elif line == "" and event is not None:
            out.append((event, json.loads("\n".join(data))))
            event, data = None, []
    return out


def post(client, collection: str, body: dict):
    return client.post(f"/v1/collections/{collection}/questions", json=body)


# --------------------------------------------------------------------------- SSE


def test_stream_yields_steps_tokens_and_the_same_final_object(app_client):
    body = {"question": SHIPPING_Q, "options": {"max_answer_tokens": 24}}
    plain = post(app_client, "api", body)
    assert plain.status_code == 200, plain.text
    plain = plain.json()

    with app_client.stream("POST", "/v1/collections/api/questions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        sse = parse_sse(r.iter_lines())
    kinds = [k for k, _ in sse]
    assert kinds[0] == "question" and kinds[-1] == "final", kinds
    qid = sse[0][1]["id"]
    steps = [d for k, d in sse if k == "step"]
    tokens = [d["text"] for k, d in sse if k == "token"]
    final = sse[-1][1]
    assert steps and tokens, kinds
    assert {"start", "query", "candidates", "decision", "model_call", "context", "done"} <= {s["type"] for s in steps}
    assert [s["seq"] for s in steps] == sorted(s["seq"] for s in steps)
    # tokens come between the answer call's start and its model_call event, in order
    first_tok, last_tok = kinds.index("token"), len(kinds) - 1 - kinds[::-1].index("token")
    started = next(i for i, (k, d) in enumerate(sse) if k == "step" and d["type"] == "model_call_started" and d["purpose"] == "answer")
    answered = next(i for i, (k, d) in enumerate(sse) if k == "step" and d["type"] == "model_call" and d["purpose"] == "answer")
    assert started < first_tok <= last_tok < answered

    # the final object: the id announced first, the shape of the non-streamed response
    assert final["id"] == qid
    assert set(final) == set(plain) and CONTRACT_KEYS <= set(final)
    assert set(final["usage"]) == set(plain["usage"]) and USAGE_KEYS <= set(final["usage"])
    for c in final["citations"]:
        assert set(c) == set(plain["citations"][0]) and CITATION_KEYS <= set(c)
    # greedy decoding: the same question gives the same answer, streamed or not
    assert final["answer"] == plain["answer"] and final["citations"] == plain["citations"]
    assert {k: final["usage"][k] for k in ("model_calls", "prompt_tokens", "completion_tokens")} == \
        {k: plain["usage"][k] for k in ("model_calls", "prompt_tokens", "completion_tokens")}
    # the streamed tokens are the raw model output of the answer call; the trace has the same steps
    trace = app_client.get(f"/v1/questions/{qid}/trace").json()
    check_contract(final, trace)
    (call,) = [e for e in events(trace, "model_call") if e["purpose"] == "answer"]
    assert "".join(tokens) == call["output"]
    assert [e["seq"] for e in trace["events"]] == [s["seq"] for s in steps]
    assert app_client.get(f"/v1/questions/{qid}").json()["status"] in ("answered", "abstained", "stopped")


def test_stream_errors_before_any_event(app_client):
    """What can be checked before the loop runs is an HTTP error, not a stream that opens and fails."""
    with closing(db_of(app_client)) as db:
        before = db.execute("SELECT count(*) FROM questions").fetchone()[0]
    r = post(app_client, "nope", {"question": "anything?", "stream": True})
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
    r = post(app_client, "api", {"question": "   ", "stream": True})
    assert r.status_code == 422 and r.json()["error"]["code"] == "empty_question", r.text
    r = post(app_client, "api", {"question": GARAGE_Q, "stream": True, "budget": {"max_model_calls": -1}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    r = post(app_client, "api", {"question": GARAGE_Q, "stream": True, "options": {"no_such_option": 1}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    with closing(db_of(app_client)) as db:
        assert db.execute("SELECT count(*) FROM questions").fetchone()[0] == before


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("budget", [{"max_model_calls": -1}, {"max_prompt_tokens": -5}, {"timeout_s": -1},
                                    {"timeout_s": 0}, {"max_rounds": 0}])
def test_invalid_budget_is_422(app_client, budget):
    r = post(app_client, "api", {"question": GARAGE_Q, "budget": budget})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and err["message"]
    assert any("budget" in d["loc"] for d in err["details"]), err


def test_request_errors(app_client):
    with closing(db_of(app_client)) as db:
        before = db.execute("SELECT count(*) FROM questions").fetchone()[0]
    r = post(app_client, "no-such-collection", {"question": GARAGE_Q})
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found", r.text
    r = post(app_client, "api", {"question": ""})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    r = post(app_client, "api", {"question": "  \n "})
    assert r.status_code == 422 and r.json()["error"]["code"] == "empty_question", r.text
    r = post(app_client, "api", {})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = post(app_client, "api", {"question": GARAGE_Q, "options": {"no_such_option": 1}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    r = app_client.get("/v1/questions/0123456789abcdef0123456789abcdef")
    assert r.status_code == 404 and r.json()["error"]["code"] == "question_not_found"
    r = app_client.get("/v1/questions/0123456789abcdef0123456789abcdef/trace")
    assert r.status_code == 404 and r.json()["error"]["code"] == "question_not_found"
    r = app_client.get("/v1/usage", params={"group_by": "week"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_group_by"
    r = app_client.get("/v1/questions", params={"limit": 0})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    with closing(db_of(app_client)) as db:  # none of these opened a question
        assert db.execute("SELECT count(*) FROM questions").fetchone()[0] == before


# --------------------------------------------------------------------------- listing and usage


def test_list_and_usage_match_the_questions_asked(app_client):
    make_collection(app_client, "usage", ["parking.txt"])
    asked = []
    for body in ({"question": "How many spaces did the garage have in 1999?"},  # absent number: 0 calls
                 {"question": GARAGE_Q, "budget": {"max_model_calls": 1}, "options": {"max_answer_tokens": 16}},
                 {"question": "What colour is the parking garage floor?", "budget": {"max_model_calls": 0}}):
        r = post(app_client, "usage", body)
        assert r.status_code == 200, r.text
        asked.append(r.json())
        time.sleep(0.01)
    listed = app_client.get("/v1/questions", params={"collection": "usage"}).json()["questions"]
    assert [q["id"] for q in listed] == [a["id"] for a in reversed(asked)]  # newest first
    for q, a in zip(listed, reversed(asked)):
        assert q["collection"] == "usage" and q["answer"] == a["answer"] and q["abstained"] == a["abstained"]
        assert q["stopped_by"] == a["stopped_by"]
        for k in ("model_calls", "prompt_tokens", "completion_tokens"):
            assert q["usage"][k] == a["usage"][k], (k, q, a)
    assert listed[-1]["status"] == "abstained" and listed[-1]["usage"]["model_calls"] == 0

    limited = app_client.get("/v1/questions", params={"collection": "usage", "limit": 2}).json()["questions"]
    assert [q["id"] for q in limited] == [a["id"] for a in reversed(asked)][:2]
    since = listed[1]["created_at"]  # the second question's time: it and the later one
    recent = app_client.get("/v1/questions", params={"collection": "usage", "since": since}).json()["questions"]
    assert [q["id"] for q in recent] == [asked[2]["id"], asked[1]["id"]]
    other = app_client.get("/v1/questions", params={"collection": "api"}).json()["questions"]
    assert not {q["id"] for q in other} & {a["id"] for a in asked}

    usage = app_client.get("/v1/usage", params={"collection": "usage", "group_by": "day"}).json()
    assert usage["group_by"] == "day" and usage["collection"] == "usage"
    (day,) = usage["usage"]
    assert day["day"] == since[:10]
    assert day["questions"] == 3
    assert day["model_calls"] == sum(a["usage"]["model_calls"] for a in asked)
    assert day["prompt_tokens"] == sum(a["usage"]["prompt_tokens"] for a in asked)
    assert day["completion_tokens"] == sum(a["usage"]["completion_tokens"] for a in asked)
    assert day["abstained"] == sum(1 for a in asked if a["abstained"])
    assert day["failed"] == 0
    everything = app_client.get("/v1/usage").json()["usage"]
    assert sum(d["questions"] for d in everything) >= 3


# --------------------------------------------------------------------------- ledger


def test_generator_failure_is_recorded_as_failed_with_its_trace(app_client, monkeypatch):
    gen = runtime_of(app_client).generator
    real = gen.generate

    def failing(messages, **kw):
        if messages[0]["role"] != "system":  # only the answering prompt has a system message
            return real(messages, **kw)
        on_token = kw.get("on_token")
        seen = []

        def boom(piece):
            seen.append(piece)
            if on_token is not None:
                on_token(piece)
            if len(seen) == 3:
                raise RuntimeError("simulated generator failure")

        return real(messages, **{**kw, "on_token": boom})

    monkeypatch.setattr(gen, "generate", failing)
    r = post(app_client, "api", {"question": SHIPPING_Q, "options": {"max_answer_tokens": 24}})
    assert r.status_code == 500
    monkeypatch.undo()

    (q,) = app_client.get("/v1/questions", params={"collection": "api", "limit": 1}).json()["questions"]
    assert q["question"] == SHIPPING_Q and q["status"] == "failed", q
    assert q["error"]["code"] == "internal_error" and "simulated generator failure" in q["error"]["message"]
    trace = app_client.get(f"/v1/questions/{q['id']}/trace").json()
    kinds = [e["type"] for e in trace["events"]]
    assert kinds[0] == "start" and "query" in kinds and "context" in kinds and "model_call_started" in kinds
    assert "done" not in kinds and trace["status"] == "failed"
    # the answer call had run (prefill and three tokens): it is on record, and the totals are its sums
    got = app_client.get(f"/v1/questions/{q['id']}").json()
    assert [c["purpose"] for c in got["calls"]] == ["answer"], got["calls"]
    assert got["calls"][0]["prompt_tokens"] > 0 and got["calls"][0]["completion_tokens"] >= 1
    assert got["usage"]["prompt_tokens"] == got["calls"][0]["prompt_tokens"]
    assert got["usage"]["model_calls"] == 1


def test_ledger_totals_equal_the_sum_of_recorded_calls(app_client):
    r = post(app_client, "api", {"question": GARAGE_Q, "options": {"max_answer_tokens": 16}})  # rewrite + answer
    assert r.status_code == 200, r.text
    result = r.json()
    got = app_client.get(f"/v1/questions/{result['id']}").json()
    assert [c["purpose"] for c in got["calls"]] == ["rewrite", "answer"]
    # each call names the model and the runtime that computed it (ledger and trace alike)
    assert {(c["model_id"], c["runtime"]) for c in got["calls"]} == {("smollm2-135m-instruct", "transformers")}
    traced = [e for e in app_client.get(f"/v1/questions/{result['id']}/trace").json()["events"] if e["type"] == "model_call"]
    assert [e["runtime"] for e in traced] == ["transformers", "transformers"]
    for k in ("prompt_tokens", "completion_tokens"):
        assert result["usage"][k] == sum(c[k] for c in got["calls"]) == got["usage"][k]
    assert result["usage"]["model_calls"] == len(got["calls"]) == got["usage"]["model_calls"]

    with closing(db_of(app_client)) as db:
        rows = db.execute("SELECT * FROM questions").fetchall()
        assert len(rows) >= 2
        for q in rows:
            s = db.execute("SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)"
                           " FROM model_calls WHERE question_id = ?", (q["id"],)).fetchone()
            assert (q["model_calls"], q["prompt_tokens"], q["completion_tokens"]) == tuple(s), dict(q)
            assert q["status"] in ("answered", "abstained", "stopped", "failed"), dict(q)
            trace = json.loads(q["trace"])
            assert trace["events"] and trace["events"][0]["type"] == "start", q["id"]
            if q["status"] != "failed":
                assert trace["events"][-1]["type"] == "done"
                assert len([e for e in trace["events"] if e["type"] == "model_call"]) == q["model_calls"]
                stored = json.loads(q["result"])
                assert stored["usage"]["model_calls"] == q["model_calls"]
                assert stored["usage"]["prompt_tokens"] == q["prompt_tokens"]


# --------------------------------------------------------------------------- a client that goes away


def test_client_disconnect_mid_stream_keeps_the_question_and_its_calls(tmp_path, models_dir):
    env = {**cli_env(tmp_path / "state", models_dir), "RAG_MAX_ANSWER_TOKENS": "200"}  # the ceiling of the long answer below
    server = Server(tmp_path / "state", env=env).start()
    try:
        with server.client() as client:
            assert client.post("/v1/collections", json={"name": "s"}).status_code == 201
            r = client.post("/v1/collections/s/documents",
                            files=[("files", (f, (DATA / f).read_bytes(), "text/plain")) for f in FILES])
            assert r.status_code == 202, r.text
            for j in r.json()["jobs"]:
                assert wait_job(client, j["id"])["status"] == "done"

            body = {"question": "How do I descale the Brewmaster 3000 espresso machine?", "stream": True,
                    "options": {"max_answer_tokens": 200}}
            seen: list[str] = []
            qid = None
            with client.stream("POST", "/v1/collections/s/questions", json=body) as resp:
                assert resp.status_code == 200
                event = None
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                        seen.append(event)
                    elif line.startswith("data: ") and event == "question":
                        qid = json.loads(line[6:])["id"]
                    elif line.startswith("data: ") and event == "token":
                        break  # the first answer token: go away mid-answer
            assert qid and "token" in seen and "final" not in seen

            deadline = time.monotonic() + 120
            while True:
                got = client.get(f"/v1/questions/{qid}")
                assert got.status_code == 200, got.text
                got = got.json()
                if got["status"] != "running":
                    break
                assert time.monotonic() < deadline, got
                time.sleep(0.2)
            assert got["status"] in ("failed", "answered", "abstained", "stopped"), got
            if got["status"] == "failed":
                assert got["error"]["code"] == "client_disconnected", got
            # the answer call was under way when the client left: it is on record either way
            assert [c["purpose"] for c in got["calls"]] == ["answer"], got
            assert got["usage"]["model_calls"] == 1
            assert got["usage"]["prompt_tokens"] == got["calls"][0]["prompt_tokens"] > 0
            trace = client.get(f"/v1/questions/{qid}/trace").json()
            assert trace["events"] and trace["events"][0]["type"] == "start"
            assert any(e["type"] == "model_call_started" for e in trace["events"])
            # the server is still healthy and answers the next question
            r = client.post("/v1/collections/s/questions",
                            json={"question": "What did the Brewmaster 3000 cost in 1987?"})
            assert r.status_code == 200 and r.json()["abstained"] is True
    finally:
        server.stop()


def test_replay_keeps_only_the_recorded_options_this_version_knows():
    from rag.ask import AskOptions
    from rag.service.replay import known_options

    recorded = AskOptions().to_dict()
    recorded["thresholds"]["embed_support_min"] = 0.88  # removed since: a replay must not fail on it
    recorded["old_switch"] = True
    options, dropped = known_options(recorded)
    assert dropped == ["old_switch", "thresholds.embed_support_min"]
    assert AskOptions().merged(options) == AskOptions()
