"""The MCP server through the SDK's own client (`mcp.Client`): streamable HTTP against a real `rag serve`
process (`/mcp`), and stdio against a real `rag mcp` process on the same state folder. Small English
models (the e2e tests' `cli_env`). Checked: the four tools answer what the `/v1` routes answer, a key
limited to one collection sees nothing of another tenant's (the same error as for a collection that
does not exist), and a missing or wrong key is refused on both transports.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.server import Server
from tests.test_ask_e2e import CITATION_KEYS, CONTRACT_KEYS, DATA, SHIPPING_Q, cli_env

TOOLS = {"list_collections", "search", "ask", "get_trace"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, models_dir):
    """A server with `shop` (two documents) and `secret` (one, and a recorded question), and a key that
    may read `shop` only."""
    root = tmp_path_factory.mktemp("mcp")
    env = cli_env(root / "state", models_dir)
    srv = Server(root / "state", env=env).start()
    try:
        with srv.client(timeout=120) as c:
            for name, files in (("shop", ["shipping.html", "parking.txt"]), ("secret", ["warranty.txt"])):
                assert c.post("/v1/collections", json={"name": name}).status_code == 201
                r = c.post(f"/v1/collections/{name}/documents",
                           files=[("files", (f, (DATA / f).read_bytes())) for f in files])
                for job in r.json()["jobs"]:
                    _wait_job(c, job["id"])
            secret_q = c.post("/v1/collections/secret/questions",  # no model call: recorded, cheap
                              json={"question": "How long is the warranty?", "budget": {"max_model_calls": 0}})
            assert secret_q.status_code == 200, secret_q.text
            assert c.post("/v1/collections", json={"name": "empty"}).status_code == 201
            reader = c.post("/v1/keys", json={"role": "read", "collections": ["shop", "empty"], "name": "agent"}).json()["key"]
        yield {"server": srv, "env": env, "reader": reader, "secret_question": secret_q.json()["id"]}
    finally:
        srv.stop()


def _wait_job(client: httpx.Client, job_id: str) -> None:
    import time

    deadline = time.monotonic() + 120
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "done", job


def _http(server: Server, key: str | None, statuses: list[int] | None = None) -> Client:
    """The SDK's client over streamable HTTP with `key`; `statuses` collects every HTTP status it got."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def seen(response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=180), event_hooks={"response": [seen]})
    return Client(streamable_http_client(server.url + "/mcp", http_client=http))


def _refusal(result) -> str:
    """A tool error's text from the code on (the SDK puts "Error executing tool <name>: " before it)."""
    assert result.is_error, result
    text = result.content[0].text
    assert "[" in text, text
    return text[text.index("["):]


async def _tenant_checks(client: Client, secret_question: str) -> None:
    """What a key limited to `shop` may and may not do, whatever the transport."""
    assert {t.name for t in (await client.list_tools()).tools} == TOOLS
    listed = (await client.call_tool("list_collections", {})).structured_content
    assert sorted(c["name"] for c in listed["collections"]) == ["empty", "shop"]
    # nothing to answer from: said so before any model runs, as the HTTP API's 409 says it
    assert _refusal(await client.call_tool("ask", {"collection": "empty", "question": "Anything?"})
                    ).startswith("[collection_empty]")

    found = (await client.call_tool("search", {"collection": "shop", "query": SHIPPING_Q, "k": 3})).structured_content
    assert found["results"] and found["results"][0]["filename"] == "shipping.html"
    assert len(found["results"]) <= 3

    # Another tenant's collection and question read exactly like ones that do not exist.
    hidden = _refusal(await client.call_tool("search", {"collection": "secret", "query": "warranty"}))
    missing = _refusal(await client.call_tool("search", {"collection": "nowhere", "query": "warranty"}))
    assert hidden.startswith("[collection_not_found]") and hidden.replace("secret", "X") == missing.replace("nowhere", "X")
    assert _refusal(await client.call_tool("ask", {"collection": "secret", "question": "How long is the warranty?"})
                    ).startswith("[collection_not_found]")
    trace_of_other = _refusal(await client.call_tool("get_trace", {"question_id": secret_question}))
    trace_of_none = _refusal(await client.call_tool("get_trace", {"question_id": "0" * 32}))
    assert trace_of_other.replace(secret_question, "X") == trace_of_none.replace("0" * 32, "X")
    assert trace_of_other.startswith("[question_not_found]")
    # Bodies are checked by the API's own rules.
    assert _refusal(await client.call_tool("search", {"collection": "shop", "query": ""})).startswith("[invalid_request]")
    assert _refusal(await client.call_tool("ask", {"collection": "shop", "question": "   "})).startswith("[empty_question]")


