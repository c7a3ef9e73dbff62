"""Tenant isolation as a property: over 10,000 generated requests across every endpoint, no key reads,
lists, counts or deletes anything outside its grant, and a status code never tells an object of
another tenant apart from one that does not exist.

One in-process app with a small embedder and no generator (questions are recorded in the ledger
directly; asking answers 503 where allowed, 404 where not). Keys get random roles on random
subsets of four collections; each generated request targets an object of a random collection
(or one that never existed) through a random endpoint, and is checked against what the key may do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server import local_client
from tests.test_ask_e2e import en_settings

COLLECTIONS = ["c0", "c1", "c2", "c3"]
REQUESTS_PER_EXAMPLE = 100
EXAMPLES = 125
SENT = {"n": 0}


@dataclass
class World:
    client: object
    docs: dict[str, int]  # collection -> a document id
    chunks: dict[str, int]  # collection -> a chunk id (of that document)
    jobs: dict[str, str]
    questions: dict[str, str]
    keys: list[tuple[str, str, dict | None]]  # (key, role, grants or None for every collection)


def _record_question(settings, collection: str) -> str:
    from contextlib import closing

    from rag.store import ledger, open_db

    qid = uuid.uuid4().hex
    with closing(open_db(settings.db_path)) as conn:
        ledger.start_question(conn, qid, collection, f"what is in {collection}?", budget={}, options={}, models={})
        ledger.finish_question(conn, qid, status="answered", result={"id": qid, "answer": collection}, trace=None,
                               seconds=0.1)
    return qid


@pytest.fixture(scope="module")
def world(tmp_path_factory, models_dir):
    from api.app import create_app

    settings = en_settings(tmp_path_factory.mktemp("iso") / "state", models_dir, load_generator=False,
                           requests_per_minute=10 ** 9)
    with local_client(create_app(settings), settings.data_dir) as client:
        docs, jobs, questions = {}, {}, {}
        for c in COLLECTIONS:
            assert client.post("/v1/collections", json={"name": c}).status_code == 201
            r = client.post(f"/v1/collections/{c}/documents",
                            files=[("files", (f"{c}.txt", f"The secret of {c} is {uuid.uuid4().hex}.".encode(), "text/plain"))])
            jobs[c] = r.json()["jobs"][0]["id"]
        for c in COLLECTIONS:
            from tests.test_ask_e2e import wait_job

            job = wait_job(client, jobs[c])
            assert job["status"] == "done", job
            docs[c] = job["document_id"]
            questions[c] = _record_question(settings, c)
        keys = [(client.headers["Authorization"].split()[1], "admin", None)]
        rng = __import__("random").Random(7)
        for i in range(12):
            role = rng.choice(["read", "write"])
            every = i % 4 == 0
            chosen = None if every else sorted(rng.sample(COLLECTIONS, rng.randint(1, 3)))
            body = {"role": role, **({} if every else {"collections": chosen})}
            r = client.post("/v1/keys", json=body)
            assert r.status_code == 201, r.text
            keys.append((r.json()["key"], role, None if every else {c: role for c in chosen}))
        chunks = {c: client.get(f"/v1/collections/{c}/documents/{docs[c]}/chunks").json()["chunks"][0]["id"]
                  for c in COLLECTIONS}
        yield World(client, docs, chunks, jobs, questions, keys)
    assert SENT["n"] >= 10_000, f"only {SENT['n']} requests were generated"


def _role(grants: dict | None, role: str, collection: str) -> str | None:
    if role == "admin":
        return "admin"
    return role if grants is None else grants.get(collection)


RANK = {None: 0, "read": 1, "write": 2, "admin": 3}
ENDPOINTS = ["list_collections", "list_documents", "get_document", "chunks", "chunk", "search", "ask", "job",
             "question", "trace", "list_questions", "usage", "usage_by_collection", "delete_document",
             "delete_collection", "upload"]
LEDGER_READS = ("list_questions", "usage", "usage_by_collection")
TARGETS = COLLECTIONS + ["ghost"]  # ghost: a collection that never existed


def _request(w: World, endpoint: str, target: str):
    """(method, url, kwargs, needed role, not-found code) for `endpoint` aimed at `target`'s object."""
    doc = w.docs.get(target, 987654)
    chunk = w.chunks.get(target, 987654)
    job = w.jobs.get(target, uuid.uuid4().hex)
    qid = w.questions.get(target, uuid.uuid4().hex)
    return {
        "list_collections": ("GET", "/v1/collections", {}, None, None),
        "list_documents": ("GET", f"/v1/collections/{target}/documents", {}, "read", "collection_not_found"),
        "get_document": ("GET", f"/v1/collections/{target}/documents/{doc}", {}, "read", "collection_not_found"),
        "chunks": ("GET", f"/v1/collections/{target}/documents/{doc}/chunks", {}, "read", "collection_not_found"),
        "chunk": ("GET", f"/v1/collections/{target}/chunks/{chunk}", {"params": {"neighbours": 5}}, "read",
                  "collection_not_found"),
        "search": ("POST", f"/v1/collections/{target}/search", {"json": {"query": "secret", "k": 5}}, "read",
                   "collection_not_found"),
        "ask": ("POST", f"/v1/collections/{target}/questions", {"json": {"question": "what is the secret?"}}, "read",
                "collection_not_found"),
        "job": ("GET", f"/v1/jobs/{job}", {}, "read", "job_not_found"),
        "question": ("GET", f"/v1/questions/{qid}", {}, "read", "question_not_found"),
        "trace": ("GET", f"/v1/questions/{qid}/trace", {}, "read", "question_not_found"),
        "list_questions": ("GET", "/v1/questions", {"params": {"collection": target}}, "read", "collection_not_found"),
        "usage": ("GET", "/v1/usage", {"params": {"collection": target}}, "read", "collection_not_found"),
        "usage_by_collection": ("GET", "/v1/usage", {"params": {"collection": target, "group_by": "collection"}}, "read",
                                "collection_not_found"),
        # Mutations are aimed only where the key may not make them (checked below): nothing may change.
        "delete_document": ("DELETE", f"/v1/collections/{target}/documents/{doc}", {}, "write", "collection_not_found"),
        "delete_collection": ("DELETE", f"/v1/collections/{target}", {}, "admin", "collection_not_found"),
        "upload": ("POST", f"/v1/collections/{target}/documents",
                   {"files": [("files", ("planted.txt", b"planted by another tenant", "text/plain"))]}, "write",
                   "collection_not_found"),
    }[endpoint]


