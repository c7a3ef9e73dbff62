"""Every path parameter of every route, fed extreme values with every method: never a 5xx, and every
refusal in the API's one error shape `{"error": {"code", "message"}}` (405s with `Allow`).

Ids beyond SQLite's int64 once reached the store and came back as a plain-text 500 (OverflowError);
now they are refused at the edge like every other value a parameter cannot take. The routes are
walked from `app.routes`, so a route added later is covered without a line here.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from api.openapi import flat_routes
from tests.server import local_client
from tests.test_ask_e2e import en_settings

EXTREMES = [str(2**63), str(-(2**63) - 1), "-1", "0", str(10**30), "1e309", "NaN", "inf", "1.5", "0x10",
            "x" * 10_000, "%00", "\x00", "名字", "é", "\u202e", "../..", "..", " ", "a\nb", "9" * 400]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "HEAD"]
# A value each parameter can take (nothing of it exists but `default`), while another one is varied.
VALID = {"name": "default", "document_id": "1", "chunk_id": "1", "job_id": "0" * 32, "qid": "0" * 32,
         "key_id": "0" * 12, "cid": "0" * 32}
PARAM = re.compile(r"{(\w+)(?::\w+)?}")


@pytest.fixture(scope="module")
def client(tmp_path_factory, models_dir):
    from api.app import create_app

    settings = en_settings(tmp_path_factory.mktemp("params") / "state", models_dir, load_generator=False,
                           requests_per_minute=1_000_000)
    app = create_app(settings)
    with local_client(app, settings.data_dir) as c:
        yield c


def _encoded(value: str) -> str:
    """Percent-encoded, dots too: the client would otherwise resolve `..` into another path."""
    return quote(value, safe="").replace(".", "%2E")


def _paths(app) -> dict[str, list[str]]:
    """Each routed path with parameters, and its parameters' names."""
    paths = {}
    for route in flat_routes(app.routes):
        path = getattr(route, "path", None) or ""
        if names := PARAM.findall(path):
            paths[path] = names
    return paths


def test_the_walk_finds_every_parameter(client):
    paths = _paths(client.app)
    found = {name for names in paths.values() for name in names}
    assert {"name", "document_id", "chunk_id", "job_id", "qid", "key_id"} <= found, paths
    assert set(found) <= set(VALID), f"give the new parameter a valid value in VALID: {found - set(VALID)}"
    assert len([p for p in paths if p.startswith("/v1/")]) >= 12, paths


def test_extreme_path_values_are_refused_in_the_error_shape(client):
    body = {"question": "what does parking cost?", "query": "parking"}
    seen = 0
    for path, names in _paths(client.app).items():
        for name in names:
            for value in EXTREMES:
                url = path
                for other in names:
                    url = url.replace("{" + other + "}", _encoded(value if other == name else VALID[other]))
                for method in METHODS:
                    r = client.request(method, url, json=body if method in ("POST", "PUT", "PATCH") else None)
                    seen += 1
                    where = f"{method} {path} {name}={value[:40]!r}: {r.status_code} {r.text[:300]}"
                    assert r.status_code < 500, where
                    if path.startswith("/v1/"):
                        assert r.status_code >= 400, where
                    if r.status_code >= 400 and method != "HEAD":
                        error = r.json()["error"]
                        assert isinstance(error["code"], str) and isinstance(error["message"], str), where
                    if r.status_code == 405:
                        assert r.headers.get("allow"), where
    assert seen > 2000


@pytest.mark.parametrize("url", [
    f"/v1/collections/default/documents/{2**63}",
    "/v1/collections/default/documents/-1",
    f"/v1/collections/default/documents/{2**63}/chunks",
    f"/v1/collections/default/chunks/{2**63}",
])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_ids_beyond_int64_are_a_422_not_a_500(client, url, method):
    r = client.request(method, url)
    if r.status_code == 405:  # /chunks has no DELETE
        return
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text


def test_a_question_to_a_missing_collection_is_404_even_without_a_generator(client):
    r = client.post("/v1/collections/no-such-collection/questions", json={"question": "anything?"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found", r.text
    r = client.post("/v1/collections/default/questions", json={"question": "anything?"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "generator_unavailable", r.text


def test_a_malformed_collection_name_is_invalid_collection_name_everywhere(client):
    for method, url, kwargs in [("GET", "/v1/collections/-x/documents", {}),
                                ("DELETE", "/v1/collections/a%0A", {}),
                                ("GET", "/v1/questions?collection=..", {}),
                                ("POST", "/v1/collections", {"json": {"name": "bad name!"}}),
                                ("POST", "/v1/keys", {"json": {"role": "read", "grants": {"../x": "read"}}})]:
        r = client.request(method, url, **kwargs)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_collection_name", (url, r.text)


def test_405_names_every_method_of_the_path(client):
    r = client.request("TRACE", "/v1/collections")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "GET, POST"
    r = client.put("/v1/collections/default/documents")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
