"""The OpenAI-compatible endpoints against a real `rag serve`, through the real `openai` client:
models are the collections a key may read; chat completions, streamed and not, in English and Chinese,
carry the answer with [n] markers and a sources list, the question id and citations, and `usage` equal
to the ledger's totals; earlier messages are the history (a follow-up is condensed); errors come in
OpenAI's shape and raise the client's own exception classes. Small models (`tests/test_ask_e2e.py`'s
settings); one server for the module."""

from __future__ import annotations

import openai
import pytest

from tests.server import Server
from tests.test_ask_e2e import SHIPPING_Q, ZH_FILES, cli_env, make_collection

EN_FILES = ["parking.txt", "shipping.html", "brewmaster.md"]
ZH_Q = "明长城全长多少公里？"


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    root = tmp_path_factory.mktemp("openai-chat")
    env = {**cli_env(root / "state", models_dir), "RAG_MAX_ANSWER_TOKENS": "24"}
    srv = Server(root / "state", env=env).start()
    try:
        with srv.client() as c:
            make_collection(c, "en", EN_FILES)
            make_collection(c, "zh", ZH_FILES)
        yield srv
    finally:
        srv.stop()


def client_of(server: Server, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key or server.admin_key, max_retries=0, timeout=120)


def recorded(server: Server, qid: str) -> dict:
    with server.client() as c:
        r = c.get(f"/v1/questions/{qid}")
        assert r.status_code == 200, r.text
        return r.json()


def expected_content(answer: dict, header: str) -> str:
    """What the service writes: the answer, then its sources (as `rag.service.chat.ChatService.content`;
    text files have no pages)."""
    if not answer["citations"]:
        return answer["answer"]
    assert all(c["page"] is None for c in answer["citations"])
    return answer["answer"] + f"\n\n{header}\n" + "\n".join(f"[{c['n']}] {c['filename']}" for c in answer["citations"])


def check_usage(usage, answer: dict) -> None:
    assert usage.prompt_tokens == answer["usage"]["prompt_tokens"] > 0
    assert usage.completion_tokens == answer["usage"]["completion_tokens"]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_models_are_the_collections_a_key_may_read(server):
    ids = {m.id for m in client_of(server).models.list()}
    assert {"default", "en", "zh"} <= ids
    with server.client() as c:
        key = c.post("/v1/keys", json={"role": "read", "collections": ["zh"]}).json()["key"]
    assert [m.id for m in client_of(server, key).models.list()] == ["zh"]
    with pytest.raises(openai.NotFoundError) as err:  # another tenant's collection: as if it did not exist
        client_of(server, key).chat.completions.create(model="en", messages=[{"role": "user", "content": SHIPPING_Q}])
    assert err.value.body["code"] == "collection_not_found" and err.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize("model,question,header", [("en", SHIPPING_Q, "Sources:"), ("zh", ZH_Q, "来源：")])
def test_a_completion_is_the_answer_with_its_sources_and_the_ledgers_usage(server, model, question, header):
    done = client_of(server).chat.completions.create(model=model, messages=[
        {"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": question}])
    qid = done.model_extra["question_id"]
    answer = recorded(server, qid)
    assert answer["question"] == question and done.model == model and done.id == f"chatcmpl-{qid}"
    assert done.choices[0].message.role == "assistant" and done.choices[0].finish_reason in ("stop", "length")
    assert done.choices[0].message.content == expected_content(answer, header)
    assert done.model_extra["citations"] == answer["citations"]
    check_usage(done.usage, answer)


@pytest.mark.parametrize("model,question,header", [("en", SHIPPING_Q, "Sources:"), ("zh", ZH_Q, "来源：")])
def test_a_streamed_completion_ends_with_done_and_the_same_text(server, model, question, header):
    chunks = list(client_of(server).chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (finish,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    qid = finish.model_extra["question_id"]
    answer = recorded(server, qid)
    assert text == expected_content(answer, header) and finish.model_extra["citations"] == answer["citations"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    check_usage(chunks[-1].usage, answer)
    assert {c.id for c in chunks} == {f"chatcmpl-{qid}"}


def test_earlier_messages_are_the_history_and_a_follow_up_is_condensed(server):
    first = client_of(server).chat.completions.create(model="en", messages=[{"role": "user", "content": SHIPPING_Q}])
    follow = client_of(server).chat.completions.create(model="en", messages=[
        {"role": "user", "content": SHIPPING_Q}, {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And how much does it cost?"}])
    qid = follow.model_extra["question_id"]
    with server.client() as c:
        trace = c.get(f"/v1/questions/{qid}/trace").json()
    (step,) = [e for e in trace["events"] if e.get("step") == "condense"]
    assert step["verdict"] in ("condense", "fallback") and step["history_turns"] == 1
    assert trace["settings"]["history"]["turns"][0]["question"] == SHIPPING_Q
    assert "Sources:" not in trace["settings"]["history"]["turns"][0]["answer"]  # our sources list is not history
    check_usage(follow.usage, recorded(server, qid))


def test_errors_have_openais_shape(server):
    with pytest.raises(openai.AuthenticationError) as err:
        client_of(server, "rag_not_a_key").models.list()
    assert err.value.body["type"] == "authentication_error" and err.value.body["code"] == "unauthorized"
    with pytest.raises(openai.NotFoundError) as err:
        client_of(server).chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "collection_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client_of(server).chat.completions.create(model="en", messages=[{"role": "assistant", "content": "hello"}])
    assert err.value.body["code"] == "invalid_messages" and err.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client_of(server).chat.completions.create(model="en", messages=[])
    assert err.value.body["code"] == "invalid_request" and err.value.body["type"] == "invalid_request_error"
