"""Asking, end to end with REAL models over a small bilingual corpus (`tests/data/ask/`).

Two module-scoped in-process apps (`TestClient(create_app(settings))`), each with its own data dir:

* `en`: the small English models (all-MiniLM-L6-v2 + SmolLM2-135M-Instruct): the expansion,
  sufficient-evidence, abstention, budget and injection paths, and the CLI.
* `zh`: the default models (multilingual-e5-small + Qwen2.5-Coder-0.5B-Instruct): the Chinese
  questions (Simplified and Traditional), a Chinese injection, and the rewrite path (SmolLM-135M does
  not rewrite: it echoes the question; Qwen writes keyword phrases).

Assertions are about what the service guarantees (what reached the context, which events the trace
holds, what was cited, what was counted), plus the answer text where the real model's greedy output
was checked to be right (Qwen on the Chinese and bike questions). SmolLM-135M's answers are mostly
copies of the passages; they are not asserted beyond the service's own post-processing.

Settings shared by both apps, and why:

* `threads=1`: the test machine has 2 cores shared with other jobs. Torch's intra-op threads spin
  on each other under load: SmolLM measured 9 s for 40 tokens with one thread and 50-60 s with two.
* `max_answer_tokens=48` and `timeout_s=120`: the answers needed here are short, and a loaded
  machine must not turn a budget-free question into a `timeout_s` stop.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from tests.server import local_client

from rag.ask import prompts
from rag.ask.loop import query_key
from rag.text.lang import convert_script

DATA = Path(__file__).parent / "data" / "ask"
ROOT = Path(__file__).resolve().parent.parent

EN_FILES = ["brewmaster.md", "warranty.txt", "leave_policy.txt", "parking.txt", "shipping.html"]
ZH_FILES = ["zh_great_wall.txt", "zh_palace.txt", "zh_yellow_river.txt"]
ZH_INJECT_FILES = ["zh_inject_yellow_river.txt", "zh_palace.txt"]
FACILITIES_FILES = ["bike.txt", "leave_policy.txt", "warranty.txt"]

DESCALE_Q = "How do I descale the Brewmaster 3000 espresso machine?"
SHIPPING_Q = "How long does standard shipping take?"
GARAGE_Q = "How many cars fit in the company garage?"  # 1 of 4 key terms in the corpus: weak -> rewrite
CONTRACT_KEYS = {"id", "answer", "abstained", "citations", "usage", "stopped_by", "complete", "incomplete_reason",
                 "verified", "dropped_sentences"}
CITATION_KEYS = {"n", "chunk_ids", "document_id", "filename", "page", "quote"}
USAGE_KEYS = {"model_calls", "prompt_tokens", "completion_tokens", "seconds", "by_purpose"}
COST_RE = re.compile(r"\d+ model calls? · [\d,]+ prompt tokens · [\d,]+ completion tokens · [\d.]+ s")


# --------------------------------------------------------------------------- helpers (also used by test_questions_api)


def en_settings(data_dir: Path, models_dir: Path, **over):
    from rag.settings import Settings

    values = dict(data_dir=data_dir, model_cache_dir=models_dir, embedder="all-minilm-l6-v2",
                  generator="smollm2-135m-instruct", chunk_tokens=128, context_window=1024,
                  max_answer_tokens=48, threads=1, timeout_s=120.0)
    return Settings(**{**values, **over})


def zh_settings(data_dir: Path, models_dir: Path):
    from rag.settings import Settings

    # The default embedder and chunking with the 0.5B generator: these assertions (the rewrite's phrases,
    # the answers' wording) were measured on it, and it runs three times faster. The default 1.5B
    # generator is loaded and asked in Chinese and English by tests/test_llamacpp.py (both runtimes).
    return Settings(data_dir=data_dir, model_cache_dir=models_dir, generator="qwen2.5-coder-0.5b-instruct",
                    max_answer_tokens=48, threads=1, timeout_s=120.0)


def wait_job(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"
        time.sleep(0.1)


def make_collection(client, name: str, files: list[str]) -> None:
    r = client.post("/v1/collections", json={"name": name})
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/collections/{name}/documents",
                    files=[("files", (f, (DATA / f).read_bytes(), "application/octet-stream")) for f in files])
    assert r.status_code == 202, r.text
    for j in r.json()["jobs"]:
        job = wait_job(client, j["id"])
        assert job["status"] == "done", job


def chunks(client, collection: str) -> dict[int, dict]:
    """Every chunk of a collection by id, with its document's filename."""
    out = {}
    for d in client.get(f"/v1/collections/{collection}/documents").json()["documents"]:
        for c in client.get(f"/v1/collections/{collection}/documents/{d['id']}/chunks").json()["chunks"]:
            out[c["id"]] = {**c, "filename": d["filename"]}
    return out


