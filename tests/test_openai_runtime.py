"""The openai generator runtime and the remote embedder, against real servers (no mocks).

The generator side runs against llama.cpp's own HTTP server (xllamacpp, in a child process on a
loopback port: `rag_bench.concurrency.LlamaServer`) with SmolLM2-135M's GGUF from the test model
cache: accounting equal to the server's `usage`, streaming, stop strings, deadlines, the whole
question through the API with its ledger rows, two questions overlapping on two slots, and a server
that is killed (SIGKILL), frozen (SIGSTOP) or gone before the call.

The model cache has no embedding GGUF, so the remote embedder runs against a small real HTTP server
(FastAPI + uvicorn in a thread) that computes `/v1/embeddings` with the project's real
all-MiniLM-L6-v2 `Embedder`.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from contextlib import closing

import numpy as np
import pytest

from rag_bench.concurrency import LlamaServer, free_port
from rag.errors import RagError
from rag.models import cache
from rag.models.openai_runtime import GeneratorUnavailable, LlamaServerTokens, OpenAIGenerator, public_url, server_root
from rag.models.registry import REGISTRY

SMOL = "smollm2-135m-instruct"
SECRET = [{"role": "user", "content": "The secret code is 4721.\n\nWhat is the secret code?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
CHINESE = [{"role": "system", "content": "只用中文回答。"}, {"role": "user", "content": "长城有多长？请简要回答。"}]


@pytest.fixture(scope="module")
def smol_gguf(models_dir):
    return cache.prepare(REGISTRY[SMOL], models_dir, progress=False, runtime="llamacpp").path


@pytest.fixture(scope="module")
def server(smol_gguf):
    s = LlamaServer.start(smol_gguf / "model.gguf", slots=2, ctx_per_slot=2048, threads=1, alias=SMOL)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gen(server, smol_gguf):
    g = OpenAIGenerator.connect(server.url, tokenizer_folder=smol_gguf, timeout_s=60)
    yield g
    g.close()


# ---------------------------------------------------------------- the generator


def test_connect_reports_runtime_server_model_and_token_source(gen, server):
    s = gen.status()
    assert s["runtime"] == "openai" and s["server"] == server.url and s["model"] == SMOL
    assert s["context_length"] == 2048  # llama.cpp's per-slot n_ctx
    assert s["count_tokens"] == "local" and s["count_tokens_check"].startswith("equal to llamacpp-server")
    assert public_url("http://user:secret@gpu-box:8080/v1/?key=1") == "http://gpu-box:8080/v1"
    assert server_root("http://h:1/v1/") == "http://h:1"


@pytest.mark.parametrize("messages", [SECRET, CHINESE], ids=["en", "zh"])
def test_prompt_tokens_equal_the_servers_usage(gen, server, messages):
    c = gen.generate(messages, max_new_tokens=6)
    assert c.stopped_by == "max_tokens" and c.completion_tokens == 6  # ran to the end: counts are the server's
    assert c.prompt_tokens == gen.prompt_tokens(messages)
    assert c.runtime == "openai" and c.server == server.url and c.model_id == SMOL
    raw = gen.client.chat.completions.create(model=SMOL, messages=messages, max_tokens=1, temperature=0.0)
    assert raw.usage.prompt_tokens == gen.prompt_tokens(messages)
    assert LlamaServerTokens(gen.http, server_root(server.url)).prompt_tokens(messages) == raw.usage.prompt_tokens


def test_streamed_pieces_concatenate_to_the_answer(gen):
    pieces: list[str] = []
    c = gen.generate(SECRET, max_new_tokens=24, on_token=pieces.append)
    assert "4721" in c.text and len(pieces) > 3 and "".join(pieces) == c.text
    assert c.stopped_by == "eos"


def test_stop_string_ends_the_call_and_is_never_streamed(gen):
    full = gen.generate(STORY, max_new_tokens=40).text
    words = full.split()
    stop = words[len(words) // 2]
    pieces: list[str] = []
    c = gen.generate(STORY, max_new_tokens=40, stop=[stop], on_token=pieces.append)
    assert c.stopped_by == "stop" and c.text == full[: full.index(stop)]
    assert "".join(pieces) == c.text and stop not in "".join(pieces)
    assert c.prompt_tokens == gen.prompt_tokens(STORY) and 0 < c.completion_tokens <= 40


def test_deadline_ends_the_call(gen):
    c = gen.generate(STORY, max_new_tokens=5, deadline=time.monotonic() - 1)
    assert c.stopped_by == "deadline" and c.text == "" and c.prompt_tokens == 0
    t = time.monotonic()
    c = gen.generate(STORY, max_new_tokens=1000, deadline=t + 0.8)
    assert c.stopped_by == "deadline" and time.monotonic() - t < 3.0


def test_the_servers_tokenizer_without_a_local_folder(server):
    g = OpenAIGenerator.connect(server.url)
    try:
        assert g.status()["count_tokens"] == "llamacpp-server"
        c = g.generate(SECRET, max_new_tokens=4)
        assert c.completion_tokens == 4 and c.prompt_tokens == g.prompt_tokens(SECRET)
        assert g.count_tokens("The secret code") == 3
    finally:
        g.close()


def test_loader_and_in_process_slots(server, models_dir, smol_gguf):
    from rag.models.llamacpp import LlamaCppGenerator
    from rag.models.loader import load_generator
    from rag.service.answering import question_slots
    from rag.settings import Settings

    s = Settings(model_cache_dir=models_dir, generator=SMOL, generator_runtime="openai", generator_url=server.url,
                 max_concurrent_questions=3)
    g, status = load_generator(s)
    try:
        assert status.path == server.url and status.details["model"] == SMOL
        assert status.details["runtime"] == "openai" and status.details["count_tokens"] == "local"
        assert question_slots(s, g) == 3 and question_slots(s, LlamaCppGenerator) == 1
    finally:
        g.close()
    with pytest.raises(GeneratorUnavailable):
        load_generator(s.model_copy(update={"generator_url": f"http://127.0.0.1:{free_port()}/v1"}))


# ---------------------------------------------------------------- whole questions through the API


@pytest.fixture(scope="module")
def app_client(tmp_path_factory, models_dir, server, smol_gguf):
    from api.app import create_app
    from tests.server import local_client
    from tests.test_ask_e2e import en_settings, make_collection

    settings = en_settings(tmp_path_factory.mktemp("openai") / "state", models_dir, generator_runtime="openai",
                           generator_url=server.url, max_concurrent_questions=2, ingest_embed_process=False)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as client:
        make_collection(client, "srv", ["parking.txt", "shipping.html", "brewmaster.md"])
        yield client


def _db(client) -> sqlite3.Connection:
    conn = sqlite3.connect(client.app.state.runtime.settings.db_path)
    conn.row_factory = sqlite3.Row
    return conn


def _calls(client, qid: str) -> list[dict]:
    with closing(_db(client)) as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM model_calls WHERE question_id = ? ORDER BY n", (qid,))]


def test_a_question_is_answered_through_the_server(app_client, server, gen):
    from tests.test_ask_e2e import SHIPPING_Q, ask

    health = app_client.get("/health").json()["models"]["generator"]
    assert health["details"]["runtime"] == "openai" and health["details"]["server"] == server.url
    assert health["details"]["model"] == SMOL and health["details"]["count_tokens"] == "local"
    assert app_client.app.state.runtime.embed_process is None  # ingest_embed_process=False here

    result, trace = ask(app_client, "srv", SHIPPING_Q)
    assert result["usage"]["model_calls"] >= 1 and result["answer"]  # SmolLM2-135M: the loop's path, not quality
    assert result["abstained"] or result["citations"]
    rows = _calls(app_client, result["id"])
    assert rows and all(r["runtime"] == "openai" and r["server"] == server.url and r["model_id"] == SMOL
                        and r["status"] == "ok" for r in rows)
    for e in (e for e in trace["events"] if e["type"] == "model_call"):
        assert e["server"] == server.url and e["runtime"] == "openai" and not e["failed"]
        if e["stopped_by"] in ("eos", "max_tokens"):  # the server's usage, equal to our count of the prompt
            assert e["prompt_tokens"] == gen.prompt_tokens(e["messages"])


def test_two_questions_overlap_on_two_slots(app_client):
    from rag.service.answering import AskRequest
    from tests.test_ask_e2e import SHIPPING_Q

    questions = app_client.app.state.runtime.questions
    assert questions.slots == 2
    spans: dict[int, list[float]] = {0: [], 1: []}
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        def on_event(e: dict) -> None:
            if e["type"] in ("model_call_started", "model_call") and e.get("purpose", "answer") == "answer":
                spans[i].append(time.monotonic())
        try:
            barrier.wait()
            questions.ask(AskRequest("srv", SHIPPING_Q, options={"max_answer_tokens": 48}), on_event=on_event)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and all(len(s) == 2 for s in spans.values()), (errors, spans)
    (a0, a1), (b0, b1) = spans[0], spans[1]
    assert max(a0, b0) < min(a1, b1), f"answer calls did not overlap: {spans}"


def _swap_generator(client, url: str, smol_gguf, timeout_s: float = 60):
    questions = client.app.state.runtime.questions
    old = questions.generator
    questions.generator = OpenAIGenerator.connect(url, tokenizer_folder=smol_gguf, timeout_s=timeout_s)
    return questions, old


def _failed_question(client, qid: str) -> dict:
    with closing(_db(client)) as conn:
        return dict(conn.execute("SELECT status, error_code FROM questions WHERE id = ?", (qid,)).fetchone())


@pytest.mark.parametrize("how", ["kill", "freeze"])
def test_a_server_lost_mid_answer_fails_the_question_and_records_the_call(app_client, smol_gguf, how):
    from rag.service.answering import AskRequest
    from tests.test_ask_e2e import SHIPPING_Q

    victim = LlamaServer.start(smol_gguf / "model.gguf", slots=1, threads=1, alias=SMOL)
    # llama.cpp sends nothing during the prefill (seconds on a loaded 2-core machine): the timeout must cover it
    questions, old = _swap_generator(app_client, victim.url, smol_gguf, timeout_s=10.0)
    seen: list[str] = []

    def on_token(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            os.kill(victim.proc.pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)

    qid = f"lost-{how}"
    t = time.monotonic()
    try:
        with pytest.raises(RagError) as info:
            questions.ask(AskRequest("srv", SHIPPING_Q, options={"max_answer_tokens": 48}), on_token=on_token, qid=qid)
        elapsed = time.monotonic() - t
    finally:
        questions.generator.close()
        questions.generator = old
        victim.kill()
    assert info.value.code == "generator_unavailable" and info.value.status == 503
    assert elapsed < 45, elapsed  # prefill, then at most the 10 s timeout
    assert _failed_question(app_client, qid) == {"status": "failed", "error_code": "generator_unavailable"}
    failed = [r for r in _calls(app_client, qid) if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["server"] == victim.url and failed[0]["runtime"] == "openai"
    assert failed[0]["prompt_tokens"] > 0 and failed[0]["completion_tokens"] >= 3, (seen, _calls(app_client, qid), repr(info.value.__cause__))


def test_a_server_gone_before_the_call_fails_fast(app_client, smol_gguf):
    from rag.service.answering import AskRequest
    from tests.test_ask_e2e import SHIPPING_Q

    victim = LlamaServer.start(smol_gguf / "model.gguf", slots=1, threads=1, alias=SMOL)
    questions, old = _swap_generator(app_client, victim.url, smol_gguf)
    victim.kill()
    t = time.monotonic()
    try:
        with pytest.raises(RagError) as info:
            questions.ask(AskRequest("srv", SHIPPING_Q), qid="gone-before")
    finally:
        questions.generator.close()
        questions.generator = old
    assert info.value.code == "generator_unavailable" and time.monotonic() - t < 10
    (row,) = _calls(app_client, "gone-before")
    assert row["status"] == "failed" and row["prompt_tokens"] == 0 and row["completion_tokens"] == 0


# ---------------------------------------------------------------- the remote embedder


@pytest.fixture(scope="module")
def local_embedder(small_embedder_dir):
    from rag.models.embedder import Embedder

    return Embedder.load(small_embedder_dir, model_id="all-minilm-l6-v2")


@pytest.fixture(scope="module")
def embeddings_server(local_embedder):
    """A real `/v1/embeddings` server computing with the real small embedder (no prefixes: raw input)."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    calls: list[int] = []

    @app.post("/v1/embeddings")
    def embeddings(body: dict) -> dict:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        calls.append(len(texts))
        vecs = local_embedder._encode(texts) * 3.0  # not normalised: the client must normalise
        return {"object": "list", "model": body["model"],
                "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)]}

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", calls
    srv.should_exit = True
    thread.join(10)


def test_remote_embedder_matches_the_local_one(embeddings_server, local_embedder, small_embedder_dir):
    from rag.models.remote_embedder import RemoteEmbedder

    url, calls = embeddings_server
    remote = RemoteEmbedder.connect(url, model_id="all-minilm-l6-v2", folder=small_embedder_dir, batch_size=3,
                                    query_prefix="", passage_prefix="")
    try:
        assert remote.dim == local_embedder.dim == 384 and remote.max_seq_length == local_embedder.max_seq_length
        texts = ["How long does shipping take?", "Parking is free after 18:00.", "x" * 50, "ünïcödé 東京", "a"]
        assert remote.count_tokens_batch(texts) == local_embedder.count_tokens_batch(texts)
        assert [remote.count_tokens(t) for t in texts] == [local_embedder.count_tokens(t) for t in texts]
        assert remote.max_content_tokens == local_embedder.max_content_tokens
        calls.clear()
        got = remote.embed_passages(texts)
        assert calls == [3, 2]  # batch_size texts per request
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        # the same vectors up to batching (the server got batches of 3 and 2, padded differently) and precision
        assert (np.sum(got * local_embedder.embed_passages(texts), axis=1) > 0.999).all()
        assert float(remote.embed_queries(texts[:1])[0] @ local_embedder.embed_queries(texts[:1])[0]) > 0.999
        assert remote.embed_queries([]).shape == (0, 384)
    finally:
        remote.close()


def test_ingestion_with_an_embedder_url_starts_no_child_and_searches(embeddings_server, tmp_path, models_dir):
    from ingest.uploads import Upload
    from rag import store
    from rag.models.remote_embedder import RemoteEmbedder
    from rag.service.runtime import Runtime
    from rag.settings import Settings

    url, calls = embeddings_server
    s = Settings(data_dir=tmp_path / "state", model_cache_dir=models_dir, embedder="all-minilm-l6-v2",
                 embedder_url=url, load_generator=False, ingest_embed_process=True, chunk_tokens=128)
    rt = Runtime(s)
    rt.start(worker=False)
    try:
        assert isinstance(rt.embedder, RemoteEmbedder) and rt.embed_process is None
        assert rt.health()["models"]["embedder"]["details"]["server"] == url
        store.create_collection(rt.db.get(), "remote", "")
        calls.clear()
        (job,) = rt.ingest.submit("remote", [Upload("ferry.txt", b"The ferry leaves the east pier every 40 minutes. "
                                                                  b"A monthly pass costs 62 euros.")])
        assert rt.ingest.run_job(job.id) is not None and calls  # embedded by the server
        hits = rt.searcher.search("remote", "monthly ferry pass price", k=3)
        assert hits and "62 euros" in hits[0].text
    finally:
        rt.close()
        rt.embedder.close()


def test_remote_embedder_unavailable(small_embedder_dir, embeddings_server):
    from rag.models.remote_embedder import EmbedderUnavailable, RemoteEmbedder

    url, _ = embeddings_server
    remote = RemoteEmbedder.connect(url, model_id="all-minilm-l6-v2", folder=small_embedder_dir)
    remote.url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EmbedderUnavailable) as info:
        remote.embed_queries(["anything"])
    assert info.value.code == "embedder_unavailable" and info.value.status == 503
