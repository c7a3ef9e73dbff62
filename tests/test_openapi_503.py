"""The OpenAPI lists the 503s of a scaled-out deployment where they really happen.

One app on PostgreSQL with its embeddings behind `RAG_EMBEDDER_URL` (a real `/v1/embeddings` server
computing with the small embedder) is seeded, then every documented operation is sent a valid request
twice: with the embeddings server unreachable, and with the database unreachable (its connections
terminated and new ones refused). Each operation that answered 503 `embedder_unavailable` must list
it, and no other may; every operation touches the store (the key is looked up in it), so every one
must answer and list 503 `store_unavailable`. A new route without a request here fails the test.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from tests.server import free_port, local_client
from tests.test_ask_e2e import DATA, en_settings, wait_job
from tests.test_openai_runtime import embeddings_server, local_embedder  # noqa: F401 (fixtures)

PARK = "Where can visitors park their cars at night?"


def requests(seed: dict) -> dict[str, tuple[str, dict]]:
    """A valid request for every operation: 'METHOD /template' -> (url, httpx keyword arguments).
    Deletions take objects made for them, so the other requests still find theirs."""
    d, c, q = seed["document"], seed["conversation"], seed["question"]
    files = {"files": [("files", ("gate.txt", b"The east gate opens at 06:00 for deliveries.\n", "text/plain"))]}
    ask = {"json": {"question": "Which gate do delivery trucks use in the morning?"}}
    return {
        "GET /health": ("/health", {}),
        "GET /v1/collections": ("/v1/collections", {}),
        "POST /v1/collections": ("/v1/collections", {"json": {"name": "another"}}),
        "DELETE /v1/collections/{name}": ("/v1/collections/spare", {}),
        "POST /v1/collections/{name}/documents": ("/v1/collections/default/documents", files),
        "GET /v1/collections/{name}/documents": ("/v1/collections/default/documents", {}),
        "GET /v1/collections/{name}/jobs": ("/v1/collections/default/jobs", {}),
        "GET /v1/collections/{name}/documents/{document_id}": (f"/v1/collections/default/documents/{d}", {}),
        "DELETE /v1/collections/{name}/documents/{document_id}":
            (f"/v1/collections/default/documents/{seed['spare_document']}", {}),
        "GET /v1/collections/{name}/documents/{document_id}/chunks": (f"/v1/collections/default/documents/{d}/chunks", {}),
        "GET /v1/collections/{name}/chunks/{chunk_id}": (f"/v1/collections/default/chunks/{seed['chunk']}", {}),
        "POST /v1/collections/{name}/search":
            ("/v1/collections/default/search", {"json": {"query": "overnight parking for guests", "k": 3}}),
        "GET /v1/jobs/{job_id}": (f"/v1/jobs/{seed['job']}", {}),
        "DELETE /v1/jobs/{job_id}": (f"/v1/jobs/{seed['job']}", {}),
        "POST /v1/collections/{name}/questions": ("/v1/collections/default/questions", ask),
        "GET /v1/questions/export": ("/v1/questions/export", {}),
        "GET /v1/questions/{qid}": (f"/v1/questions/{q}", {}),
        "GET /v1/questions/{qid}/trace": (f"/v1/questions/{q}/trace", {}),
        "POST /v1/questions/{qid}/feedback": (f"/v1/questions/{q}/feedback", {"json": {"rating": "up"}}),
        "POST /v1/questions/{qid}/replay": (f"/v1/questions/{q}/replay", {}),
        "GET /v1/questions": ("/v1/questions", {}),
        "GET /v1/usage": ("/v1/usage", {}),
        "POST /v1/collections/{name}/conversations": ("/v1/collections/default/conversations", {"json": {}}),
        "GET /v1/collections/{name}/conversations": ("/v1/collections/default/conversations", {}),
        "GET /v1/conversations/{cid}": (f"/v1/conversations/{c}", {}),
        "DELETE /v1/conversations/{cid}": (f"/v1/conversations/{seed['spare_conversation']}", {}),
        "POST /v1/conversations/{cid}/questions": (f"/v1/conversations/{c}/questions", ask),
        "GET /v1/models": ("/v1/models", {}),
        "POST /v1/chat/completions": ("/v1/chat/completions", {"json": {
            "model": "default", "messages": [{"role": "user", "content": "Is the east gate open early?"}]}}),
        "GET /v1/keys": ("/v1/keys", {}),
        "POST /v1/keys": ("/v1/keys", {"json": {"role": "read"}}),
        "DELETE /v1/keys/{key_id}": (f"/v1/keys/{seed['spare_key']}", {}),
    }


def seed(client) -> dict:
    assert client.post("/v1/collections", json={"name": "spare"}).status_code == 201
    r = client.post("/v1/collections/default/documents", files=[
        ("files", (name, (DATA / name).read_bytes(), "text/plain")) for name in ("parking.txt", "warranty.txt")])
    assert r.status_code == 202, r.text
    jobs = [wait_job(client, j["id"]) for j in r.json()["jobs"]]
    assert [j["status"] for j in jobs] == ["done", "done"], jobs
    chunks = client.get(f"/v1/collections/default/documents/{jobs[0]['document_id']}/chunks").json()["chunks"]
    asked = client.post("/v1/collections/default/questions", json={"question": PARK})
    assert asked.status_code == 200, asked.text
    conversations = [client.post("/v1/collections/default/conversations", json={}).json()["id"] for _ in range(2)]
    spare_key = client.post("/v1/keys", json={"role": "read", "name": "spare"}).json()["id"]
    return {"document": jobs[0]["document_id"], "spare_document": jobs[1]["document_id"], "chunk": chunks[0]["id"],
            "job": jobs[0]["id"], "question": asked.json()["id"], "conversation": conversations[0],
            "spare_conversation": conversations[1], "spare_key": spare_key}


def documented(doc: dict, operation: str, status: int) -> list[str]:
    method, path = operation.split(" ", 1)
    response = doc["paths"][path][method.lower()]["responses"].get(str(status))
    if response is None:
        return []
    return response["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]["enum"]


def send_all(client, reqs: dict[str, tuple[str, dict]]) -> dict[str, tuple[int, str | None]]:
    out = {}
    for operation, (url, kwargs) in reqs.items():
        r = client.request(operation.split(" ", 1)[0], url, **kwargs)
        out[operation] = (r.status_code, r.json()["error"]["code"] if r.status_code >= 400 else None)
    return out


@contextlib.contextmanager
def database_down(admin_url: str, url: str):
    """The database refuses new connections and its open ones are terminated, as when it is down."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            yield
        finally:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")


