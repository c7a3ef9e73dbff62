"""`POST /v1/questions/{id}/replay` with real small models: a deterministic question replays
identically; after the collection changes the replay names what changed, before and after; the
same tenant rules as reading the question apply."""

from __future__ import annotations

import pytest

from tests.server import local_client
from tests.test_ask_e2e import SHIPPING_Q, en_settings, make_collection

FILES = ["parking.txt", "shipping.html", "brewmaster.md"]
ASPECTS = ["answer", "abstained", "stopped_by", "citations", "queries", "candidates", "context",
           "model_calls", "prompt_tokens", "completion_tokens"]


@pytest.fixture(scope="module")
def client(tmp_path_factory, models_dir):
    from api.app import create_app

    settings = en_settings(tmp_path_factory.mktemp("replay") / "state", models_dir)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as c:
        make_collection(c, "rp", FILES)
        yield c


def _ask(client) -> dict:
    r = client.post("/v1/collections/rp/questions", json={"question": SHIPPING_Q, "options": {"max_answer_tokens": 24}})
    assert r.status_code == 200, r.text
    return r.json()


def test_replay_of_a_deterministic_question_is_identical(client):
    first = _ask(client)
    r = client.post(f"/v1/questions/{first['id']}/replay")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["replayed_from"] == first["id"] and out["id"] != first["id"]
    assert out["identical"] is True and out["note"] is None
    assert [c["aspect"] for c in out["changes"]] == ASPECTS
    assert not any(c["changed"] for c in out["changes"])
    by = {c["aspect"]: c for c in out["changes"]}
    assert by["answer"]["before"] == first["answer"] == by["answer"]["after"]
    assert by["queries"]["before"][0] == SHIPPING_Q
    assert by["candidates"]["before"] and all(isinstance(i, int) for i in by["candidates"]["before"][0])
    # the replay is a question of its own, with its own trace and ledger entry
    assert client.get(f"/v1/questions/{out['id']}/trace").json()["question"] == SHIPPING_Q


def test_replay_names_what_changed_after_the_collection_changed(client):
    first = _ask(client)
    docs = client.get("/v1/collections/rp/documents").json()["documents"]
    cited = {c["document_id"] for c in first["citations"]} or {d["id"] for d in docs if d["filename"] == "shipping.html"}
    for doc_id in cited:
        assert client.delete(f"/v1/collections/rp/documents/{doc_id}").status_code == 204
    out = client.post(f"/v1/questions/{first['id']}/replay").json()
    assert out["identical"] is False
    changed = {c["aspect"]: c for c in out["changes"] if c["changed"]}
    assert "candidates" in changed and "context" in changed
    gone = {cid for rnd in changed["candidates"]["before"] for cid in rnd} - \
           {cid for rnd in changed["candidates"]["after"] for cid in rnd}
    assert gone, changed["candidates"]


def test_replay_of_an_unknown_or_foreign_question_is_404(client):
    r = client.post("/v1/questions/" + "0" * 32 + "/replay")
    assert r.status_code == 404 and r.json()["error"]["code"] == "question_not_found"
    first = _ask(client)
    client.post("/v1/collections", json={"name": "other"})
    key = client.post("/v1/keys", json={"role": "read", "collections": ["other"]}).json()["key"]
    r = client.post(f"/v1/questions/{first['id']}/replay", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "question_not_found"
