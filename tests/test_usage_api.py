"""Reading the ledger for charts: questions by tokens spent, usage per collection, within a key's grants.

One module-scoped in-process app with no generator: the questions are written to the ledger directly
(as `rag.service.answering` does), with known token counts and creation times, so every expected
order and sum is exact.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import pytest

from tests.server import local_client
from tests.test_ask_e2e import en_settings

USAGE_FIELDS = {"questions", "model_calls", "prompt_tokens", "completion_tokens", "cached_prompt_tokens",
                "abstained", "failed", "feedback_up", "feedback_down"}


@dataclass(frozen=True)
class Call:
    """A `rag.store.CallSource`."""

    n: int
    prompt_tokens: int
    completion_tokens: int
    purpose: str = "answer"
    model_id: str = "fake-llm"
    runtime: str = "fake"
    cached_prompt_tokens: int = 0
    wall_ms: float = 1.0


# name: (collection, created_at, [(prompt, completion) per call], status). a1 and a3 tie on their
# total (120) with different splits; a4 made no call; b1, in the other collection, spent the most.
QUESTIONS = {
    "a1": ("alpha", "2024-05-01T10:00:00.000Z", [(100, 20)], "answered"),
    "a2": ("alpha", "2024-05-02T10:00:00.000Z", [(10, 5)], "answered"),
    "a3": ("alpha", "2024-05-03T10:00:00.000Z", [(40, 20), (40, 20)], "answered"),
    "a4": ("alpha", "2024-05-04T10:00:00.000Z", [], "abstained"),
    "b1": ("beta", "2024-05-02T12:00:00.000Z", [(1000, 1000)], "failed"),
}


def _record(db_path) -> dict[str, str]:
    """Writes QUESTIONS to the ledger; returns their ids by name."""
    from rag.store import ledger, open_db

    ids = {}
    with closing(open_db(db_path)) as conn:
        for name, (collection, created_at, calls, status) in QUESTIONS.items():
            qid = ids[name] = f"{name}{'0' * 30}"
            ledger.start_question(conn, qid, collection, f"question {name}", budget={}, options={}, models={})
            for n, (prompt, completion) in enumerate(calls, start=1):
                ledger.record_call(conn, qid, Call(n, prompt, completion))
            result = None if status == "failed" else {"id": qid, "answer": name, "abstained": status == "abstained"}
            ledger.finish_question(conn, qid, status=status, result=result, trace=None, seconds=0.1,
                                   error_code="internal_error" if status == "failed" else None)
            conn.execute("UPDATE questions SET created_at = ? WHERE id = ?", (created_at, qid))
    return ids


@pytest.fixture(scope="module")
def ledger_client(tmp_path_factory, models_dir):
    from api.app import create_app

    settings = en_settings(tmp_path_factory.mktemp("usage") / "state", models_dir, load_generator=False)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as client:
        for name in ("alpha", "beta"):
            assert client.post("/v1/collections", json={"name": name}).status_code == 201
        ids = _record(settings.db_path)
        r = client.post("/v1/keys", json={"role": "read", "collections": ["alpha"], "name": "alpha reader"})
        assert r.status_code == 201, r.text
        yield client, ids, {"Authorization": f"Bearer {r.json()['key']}"}


def names(ids: dict[str, str], questions: list[dict]) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[q["id"]] for q in questions]


# --------------------------------------------------------------------------- questions by tokens


def test_service_orders_questions_by_tokens_within_the_scope(ledger_client):
    """What `GET /v1/questions?order=...` runs: `QuestionService.list` with the key's scope."""
    client, ids, _ = ledger_client
    service = client.app.state.runtime.questions

    def listed(collection=None, since=None, limit=50, **kw):
        return names(ids, service.list(collection, since, limit, **kw))

    assert listed() == ["a4", "a3", "b1", "a2", "a1"]  # default: newest first, as before
    assert listed(order="recent") == listed()
    assert listed(order="tokens") == ["b1", "a3", "a1", "a2", "a4"]  # a3 and a1 tie at 120: newest first
    assert listed("alpha", order="tokens") == ["a3", "a1", "a2", "a4"]
    assert listed(order="tokens", limit=2) == ["b1", "a3"]
    assert listed(since="2024-05-02", order="tokens") == ["b1", "a3", "a2", "a4"]
    assert listed(order="tokens", scope=["alpha"]) == ["a3", "a1", "a2", "a4"]
    assert listed(order="tokens", scope=[]) == []
    q = service.list("beta", None, 1, order="tokens")[0]
    assert q["usage"]["prompt_tokens"] + q["usage"]["completion_tokens"] == 2000
    from rag.errors import RagError

    with pytest.raises(RagError) as err:
        service.list(None, None, 50, order="cost")
    assert (err.value.status, err.value.code) == (422, "invalid_order")