def test_the_503s_are_listed_wherever_they_happen(tmp_path, models_dir, small_generator_dir, embeddings_server,  # noqa: F811
                                                  pg_server, pg_url):
    from api.app import create_app

    url, _ = embeddings_server
    settings = en_settings(tmp_path / "state", models_dir, database_url=pg_url, embedder_url=url,
                           requests_per_minute=1_000_000, model_calls_per_minute=1_000_000,
                           max_model_calls=2, max_rounds=1, max_answer_tokens=8, timeout_s=30.0)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as client:
        doc = client.app.openapi()
        reqs = requests(seed(client))
        declared = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item}
        assert declared == set(reqs), f"operations without a request here: {sorted(declared - set(reqs))}"

        embedder = client.app.state.runtime.embedder
        reachable, embedder.url = embedder.url, f"http://127.0.0.1:{free_port()}/v1"
        try:
            answers = send_all(client, reqs)
        finally:
            embedder.url = reachable
        assert all(status < 500 or (status, code) == (503, "embedder_unavailable")
                   for status, code in answers.values()), answers
        embedding = {op for op, answer in answers.items() if answer == (503, "embedder_unavailable")}
        assert "POST /v1/collections/{name}/search" in embedding and "POST /v1/chat/completions" in embedding
        listed = {op for op in declared if "embedder_unavailable" in documented(doc, op, 503)}
        assert listed == embedding, (f"answered 503 embedder_unavailable but not listed: {sorted(embedding - listed)}; "
                                     f"listed but not answered: {sorted(listed - embedding)}")

        with database_down(pg_server, pg_url):
            answers = send_all(client, reqs)
        assert {op: a for op, a in answers.items() if a != (503, "store_unavailable")} == {}, answers
        unlisted = sorted(op for op in declared if "store_unavailable" not in documented(doc, op, 503))
        assert not unlisted, f"operations that touch the store without 503 store_unavailable in the OpenAPI: {unlisted}"


def test_an_embedded_deployment_lists_neither(tmp_path):
    """SQLite and a local embedder cannot answer either code: its document does not list them."""
    from api.app import create_app
    from rag.settings import Settings

    doc = create_app(Settings(data_dir=tmp_path / "state", load_generator=False)).openapi()
    text = str(doc["paths"])
    assert "store_unavailable" not in text and "embedder_unavailable" not in text and "embedding_failed" not in text
    assert "generator_unavailable" in text  # the configuration-free 503 stays