def _check_answer(got: dict) -> dict:
    """The ask tool's answer has the API's contract and its trace the model calls its usage counts
    (the 135M model may abstain: what it says is not under test here, the wiring is)."""
    answer, trace = got["answer"], got["trace"]
    assert CONTRACT_KEYS <= set(answer) and isinstance(answer["answer"], str) and answer["answer"], answer
    assert all(CITATION_KEYS <= set(c) for c in answer["citations"])
    assert [e["type"] for e in trace["events"]][0] == "start" and trace["events"][-1]["type"] == "done"
    calls = [e for e in trace["events"] if e["type"] == "model_call"]
    assert len(calls) == answer["usage"]["model_calls"] >= 1
    return answer


def test_streamable_http_tools_tenants_and_ledger(world):
    server, reader = world["server"], world["reader"]

    async def run() -> dict:
        async with _http(server, reader) as client:
            await _tenant_checks(client, world["secret_question"])
            answer = (await client.call_tool("ask", {"collection": "shop", "question": SHIPPING_Q})).structured_content
            trace = (await client.call_tool("get_trace", {"question_id": answer["id"]})).structured_content
            return {"answer": answer, "trace": trace}

    got = asyncio.run(run())
    answer = _check_answer(got)
    # The same question, as the ledger holds it for the HTTP API, with the same usage.
    with server.client(key=reader) as c:
        recorded = c.get(f"/v1/questions/{answer['id']}").json()
    assert recorded["collection"] == "shop" and len(recorded["calls"]) == answer["usage"]["model_calls"]
    assert recorded["answer"] == answer["answer"] and recorded["usage"] == answer["usage"]


def test_streamable_http_refuses_a_missing_or_wrong_key(world):
    server = world["server"]
    for headers in ({}, {"Authorization": "Bearer rag_nothere_nothing"}):
        r = httpx.post(server.url + "/mcp", headers={**headers, "Accept": "application/json, text/event-stream"},
                       json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
        assert r.headers["WWW-Authenticate"] == "Bearer"

    statuses: list[int] = []

    async def run() -> None:
        async with _http(server, "rag_nothere_nothing", statuses) as client:
            await client.list_tools()

    with pytest.raises(BaseException, match="TaskGroup"):  # the SDK's client gives up on the 401
        asyncio.run(run())
    assert statuses and set(statuses) == {401}, statuses


def test_stdio_acts_as_its_key_and_refuses_a_wrong_one(world):
    from contextlib import closing

    from rag.settings import Settings
    from rag.store import ledger, open_db

    env = {**world["env"], "RAG_MCP_KEY": world["reader"]}
    db_path = Settings(data_dir=world["server"].data_dir).db_path
    with closing(open_db(db_path)) as conn:  # a question the server is answering right now
        (server_id,) = conn.execute("SELECT id FROM servers WHERE pid = ?", (world["server"].proc.pid,)).fetchone()
        ledger.start_question(conn, "r" * 32, "shop", "still running?", budget={}, options={}, models={},
                              server=server_id)
    params = StdioServerParameters(command=sys.executable, args=["-m", "rag_cli", "mcp"], env=env)

    async def run() -> dict:
        async with Client(params, read_timeout_seconds=180) as client:
            await _tenant_checks(client, world["secret_question"])
            answer = (await client.call_tool("ask", {"collection": "shop", "question": SHIPPING_Q})).structured_content
            trace = (await client.call_tool("get_trace", {"question_id": answer["id"]})).structured_content
        return {"answer": answer, "trace": trace}

    _check_answer(asyncio.run(run()))
    with closing(open_db(db_path)) as conn:  # `rag mcp` beside the server did not close it as a crash leftover
        assert ledger.get_question(conn, "r" * 32)["status"] == "running"

    bad = subprocess.run([sys.executable, "-m", "rag_cli", "mcp"], env={**env, "RAG_MCP_KEY": "rag_x_y"},
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert bad.returncode == 1 and "[unauthorized]" in bad.stderr and bad.stdout == "", (bad.stdout, bad.stderr)
