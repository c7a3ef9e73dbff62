"""Authentication, roles, ceilings and guards, through a real app (in-process) and the `rag keys` CLI.

Tenant isolation over thousands of generated requests is tests/test_isolation.py.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys

import pytest

from tests.server import local_client
from tests.test_ask_e2e import en_settings, make_collection, wait_job

FILES = ["parking.txt"]


def _app(tmp_path, models_dir, **over):
    from api.app import create_app

    settings = en_settings(tmp_path / "state", models_dir, load_generator=False, **over)
    return create_app(settings), settings


@pytest.fixture(scope="module")
def secured(tmp_path_factory, models_dir):
    """A fresh install with defaults (auth on), two collections, and the admin key."""
    app, settings = _app(tmp_path_factory.mktemp("sec"), models_dir)
    with local_client(app, settings.data_dir) as client:
        make_collection(client, "alpha", FILES)
        make_collection(client, "beta", FILES)
        yield client, settings


def _key(client, role: str, collections=None) -> str:
    body = {"role": role, "name": f"test {role}"}
    if collections is not None:
        body["collections"] = collections
    r = client.post("/v1/keys", json=body)
    assert r.status_code == 201, r.text
    return r.json()["key"]


def _as(client, key: str | None) -> dict:
    return {"Authorization": f"Bearer {key}"} if key else {"Authorization": ""}


def test_fresh_install_answers_401_without_a_key_and_keeps_the_admin_key_private(secured, caplog):
    client, settings = secured
    path = settings.data_dir / "admin.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    assert key.startswith("rag_")
    for method, url in [("GET", "/v1/collections"), ("DELETE", "/v1/collections/beta"), ("GET", "/v1/usage"),
                        ("POST", "/v1/collections/alpha/search"), ("GET", "/v1/keys")]:
        r = client.request(method, url, headers=_as(client, None), json={"query": "x"} if method == "POST" else None)
        assert r.status_code == 401, (url, r.text)
        assert r.json()["error"]["code"] == "unauthorized" and r.headers["WWW-Authenticate"] == "Bearer"
    r = client.get("/v1/collections", headers=_as(client, "rag_000000000000_forged"))
    assert r.status_code == 401
    assert client.get("/health", headers=_as(client, None)).json() == {"status": "ok"}
    detail = client.get("/health").json()
    assert "models" in detail
    machine = detail["machine"]  # the CPU class auto chose a runtime by, and this process's memory
    assert machine["cpu_class"] in ("amx", "avx512-vnni", "avx2", "other") and machine["cpus"] >= 1
    assert 0 < machine["rss_mb"] <= machine["peak_rss_mb"]
    assert key not in caplog.text
    assert client.get("/v1/collections/beta/documents").status_code == 200  # nothing was deleted


def test_roles_per_collection(secured):
    client, _ = secured
    reader = _key(client, "read", ["alpha"])
    writer = _key(client, "write", ["alpha"])
    names = [c["name"] for c in client.get("/v1/collections", headers=_as(client, reader)).json()["collections"]]
    assert names == ["alpha"]
    assert client.post("/v1/collections/alpha/search", json={"query": "parking"}, headers=_as(client, reader)).status_code == 200
    # another tenant's collection does not exist for this key; its own is readable but not writable by a reader
    r = client.post("/v1/collections/beta/search", json={"query": "parking"}, headers=_as(client, reader))
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
    r = client.post("/v1/collections/alpha/documents", files=[("files", ("x.txt", b"hello there", "text/plain"))],
                    headers=_as(client, reader))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = client.post("/v1/collections/alpha/documents", files=[("files", ("x.txt", b"hello there world", "text/plain"))],
                    headers=_as(client, writer))
    assert r.status_code == 202, r.text
    job_id = r.json()["jobs"][0]["id"]
    assert wait_job(client, job_id)["status"] == "done"
    assert client.get(f"/v1/jobs/{job_id}", headers=_as(client, reader)).status_code == 200
    beta_only = _key(client, "read", ["beta"])
    r = client.get(f"/v1/jobs/{job_id}", headers=_as(client, beta_only))
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    # collections are created and deleted by admins only
    assert client.post("/v1/collections", json={"name": "gamma"}, headers=_as(client, writer)).status_code == 403
    assert client.delete("/v1/collections/alpha", headers=_as(client, writer)).status_code == 403
    assert client.delete("/v1/collections/beta", headers=_as(client, writer)).status_code == 404
    assert client.get("/v1/keys", headers=_as(client, writer)).status_code == 403


def test_a_key_can_hold_a_different_role_on_each_collection(secured):
    client, _ = secured
    r = client.post("/v1/keys", json={"role": "write", "grants": {"alpha": "write", "beta": "read"}})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert r.json()["grants"] == {"alpha": "write", "beta": "read"}
    upload = [("files", ("mixed.txt", b"a document for mixed grants", "text/plain"))]
    assert client.post("/v1/collections/beta/documents", files=upload, headers=_as(client, key)).status_code == 403
    r = client.post("/v1/collections/alpha/documents", files=upload, headers=_as(client, key))
    assert r.status_code == 202, r.text
    assert wait_job(client, r.json()["jobs"][0]["id"])["status"] == "done"
    r = client.post("/v1/keys", json={"role": "read", "grants": {"alpha": "admin"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_a_grant_is_to_a_collection_not_to_its_name(secured):
    client, _ = secured
    r = client.post("/v1/keys", json={"role": "read", "collections": ["notyet"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
    assert client.post("/v1/collections", json={"name": "fleeting"}).status_code == 201
    key = _key(client, "read", ["fleeting"])
    assert client.get("/v1/collections/fleeting/documents", headers=_as(client, key)).status_code == 200
    assert client.delete("/v1/collections/fleeting").status_code == 204
    assert client.post("/v1/collections", json={"name": "fleeting"}).status_code == 201
    r = client.get("/v1/collections/fleeting/documents", headers=_as(client, key))
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
    assert client.get("/v1/collections", headers=_as(client, key)).json()["collections"] == []
    key_id = key.split("_")[1]
    assert next(k for k in client.get("/v1/keys").json()["keys"] if k["id"] == key_id)["grants"] == {}


def test_keys_are_shown_once_listed_without_secrets_and_revocable(secured):
    client, _ = secured
    r = client.post("/v1/keys", json={"role": "read", "name": "temp"})
    assert r.status_code == 201
    made = r.json()
    listed = client.get("/v1/keys").json()["keys"]
    entry = next(k for k in listed if k["id"] == made["id"])
    assert "key" not in entry and made["key"] not in str(listed)
    assert client.get("/v1/collections", headers=_as(client, made["key"])).status_code == 200
    assert client.delete(f"/v1/keys/{made['id']}").json()["revoked_at"]
    assert client.get("/v1/collections", headers=_as(client, made["key"])).status_code == 401
    for bad in ({"role": "owner"}, {"role": "read", "extra": 1}, {"role": "read", "collections": ["../x"]}):
        r = client.post("/v1/keys", json=bad)
        assert r.status_code in (400, 422) and r.json()["error"]["code"] in ("invalid_request", "invalid_collection_name"), r.text


def test_health_tells_a_limited_key_only_about_its_own_collections(secured):
    from rag.store.jobs import create_job, update_job

    client, settings = secured
    conn = client.app.state.runtime.db.get()
    made = [create_job(conn, "beta", f"beta-{i}.txt").id for i in range(3)] + [create_job(conn, "alpha", "a.txt").id]
    try:
        admin = client.get("/health").json()
        assert {"versions", "store", "machine", "ingestion"} <= set(admin)
        limited = client.get("/health", headers=_as(client, _key(client, "read", ["alpha"]))).json()
        assert set(limited) == {"status", "models", "ingestion"}
        assert limited["ingestion"]["pending_jobs"] == 1  # beta's three jobs are another tenant's activity
        text = str(limited)
        assert str(settings.data_dir) not in text and "/" not in text  # no folder, database file or URL
        assert set(limited["models"]["embedder"]) == {"name", "loaded", "runtime", "mode"}
        everywhere = client.get("/health", headers=_as(client, _key(client, "read"))).json()
        assert set(everywhere) == {"status", "models", "ingestion"} and everywhere["ingestion"]["pending_jobs"] >= 4
    finally:
        for job_id in made:
            update_job(conn, job_id, status="cancelled")


@pytest.mark.parametrize("body, code", [
    ({"budget": {"max_model_calls": 50}}, "budget_above_limit"),
    ({"budget": {"timeout_s": 3600}}, "budget_above_limit"),
    ({"budget": {"max_prompt_tokens": 8001}}, "budget_above_limit"),
    ({"options": {"max_answer_tokens": 100000}}, "invalid_request"),
    ({"options": {"max_answer_tokens": 4000}}, "budget_above_limit"),
    ({"options": {"k": 10 ** 18}}, "invalid_request"),
    ({"options": {"max_neighbours": 10 ** 9}}, "invalid_request"),
    ({"options": {"max_cross_queries": -5}}, "invalid_request"),
    ({"options": {"rrf_k": -1}}, "invalid_request"),
    ({"options": {"thresholds": "x"}}, "invalid_request"),
    ({"options": {"expand": "notabool"}}, "invalid_request"),
    ({"options": {"no_such_option": 1}}, "invalid_request"),
    ({"temperature": 2}, "invalid_request"),  # unknown anywhere in the body: refused alike, naming the field
    ({"budget": {"max_model_call": 1}}, "invalid_request"),  # a misspelt budget must not run unbounded
])
def test_a_client_cannot_raise_a_ceiling_or_send_unbounded_options(secured, body, code):
    client, _ = secured
    r = client.post("/v1/collections/alpha/questions", json={"question": "Where do I park?", **body})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    unknown = {"temperature", "max_model_call", "no_such_option", "rrf_k", "thresholds"} & set(str(body).split("'"))
    if unknown:
        assert any(d["loc"][-1] in unknown for d in r.json()["error"]["details"]), r.text


@pytest.mark.parametrize("path, body", [
    ("/v1/collections", {"name": "gamma", "colour": "red"}),
    ("/v1/collections/alpha/search", {"query": "park", "k": 3, "rerank": True}),
])
def test_unknown_fields_are_refused_on_every_json_body(secured, path, body):
    client, _ = secured
    r = client.post(path, json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    assert [d["loc"][-1] for d in r.json()["error"]["details"]] == [next(k for k in body if k in ("colour", "rerank"))]


def test_host_header_and_cross_origin_changes_are_refused(secured):
    client, _ = secured
    r = client.get("/v1/collections", headers={"Host": "rebind.evil.example"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
    r = client.get("/v1/collections", headers={"Host": "[::1]evil.example"})  # allowed-looking prefix, junk after
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
    for name, value in (("Origin", "http://127.0.0.1"), ("Host", "127.0.0.1")):
        r = client.get("/v1/collections", headers=[(name, value), (name, "http://evil.example" if name == "Origin"
                                                                        else "rebind.evil.example")])
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_header", (name, r.text)
    assert client.get("/v1/collections", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    r = client.post("/v1/collections/alpha/documents", files=[("files", ("x.txt", b"planted", "text/plain"))],
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin_refused"
    r = client.get("/v1/collections", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers  # CORS is off by default
    r = client.options("/v1/collections", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_bodies_are_limited_before_they_are_parsed(secured):
    client, settings = secured
    big = b'{"question": "' + b"x" * (settings.max_json_bytes + 10) + b'"}'
    r = client.post("/v1/collections/alpha/questions", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    def chunked():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(settings.max_json_bytes // 65536 + 2):
            yield b" " * 65536

    r = client.post("/v1/collections/alpha/search", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    # claiming multipart does not lift a JSON route to the upload limit, with or without a key
    for route in ("/v1/collections", "/v1/collections/alpha/questions", "/v1/keys", "/v1/collections/alpha/search"):
        for headers in ({}, _as(client, None)):
            r = client.post(route, content=chunked(), headers={"Content-Type": "multipart/form-data; boundary=x",
                                                              **headers})
            assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large", (route, r.text)
    # while the upload route keeps its own, larger limit: this body is read whole and judged on its content
    r = client.post("/v1/collections/alpha/documents",
                    files=[("files", ("big.bin", b"\x00\x01" * settings.max_json_bytes, "application/octet-stream"))])
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_type", r.text


def test_rate_limits_answer_429_with_retry_after(tmp_path, models_dir):
    app, settings = _app(tmp_path, models_dir, requests_per_minute=5, max_files_per_request=2)
    with local_client(app, settings.data_dir) as client:
        codes = [client.get("/v1/collections").status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        r = client.get("/v1/collections")
        assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
        other = _key_via_cli(settings, "read")
        assert client.get("/v1/collections", headers=_as(client, other)).status_code == 200  # per key


def test_too_many_files_in_one_upload(tmp_path, models_dir):
    app, settings = _app(tmp_path, models_dir, max_files_per_request=2)
    with local_client(app, settings.data_dir) as client:
        files = [("files", (f"{i}.txt", b"some text", "text/plain")) for i in range(3)]
        r = client.post("/v1/collections/default/documents", files=files)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_files", r.text


def test_auth_off_is_explicit_and_logged(tmp_path, models_dir, caplog):
    with caplog.at_level(logging.WARNING):
        app, settings = _app(tmp_path, models_dir, auth="off")
    with local_client(app, settings.data_dir) as client:
        assert not (settings.data_dir / "admin.key").exists()
        assert client.get("/v1/collections").status_code == 200
        r = client.post("/v1/collections/default/documents", files=[("files", ("x.txt", b"planted", "text/plain"))],
                        headers={"Origin": "http://evil.example"})
        assert r.status_code == 403, "a cross-site form cannot upload even without keys"
    assert "RAG_AUTH=off" in caplog.text


def test_admin_key_from_the_environment(tmp_path, models_dir):
    app, settings = _app(tmp_path, models_dir, admin_key="a-long-admin-key-from-env-123")
    with local_client(app, settings.data_dir) as client:
        assert not (settings.data_dir / "admin.key").exists()
        assert client.get("/v1/collections", headers=_as(client, "a-long-admin-key-from-env-123")).status_code == 200
        assert client.get("/v1/collections", headers=_as(client, "a-long-admin-key-from-env-124")).status_code == 401


def _key_via_cli(settings, role: str, *collections: str) -> str:
    env = {**os.environ, "RAG_DATA_DIR": str(settings.data_dir)}
    args = [sys.executable, "-m", "rag_cli", "keys", "create", "--role", role, "--name", "cli"]
    for c in collections:
        args += ["--collection", c]
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_cli_keys_create_list_revoke(tmp_path, models_dir):
    app, settings = _app(tmp_path, models_dir)
    with local_client(app, settings.data_dir) as client:
        key = _key_via_cli(settings, "read", "default")
        mixed = _key_via_cli(settings, "read", "default:write")
        r = client.post("/v1/collections/default/documents", files=[("files", ("m.txt", b"mixed role text", "text/plain"))],
                        headers=_as(client, mixed))
        assert r.status_code == 202, r.text
        assert client.get("/v1/collections/default/documents", headers=_as(client, key)).status_code == 200
        env = {**os.environ, "RAG_DATA_DIR": str(settings.data_dir)}
        listed = subprocess.run([sys.executable, "-m", "rag_cli", "keys", "list"], env=env, capture_output=True,
                                text=True, timeout=120).stdout
        key_id = key.split("_")[1]
        assert key_id in listed and key not in listed and "default:read" in listed
        p = subprocess.run([sys.executable, "-m", "rag_cli", "keys", "revoke", key_id], env=env, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert client.get("/v1/collections", headers=_as(client, key)).status_code == 401