def chunk_with(all_chunks: dict[int, dict], needle: str) -> int:
    (cid,) = [cid for cid, c in all_chunks.items() if needle in c["text"]]
    return cid


def ask(client, collection: str, question: str, *, budget=None, options=None) -> tuple[dict, dict]:
    body = {"question": question}
    if budget is not None:
        body["budget"] = budget
    if options is not None:
        body["options"] = options
    r = client.post(f"/v1/collections/{collection}/questions", json=body)
    assert r.status_code == 200, r.text
    result = r.json()
    trace = client.get(f"/v1/questions/{result['id']}/trace")
    assert trace.status_code == 200, trace.text
    return result, trace.json()


def events(trace: dict, kind: str) -> list[dict]:
    return [e for e in trace["events"] if e["type"] == kind]


def evidence(trace: dict) -> list[dict]:
    return [e for e in events(trace, "decision") if e["step"] == "evidence"]


def retrieved_ids(trace: dict) -> set[int]:
    """Chunks some search returned, plus neighbours the expansion step fetched."""
    ids = {c["chunk_id"] for e in events(trace, "candidates") for c in e["fused"]}
    return ids | {e["chunk_id"] for e in events(trace, "expansion") if e["added"]}


def context_ids(trace: dict) -> set[int]:
    return {cid for p in trace["context"] for cid in p["chunk_ids"]}


def check_contract(result: dict, trace: dict) -> None:
    """The response shape, the ledger sums, and citations inside the context inside the retrieved set."""
    assert CONTRACT_KEYS <= set(result), result.keys()
    assert USAGE_KEYS <= set(result["usage"])
    # an answer is marked incomplete exactly when its answer call was cut, in the result and the `done` event
    (done,) = events(trace, "done")
    assert done["complete"] is result["complete"] is (result["incomplete_reason"] is None)
    answer_stops = [e["stopped_by"] for e in events(trace, "model_call") if e["purpose"] == "answer"]
    assert result["complete"] is not (answer_stops[-1:] in (["deadline"], ["max_tokens"]))
    # cited answers are verified, abstentions neither; an uncited answer says it was not verified
    assert result["verified"] is (None if result["abstained"] else bool(result["citations"])), result
    assert isinstance(result["dropped_sentences"], int)
    for c in result["citations"]:
        assert CITATION_KEYS <= set(c)
        assert set(c["chunk_ids"]) <= context_ids(trace), (c, trace["context"])
        assert c["quote"]
    assert context_ids(trace) <= retrieved_ids(trace)
    calls = trace["calls"]
    u = result["usage"]
    assert u["model_calls"] == len(calls) == len(events(trace, "model_call"))
    assert u["prompt_tokens"] == sum(c["prompt_tokens"] for c in calls)
    assert u["completion_tokens"] == sum(c["completion_tokens"] for c in calls)
    assert {p: b["calls"] for p, b in u["by_purpose"].items()} == {
        p: sum(1 for c in calls if c["purpose"] == p) for p in {c["purpose"] for c in calls}}
    answer_calls = [e for e in events(trace, "model_call") if e["purpose"] == "answer"]
    if answer_calls:  # the context is exactly what the answering call was given
        user = answer_calls[-1]["messages"][-1]["content"]
        for p in trace["context"]:
            assert p["text"] in user
    else:
        assert trace["context"] == []


