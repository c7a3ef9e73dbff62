"""Checks every asking test applies to its result."""

from __future__ import annotations

import json

from rag.ask import AskResult


def check_result(res: AskResult, llm, retriever, *, window: int | None = None, max_prompt_tokens: int | None = None) -> dict:
    d = res.to_dict()
    json.dumps(d, allow_nan=False)  # stored and replayed: must be plain JSON

    # Ledger: totals are the sums of the recorded calls, and every model call is recorded.
    calls = d["calls"]
    u = d["usage"]
    assert u["model_calls"] == len(calls) == len(llm.calls)
    assert u["prompt_tokens"] == sum(c["prompt_tokens"] for c in calls)
    assert u["completion_tokens"] == sum(c["completion_tokens"] for c in calls)
    assert abs(u["seconds"] - sum(c["wall_ms"] for c in calls) / 1000.0) < 1e-6
    for purpose, b in u["by_purpose"].items():
        mine = [c for c in calls if c["purpose"] == purpose]
        assert b == {"calls": len(mine), "prompt_tokens": sum(c["prompt_tokens"] for c in mine),
                     "completion_tokens": sum(c["completion_tokens"] for c in mine)}
    assert [c["purpose"] for c in calls] == [c["purpose"] for c in llm.calls]
    if max_prompt_tokens is not None:
        assert u["prompt_tokens"] <= max_prompt_tokens

    # Only retrieved (or expanded-neighbour) chunks reach the context; only packed chunks are cited.
    seen = {c.chunk_id for q in retriever.queries for c in retriever._last.get(q, [])} if hasattr(retriever, "_last") else None
    context_ids = {cid for p in d["trace"]["context"] for cid in p["chunk_ids"]}
    for c in d["citations"]:
        assert set(c["chunk_ids"]) <= context_ids, (c, context_ids)
        assert c["quote"]
        p = next(p for p in d["trace"]["context"] if p["n"] == c["passage"])
        assert c["quote"] in p["text"]
    if seen is not None:
        assert context_ids <= seen | set(retriever.fetched)

    # Every answering prompt fits the window; the context is exactly what the answer call saw.
    answer_calls = [c for c in llm.calls if c["purpose"] == "answer"]
    if window is not None:
        for c in answer_calls:
            assert c["prompt_tokens"] + c["max_new_tokens"] <= window
    if answer_calls:
        prompt = answer_calls[-1]["messages"][-1]["content"]
        for p in d["trace"]["context"]:
            assert p["text"] in prompt
    else:
        assert d["trace"]["context"] == []

    # Trace: ordered, starts and ends, settings recorded, prompts and raw outputs recorded per call.
    events = d["trace"]["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "start" and events[-1]["type"] == "done"
    assert d["trace"]["settings"]["budget"] and d["trace"]["settings"]["options"]
    mc = [e for e in events if e["type"] == "model_call"]
    assert len(mc) == len(calls)
    for e, c in zip(mc, llm.calls):
        assert e["messages"] == c["messages"] and isinstance(e["output"], str) and e["prompt"]
    if res.abstained:
        assert res.citations == []
    return d


def events_of(res: AskResult, type: str) -> list[dict]:
    return [e for e in res.trace["events"] if e["type"] == type]