def test_questions_ordered_by_tokens_over_http(ledger_client):
    client, ids, alpha_reader = ledger_client

    def listed(headers=None, **params):
        r = client.get("/v1/questions", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return names(ids, r.json()["questions"])

    assert listed() == listed(order="recent") == ["a4", "a3", "b1", "a2", "a1"]
    assert listed(order="tokens") == ["b1", "a3", "a1", "a2", "a4"]
    assert listed(order="tokens", collection="alpha", limit=3) == ["a3", "a1", "a2"]
    assert listed(order="tokens", since="2024-05-02") == ["b1", "a3", "a2", "a4"]
    assert listed(alpha_reader, order="tokens") == ["a3", "a1", "a2", "a4"]  # beta's question is not there
    r = client.get("/v1/questions", params={"order": "tokens", "collection": "beta"}, headers=alpha_reader)
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
    r = client.get("/v1/questions", params={"order": "cost"})
    assert r.status_code == 422 and r.json()["error"]["code"] in ("invalid_request", "invalid_order"), r.text


# --------------------------------------------------------------------------- usage per collection


def test_usage_per_collection(ledger_client):
    client, _, _ = ledger_client
    r = client.get("/v1/usage", params={"group_by": "collection"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["group_by"] == "collection" and body["collection"] is None
    alpha, beta = body["usage"]
    assert set(alpha) == set(beta) == USAGE_FIELDS | {"collection"}
    assert alpha == {"collection": "alpha", "questions": 4, "model_calls": 4, "prompt_tokens": 190,
                     "completion_tokens": 65, "cached_prompt_tokens": 0, "abstained": 1, "failed": 0,
                     "feedback_up": 0, "feedback_down": 0}
    assert beta == {"collection": "beta", "questions": 1, "model_calls": 1, "prompt_tokens": 1000,
                    "completion_tokens": 1000, "cached_prompt_tokens": 0, "abstained": 0, "failed": 1,
                    "feedback_up": 0, "feedback_down": 0}

    only = client.get("/v1/usage", params={"group_by": "collection", "collection": "beta"}).json()
    assert only["collection"] == "beta" and only["usage"] == [beta]

    days = client.get("/v1/usage").json()  # group_by=day is unchanged: the same fields, keyed by day
    assert days["group_by"] == "day" and [d["day"] for d in days["usage"]] == [
        "2024-05-04", "2024-05-03", "2024-05-02", "2024-05-01"]
    assert all(set(d) == USAGE_FIELDS | {"day"} for d in days["usage"])
    assert sum(d["prompt_tokens"] for d in days["usage"]) == alpha["prompt_tokens"] + beta["prompt_tokens"]

    r = client.get("/v1/usage", params={"group_by": "week"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_group_by"
    assert "collection" in r.json()["error"]["message"]


def test_usage_per_collection_stays_within_the_keys_grants(ledger_client):
    client, _, alpha_reader = ledger_client
    r = client.get("/v1/usage", params={"group_by": "collection"}, headers=alpha_reader)
    assert r.status_code == 200, r.text
    assert [u["collection"] for u in r.json()["usage"]] == ["alpha"]  # beta is not even named
    assert r.json()["usage"][0]["questions"] == 4
    r = client.get("/v1/usage", params={"group_by": "collection", "collection": "beta"}, headers=alpha_reader)
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
    days = client.get("/v1/usage", headers=alpha_reader).json()["usage"]
    assert sum(d["questions"] for d in days) == 4 and sum(d["failed"] for d in days) == 0