def _check(w: World, key_index: int, endpoint: str, target: str) -> None:
    key, role, grants = w.keys[key_index]
    method, url, kwargs, need, missing = _request(w, endpoint, target)
    have = _role(grants, role, target) if target != "ghost" else _role(grants, role, target)
    mutation = method == "DELETE" or endpoint == "upload"
    if mutation and RANK[have] >= RANK[need]:
        return  # the key may do it: not what this test exercises (it would change the world)
    r = w.client.request(method, url, headers={"Authorization": f"Bearer {key}"}, **kwargs)
    SENT["n"] += 1
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    visible = {c for c in COLLECTIONS if _role(grants, role, c)}
    text = r.text
    for c in set(COLLECTIONS) - visible:  # nothing of another tenant in any answer (ids the client sent aside)
        leaks = [f"The secret of {c} ", *(x for x in (w.questions[c], w.jobs[c]) if x not in url)]
        assert not any(x in text for x in leaks), (endpoint, url, text[:300])
    if endpoint == "list_collections":
        assert r.status_code == 200 and {x["name"] for x in body["collections"]} & set(COLLECTIONS) == visible
        return
    if target == "ghost" or have is None:
        # exactly what a never-existing object answers
        if endpoint in ("job", "question", "trace"):
            assert r.status_code == 404 and body["error"]["code"] == missing, (endpoint, r.text)
        elif target == "ghost" and have is not None:
            assert r.status_code in (404, 403) or (endpoint in LEDGER_READS and r.status_code == 200)
        else:
            assert r.status_code == 404 and body["error"]["code"] == missing, (endpoint, r.text)
        return
    if RANK[have] < RANK[need]:
        assert r.status_code == 403 and body["error"]["code"] == "forbidden", (endpoint, r.text)
        return
    if endpoint == "ask":
        assert r.status_code == 503 and body["error"]["code"] == "generator_unavailable"
    elif endpoint in LEDGER_READS:
        assert r.status_code == 200
        if endpoint == "list_questions":
            assert {q["collection"] for q in body["questions"]} <= {target}
        if endpoint == "usage_by_collection":
            assert {u["collection"] for u in body["usage"]} <= {target}
    else:
        assert r.status_code == 200, (endpoint, r.text)


request_st = st.tuples(st.integers(0, 12), st.sampled_from(ENDPOINTS), st.sampled_from(TARGETS))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(request_st, min_size=REQUESTS_PER_EXAMPLE, max_size=REQUESTS_PER_EXAMPLE))
def test_no_key_sees_or_changes_anything_outside_its_grant(world, requests):
    for key_index, endpoint, target in requests:
        _check(world, key_index, endpoint, target)


def test_the_world_is_unchanged_and_lists_only_granted_questions(world):
    admin = world.client
    for c in COLLECTIONS:
        docs = admin.get(f"/v1/collections/{c}/documents").json()["documents"]
        assert [d["filename"] for d in docs] == [f"{c}.txt"], "a mutation outside a grant went through"
    for key, role, grants in world.keys[1:]:
        seen = admin.get("/v1/questions", headers={"Authorization": f"Bearer {key}"}).json()["questions"]
        allowed = set(COLLECTIONS) if grants is None else set(grants)
        assert {q["collection"] for q in seen} == allowed
        usage = admin.get("/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()["usage"]
        assert sum(u["questions"] for u in usage) == len(allowed), "usage counts another tenant's questions"
        by_collection = admin.get("/v1/usage", params={"group_by": "collection"},
                                  headers={"Authorization": f"Bearer {key}"}).json()["usage"]
        assert {u["collection"]: u["questions"] for u in by_collection} == dict.fromkeys(allowed, 1)