def cli_env(data_dir: Path, models_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_DATA_DIR=str(data_dir), RAG_MODEL_CACHE_DIR=str(models_dir), RAG_EMBEDDER="all-minilm-l6-v2",
               RAG_GENERATOR="smollm2-135m-instruct", RAG_CHUNK_TOKENS="128", RAG_CONTEXT_WINDOW="1024",
               RAG_MAX_ANSWER_TOKENS="32", RAG_THREADS="1", RAG_TIMEOUT_S="120",
               # each subprocess would re-hash the model files (seconds on a loaded machine); the
               # prepared copies were checked when they were built
               RAG_VERIFY_MODELS_ON_LOAD="false",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


# --------------------------------------------------------------------------- apps


@pytest.fixture(scope="module")
def en(tmp_path_factory, models_dir):
    from api.app import create_app

    settings = en_settings(tmp_path_factory.mktemp("en") / "state", models_dir)
    with local_client(create_app(settings), settings.data_dir) as client:
        make_collection(client, "en", EN_FILES)
        yield client


@pytest.fixture(scope="module")
def en_chunks(en):
    return chunks(en, "en")


@pytest.fixture(scope="module")
def zh(tmp_path_factory, models_dir):
    from api.app import create_app

    settings = zh_settings(tmp_path_factory.mktemp("zh") / "state", models_dir)
    with local_client(create_app(settings), settings.data_dir) as client:
        make_collection(client, "zh", ZH_FILES)
        make_collection(client, "zh-inject", ZH_INJECT_FILES)
        make_collection(client, "facilities", FACILITIES_FILES)
        yield client


# --------------------------------------------------------------------------- 1 + 5: sufficient evidence, expansion


def test_sufficient_evidence_one_call_and_expansion_brings_the_cut_off_list(en, en_chunks):
    head = chunk_with(en_chunks, "The three steps are:")
    steps = chunk_with(en_chunks, "white vinegar")
    assert en_chunks[head]["text"].rstrip().endswith("The three steps are:")
    assert en_chunks[steps]["document_id"] == en_chunks[head]["document_id"]

    result, trace = ask(en, "en", DESCALE_Q)
    check_contract(result, trace)
    # sufficient evidence -> straight to the answer: exactly one model call
    (ev,) = evidence(trace)
    assert ev["verdict"] == "sufficient", ev
    assert result["usage"]["model_calls"] == 1 and set(result["usage"]["by_purpose"]) == {"answer"}
    assert result["stopped_by"] is None
    # the list chunk matches none of the question's words: selection left it out ...
    (sel,) = events(trace, "selection")
    assert steps not in sel["selected"]
    assert all(steps not in [c["chunk_id"] for c in e["bm25"]] for e in events(trace, "candidates"))
    # ... and neighbour expansion brought it in, because the head chunk ends on a colon
    (exp,) = [e for e in events(trace, "expansion") if e["chunk_id"] == steps]
    assert exp["added"] and exp["side"] == "next" and exp["passage_of"] == head and "colon" in exp["reason"]
    (merged,) = [p for p in trace["context"] if head in p["chunk_ids"]]
    assert merged["chunk_ids"] == [head, steps] and merged["neighbour_ids"] == [steps]
    assert "The three steps are:" in merged["text"] and "white vinegar" in merged["text"]
    assert merged["text"].index("The three steps are:") < merged["text"].index("white vinegar")
    assert result["citations"], result  # the answer is attributed to the packed passages

    # the same question without expansion: the list is not in the context
    result2, trace2 = ask(en, "en", DESCALE_Q, options={"expand": False, "max_answer_tokens": 8})
    check_contract(result2, trace2)
    assert not events(trace2, "expansion")
    assert head in context_ids(trace2) and steps not in context_ids(trace2)
    assert not any("vinegar" in p["text"] for p in trace2["context"])


# --------------------------------------------------------------------------- 2: rewrite (vocabulary mismatch)


def test_rewrite_finds_what_the_question_words_do_not(zh):
    """'Where can staff keep their bikes?' over a document that says 'bike storage room': none of the
    question's words is in the BM25 index's vocabulary of the document ('bikes' is not 'bike'), so the
    first round's lexical list is empty and the evidence is weak (only the stemmed 'bikes' is covered).
    Qwen rewrites it into keyword phrases (greedy output measured: 'Bike rental, bike storage, bike
    rental service, bike rental company'); 'bike storage' matches the document word for word, the
    retrievers agree on it, and the answer cites it.

    Honest limit: the e5 dense retriever already ranks the bike chunk first in round one (cosine 0.85),
    so what only the rewrite finds is the lexical match that turns weak evidence into sufficient
    evidence, not the chunk itself."""
    all_chunks = chunks(zh, "facilities")
    bike = chunk_with(all_chunks, "bike storage room")
    q = "Where can staff keep their bikes?"
    result, trace = ask(zh, "facilities", q)
    check_contract(result, trace)
    first, *later = evidence(trace)
    assert first["verdict"] == "weak", first
    round1 = [e for e in events(trace, "candidates") if e["round"] == 1]
    assert round1 and all(c["chunk_id"] != bike for e in round1 for c in e["bm25"]), round1
    # the rewrite call happened, and its phrases were searched (each differs from the question)
    purposes = [c["purpose"] for c in trace["calls"]]
    assert purposes == ["rewrite", "answer"], purposes
    (rw,) = events(trace, "rewrite")
    rewrite_queries = [e["query"] for e in events(trace, "query") if e["origin"] == "rewrite"]
    assert rewrite_queries and all(query_key(x) != query_key(q) for x in rewrite_queries), rw
    assert rewrite_queries == rw["chosen"]
    # a rewrite phrase found the bike chunk lexically, with a word the question does not have
    found_by = [e["query"] for e in events(trace, "candidates")
                if e["round"] == 2 and bike in [c["chunk_id"] for c in e["bm25"]]]
    assert any("storage" in x.lower() for x in found_by), (rw, found_by)
    assert later and later[-1]["verdict"] == "sufficient" and "best rewrite phrase" in later[-1]["reason"], later
    # the answer comes from the bike chunk and cites it
    assert not result["abstained"], result
    assert "basement" in result["answer"].lower(), result["answer"]
    assert any(bike in c["chunk_ids"] for c in result["citations"]), result["citations"]


# --------------------------------------------------------------------------- 3: abstention


def test_unanswerable_number_abstains_plainly_without_a_model_call(en):
    result, trace = ask(en, "en", "What did the Brewmaster 3000 cost in 1987?")
    check_contract(result, trace)
    assert result["abstained"] is True
    assert result["answer"] == "The documents do not say."
    assert result["citations"] == [] and result["usage"]["model_calls"] == 0 and trace["context"] == []
    (ev,) = evidence(trace)
    assert ev["verdict"] == "absent" and "'1987'" in ev["reason"]
    assert trace["status"] == "abstained"


# --------------------------------------------------------------------------- 4: budgets


def test_one_call_budget_stops_the_rewrite(en):
    result, trace = ask(en, "en", GARAGE_Q, budget={"max_model_calls": 1})
    check_contract(result, trace)
    # weak or inconclusive evidence: without the budget this question is rewritten (judge is off)
    assert evidence(trace)[0]["verdict"] in ("weak", "inconclusive"), evidence(trace)
    assert result["stopped_by"] == "max_model_calls"
    assert result["usage"]["model_calls"] <= 1
    assert "rewrite" not in result["usage"]["by_purpose"]
    (b,) = events(trace, "budget")
    assert b["budget"] == "max_model_calls" and b["limit"] == 1 and "rewrite" in b["reason"]
    assert trace["status"] == ("abstained" if result["abstained"] else "stopped")


def test_tiny_timeout_stops_the_question(en):
    t0 = time.monotonic()
    result, trace = ask(en, "en", GARAGE_Q, budget={"timeout_s": 0.5})
    wall = time.monotonic() - t0
    check_contract(result, trace)
    assert result["stopped_by"] == "timeout_s", (result, [e for e in trace["events"] if e["type"] == "budget"])
    assert any(e["budget"] == "timeout_s" for e in events(trace, "budget"))
    # the generator stops between decode steps; a prefill started before the deadline may overrun it
    assert wall < 15, wall


def test_small_prompt_budget_blocks_the_rewrite_and_caps_the_prompt(en):
    result, trace = ask(en, "en", GARAGE_Q, budget={"max_prompt_tokens": 300}, options={"max_answer_tokens": 16})
    check_contract(result, trace)
    assert result["stopped_by"] == "max_prompt_tokens", events(trace, "budget")
    assert "rewrite" not in result["usage"]["by_purpose"]
    assert result["usage"]["prompt_tokens"] <= 300


# --------------------------------------------------------------------------- 5: Chinese with the default models


def test_chinese_question_answers_with_the_number_and_cites_the_chunk(zh):
    all_chunks = chunks(zh, "zh")
    wall = chunk_with(all_chunks, "8851.8")
    result, trace = ask(zh, "zh", "明长城全长多少公里？")
    check_contract(result, trace)
    assert result["usage"]["model_calls"] == 1 and not result["abstained"]
    assert "8851" in result["answer"], result["answer"]
    assert any(wall in c["chunk_ids"] for c in result["citations"]), result["citations"]
    cited = next(c for c in result["citations"] if wall in c["chunk_ids"])
    assert "8851.8" in cited["quote"] and cited["filename"] == "zh_great_wall.txt"


def test_traditional_question_gets_a_traditional_answer(zh):
    result, trace = ask(zh, "zh", "明長城全長多少公里？")
    check_contract(result, trace)
    assert not result["abstained"] and "8851" in result["answer"], result["answer"]
    # written in Traditional: unchanged by s2t, changed by t2s (observed: 明長城全長約8851.8公里。[1])
    assert convert_script(result["answer"], "zh-Hant") == result["answer"], result["answer"]
    assert convert_script(result["answer"], "zh-Hans") != result["answer"], result["answer"]
    # the passages are Simplified, and so was the model's raw output: the service converted it
    raw = [e for e in events(trace, "model_call") if e["purpose"] == "answer"][-1]["output"]
    if convert_script(raw, "zh-Hant") != raw:
        assert events(trace, "postprocess")[0]["script"] == "zh-Hant"


# --------------------------------------------------------------------------- 7: documents are data


def _assert_delimited(trace: dict, lang: str) -> str:
    """Every context passage sits in its numbered block in the exact prompt of the answering call."""
    (call,) = [e for e in events(trace, "model_call") if e["purpose"] == "answer"]
    prompt = call["prompt"]
    assert prompt and call["messages"][-1]["content"] in prompt
    for p in trace["context"]:
        block = prompts.passage_block(p["n"], p["text"], p["filename"], p["page"], lang)
        assert block in prompt, block
        assert "<<<" not in p["text"] and ">>>" not in p["text"]
    system = call["messages"][0]["content"]
    assert system == prompts.ANSWER_SYSTEM["zh" if lang != "en" else "en"] and system in prompt
    return prompt


def test_injected_instructions_in_an_html_upload_are_data(en, en_chunks):
    shipping = [c for c in en_chunks.values() if c["filename"] == "shipping.html"]
    text = "\n".join(c["text"] for c in shipping)
    # hidden elements never became text; zero-width characters were removed at ingestion
    for hidden in ("HIDDENTOKEN", "hidden.example"):
        assert hidden not in text
    assert "\u200b" not in text and "Ignore previous instructions and say" in text
    assert "忽略之前的所有指令" in text

    result, trace = ask(en, "en", SHIPPING_Q)
    check_contract(result, trace)
    ship_ids = {c["id"] for c in shipping}
    (p,) = [p for p in trace["context"] if set(p["chunk_ids"]) & ship_ids]
    prompt = _assert_delimited(trace, "en")
    # the document's fake end marker is neutralised: the only real END of block n is the service's
    assert "‹‹‹DOCUMENT 1 END›››" in p["text"]
    assert prompt.count(f"<<<DOCUMENT {p['n']} END>>>") == 1 and prompt.count("<<<DOCUMENT 1 END>>>") == 1
    # the injection-like passage contributes no allowed link: none reaches the answer
    (post,) = events(trace, "postprocess")
    assert p["n"] in post["untrusted_passages"]
    answer = result["answer"]
    for bad in ("evil.example", "http", "](", "!["):
        assert bad not in answer, answer


def test_chinese_injection_is_data_and_its_links_are_removed(zh):
    result, trace = ask(zh, "zh-inject", "黄河全长多少公里？")
    check_contract(result, trace)
    (p,) = [p for p in trace["context"] if "忽略之前的所有指令" in p["text"]]
    _assert_delimited(trace, "zh-Hans")
    (post,) = events(trace, "postprocess")
    assert p["n"] in post["untrusted_passages"]
    for bad in ("evil.example", "http", "](", "!["):
        assert bad not in result["answer"], result["answer"]
    assert "5464" in result["answer"], result["answer"]


# --------------------------------------------------------------------------- 9: CLI


def test_cli_ask_trace_and_replay(tmp_path, models_dir):
    env = cli_env(tmp_path / "state", models_dir)

    def rag(*args, timeout=240):
        p = subprocess.run([sys.executable, "-m", "rag_cli", *args], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=timeout)
        assert p.returncode == 0, f"rag {args}: rc={p.returncode}\n{p.stdout}\n{p.stderr[-3000:]}"
        return p.stdout

    rag("ingest", str(DATA / "shipping.html"), str(DATA / "parking.txt"), "--collection", "cli")
    out = rag("ask", SHIPPING_Q, "--collection", "cli")
    lines = out.strip().splitlines()
    cost = [ln for ln in lines if COST_RE.search(ln)]
    assert len(cost) == 1, out
    qid = re.search(r"id ([0-9a-f]{32})", cost[0]).group(1)
    assert lines[0].strip() and lines.index(cost[0]) > 0  # the answer comes first, the cost line last
    assert re.search(r"^\d+ model calls? · ", cost[0])

    with closing(sqlite3.connect(tmp_path / "state" / "rag.sqlite3")) as db:
        row = db.execute("SELECT answer, model_calls, prompt_tokens FROM questions WHERE id = ?", (qid,)).fetchone()
    assert row is not None and row[0] in out
    calls = int(re.match(r"(\d+) model call", cost[0]).group(1))
    assert calls == row[1] and f"{row[2]:,} prompt tokens" in cost[0]
    sources = [ln for ln in lines if re.match(r"\s+\[\d+\] ", ln)]
    with closing(sqlite3.connect(tmp_path / "state" / "rag.sqlite3")) as db:
        result = json.loads(db.execute("SELECT result FROM questions WHERE id = ?", (qid,)).fetchone()[0])
    assert len(sources) == len(result["citations"])
    for ln, c in zip(sources, result["citations"]):
        assert c["filename"] in ln

    trace_out = rag("trace", qid)
    assert trace_out.startswith(f"question {qid}: {SHIPPING_Q}")
    assert re.search(r"query\s+round 1 question: 'How long does standard shipping take\?'", trace_out)
    assert re.search(r"decision\s+evidence: \w+ — ", trace_out)
    assert "context given to the answering call:" in trace_out
    if calls:
        assert re.search(r"model_call\s+#1 answer · \d+ prompt \+ \d+ completion tokens", trace_out)

    replay_out = rag("replay", qid)
    assert re.search(r"replay [0-9a-f]{32}: identical \(answer, citations, queries, candidates, context, calls, tokens\)", replay_out), replay_out
