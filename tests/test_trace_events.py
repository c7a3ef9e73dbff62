"""The trace's JSON, event by event, against a recording: a change to how events are built must not
change what a stored trace, the console or a replay reads.

Each scenario runs `rag.ask.ask` with the deterministic fakes and a fake clock (so `t_ms`, `wall_ms` and
`wall_seconds` are exact); together they reach every event kind, every decision, every budget stop and
the two ways a call fails part-way. `RAG_UPDATE_TRACE_GOLDEN=1` rewrites the recording: do that only
for a change meant to alter the trace, and say so in its commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

from rag.ask import AskOptions, Budget, ask, prompts
from rag.ask.condense import History, Turn
from rag.ask.ports import GenerationInterrupted
from tests.fakes import FakeClock, FakeCompletion, FakeDoc, FakeLLM, FakeRetriever, corpus

GOLDEN = Path(__file__).parent / "data" / "trace" / "golden.json"
UPDATE = os.environ.get("RAG_UPDATE_TRACE_GOLDEN") == "1"

EN_SEND_BACK = "How long do customers have to send back items?"
WALL_LENGTH = "明长城全长多少公里？"


def _inconclusive(**kw) -> AskOptions:
    """Dense never "ok", coverage never "high": agreement alone leaves the signals inconclusive."""
    th = {"dense_min": 0.99, "coverage_high": 1.01, **kw.pop("thresholds", {})}
    return AskOptions(judge=True, thresholds=th, **kw)


class _SkippingRetriever(FakeRetriever):
    """BM25 sits out every query with a digit in it (as the store does for a query of stop words)."""

    def lexical_skipped(self, query: str) -> str | None:
        return "no lexical term in the query" if any(ch.isdigit() for ch in query) else None


_WALL_TURNS = History((Turn("明长城全长多少公里？", "明长城全长8851.8公里。"),), max_tokens=256)


class _ServerGone(GenerationInterrupted):
    code = "generator_unavailable"


class _DyingServer(FakeLLM):
    """A server runtime that goes away after its first streamed pieces: the call as far as it went."""

    server = "http://127.0.0.1:9/v1"

    def generate(self, messages, *, max_new_tokens, stop=None, on_token=None, deadline=None):
        c = super().generate(messages, max_new_tokens=max_new_tokens, stop=stop, deadline=deadline)
        if on_token is not None:
            on_token(c.text[:5])
        partial = FakeCompletion(c.text[:5], c.prompt_tokens, 2, 0, 12.5, 3.0, c.model_id, "eos", runtime="fake",
                                 server=self.server)
        raise _ServerGone("the model server went away", partial=partial)


class _StreamBreaks(FakeLLM):
    """A server runtime whose stream raises after three pieces (a generator error mid-answer, or a server
    gone that cannot tell what the call cost): the loop records the call from the streamed text."""

    server = "http://127.0.0.1:9/v1"
    error: Callable[[], BaseException] = staticmethod(lambda: RuntimeError("simulated generator failure"))

    def generate(self, messages, *, max_new_tokens, stop=None, on_token=None, deadline=None):
        seen: list[str] = []

        def relay(piece: str) -> None:
            seen.append(piece)
            on_token(piece)
            if len(seen) == 3:
                if self.clock is not None:
                    self.clock.advance(0.25)
                raise self.error()

        return super().generate(messages, max_new_tokens=max_new_tokens, stop=stop, on_token=relay, deadline=deadline)


class _ServerGoneUncounted(_StreamBreaks):
    error = staticmethod(lambda: _ServerGone("the model server went away mid-stream"))


def _lead_in_echo() -> str:
    """An answer that is only one of the prompt's own instruction lines (a small model's echo)."""
    return next(t for t in prompts.instruction_texts() if t.isascii() and len(t) > 20).strip()


# a window that leaves room for the first install passage but not for its neighbour
_INSTALL_BARE = FakeLLM({}).prompt_tokens(prompts.answer_messages([], "How do I install a package?", "en"))

# name -> (question, make(clock) -> (retriever, llm), budget, options, on_token)
Scenario = tuple[str, Callable[[FakeClock], tuple], Budget, AskOptions, bool]

SCENARIOS: dict[str, Scenario] = {
    "one_call": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM({"answer": "明长城全长8851.8公里[3]。"}, clock=c,
                                                                   seconds={"answer": 2.0})),
                 Budget(), AskOptions(), True),
    "rewrite_keywords": (EN_SEND_BACK, lambda c: (corpus(langs={"en"}, clock=c, search_seconds=0.5), FakeLLM({
        "rewrite": "1. refund policy\n2. return period days\n3. 退货 期限\n4. money back\n5. receipts",
        "answer": "You can return items within 30 days of purchase with a receipt."}, clock=c, seconds={"rewrite": 1.5})),
        Budget(), AskOptions(), False),
    "translate_then_keywords": (EN_SEND_BACK, lambda c: (corpus(clock=c), FakeLLM(
        {"rewrite": ["退货 期限", "refund policy"], "answer": "I am not sure."}, clock=c)),
        Budget(max_model_calls=4, max_rounds=3), AskOptions(), False),
    "never_reissued": (EN_SEND_BACK, lambda c: (corpus(clock=c), FakeLLM({
        "rewrite": ["items send back deadline", f"Items send-back deadline!\n{EN_SEND_BACK}"],
        "answer": "I am not sure."}, clock=c)), Budget(max_model_calls=4, max_rounds=3), AskOptions(), False),
    "expansion_added": ("How do I install a package?", lambda c: (corpus(clock=c), FakeLLM(
        {"answer": "Create a virtual environment, activate it, and run pip install with the package name."}, clock=c)),
        Budget(), AskOptions(max_passages=1, thresholds={"min_passages": 1}), False),
    "expansion_over_budget": ("How do I install a package?", lambda c: (corpus(clock=c), FakeLLM(
        {"answer": "To install a package, follow these steps."}, clock=c)),
        Budget(), AskOptions(max_passages=1, thresholds={"min_passages": 1}, context_window=_INSTALL_BARE + 256 + 30), False),
    "absent_number": ("2031年公司的营收是多少？", lambda c: (corpus(clock=c), FakeLLM({}, clock=c)),
                      Budget(), AskOptions(), False),
    "empty_collection": ("What is the refund policy?", lambda c: (FakeRetriever([], langs={"en"}, clock=c), FakeLLM({}, clock=c)),
                         Budget(), AskOptions(), False),
    "invented_answer": ("Who invented the telephone?", lambda c: (corpus(clock=c), FakeLLM(
        {"rewrite": "telephone inventor", "answer": "Alexander Graham Bell invented the telephone in 1876."}, clock=c)),
        Budget(), AskOptions(), False),
    "unsupported_figure_dropped": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM(
        {"answer": "明长城全长8851.8公里。它每年有1234567名游客。"}, clock=c)), Budget(), AskOptions(), False),
    "model_abstains": ("故宮的屋頂是什麼顏色？", lambda c: (corpus(clock=c), FakeLLM(
        {"answer": "根据资料，文档中没有提到这个问题的答案。"}, clock=c)), Budget(), AskOptions(rewrite=False), False),
    "one_call_budget": (EN_SEND_BACK, lambda c: (corpus(clock=c), FakeLLM({"answer": "Returns are accepted within 30 days."}, clock=c)),
                        Budget(max_model_calls=1), AskOptions(), False),
    "zero_calls_budget": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM({}, clock=c)),
                          Budget(max_model_calls=0), AskOptions(), False),
    "max_rounds": (EN_SEND_BACK, lambda c: (corpus(clock=c), FakeLLM({"answer": "I am not sure."}, clock=c)),
                   Budget(max_rounds=1), AskOptions(), False),
    "rewrite_off": (EN_SEND_BACK, lambda c: (corpus(clock=c), FakeLLM({"answer": "I am not sure."}, clock=c)),
                    Budget(), AskOptions(rewrite=False), False),
    "force_rewrite": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM(
        {"rewrite": "明长城 长度\nGreat Wall length", "answer": "明长城全长8851.8公里。"}, clock=c)),
        Budget(), AskOptions(force_rewrite=True), False),
    "timeout_reserved_for_answer": (EN_SEND_BACK, lambda c: (corpus(clock=c), FakeLLM(
        {"rewrite": ["items send back deadline", "customer item deadline"], "answer": "I am not sure."},
        clock=c, seconds={"rewrite": 40.0, "answer": 1.0})), Budget(max_model_calls=4, max_rounds=3, timeout_s=60), AskOptions(), False),
    "timeout_rewrite_cut": (EN_SEND_BACK, lambda c: (corpus(clock=c), FakeLLM(
        {"rewrite": "refund policy\nreturn period", "answer": "I am not sure."},
        clock=c, seconds={"rewrite": 100.0})), Budget(timeout_s=60), AskOptions(), False),
    "timeout_slow_search": (EN_SEND_BACK, lambda c: (corpus(clock=c, search_seconds=31.0), FakeLLM({"answer": "I am not sure."}, clock=c)),
                            Budget(timeout_s=60), AskOptions(), False),
    "timeout_before_answer": (WALL_LENGTH, lambda c: (corpus(clock=c, search_seconds=61.0), FakeLLM({}, clock=c)),
                              Budget(timeout_s=60), AskOptions(), False),
    "timeout_cuts_answer": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM(
        {"answer": "明长城全长8851.8公里，东起鸭绿江，西至嘉峪关。"}, clock=c, seconds={"answer": 100.0})),
        Budget(timeout_s=60), AskOptions(), True),
    "prompt_tokens_cap": (EN_SEND_BACK, lambda c: (corpus(clock=c), FakeLLM({"answer": "I am not sure."}, clock=c)),
                          Budget(max_prompt_tokens=250), AskOptions(), False),
    "prompt_tokens_too_few": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM({}, clock=c)),
                              Budget(max_prompt_tokens=20), AskOptions(), False),
    "injection_neutralised": ("How long does shipping take?", lambda c: (corpus(clock=c), FakeLLM({"answer": (
        "Shipping takes 5 business days [1]. Visit http://evil.example/steal now. ![x](http://evil.example/x.png) "
        "See [here](http://evil.example/t).")}, clock=c)), Budget(), AskOptions(), False),
    "traditional_script": ("故宮在哪裡？", lambda c: (corpus(clock=c), FakeLLM({"answer": "故宫位于北京中轴线的中心。"}, clock=c)),
                           Budget(), AskOptions(), False),
    "figure_completed": ("故宮始建於哪一年？", lambda c: (corpus(clock=c), FakeLLM({"answer": "故宮始建於1406。"}, clock=c)),
                         Budget(), AskOptions(rewrite=False), False),
    "caption_and_instruction_only": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM(
        {"answer": "表 1\n" + _lead_in_echo()}, clock=c)), Budget(), AskOptions(), False),
    "cross_language_number": ("How long is the Ming Great Wall?", lambda c: (corpus(clock=c), FakeLLM(
        {"rewrite": "明长城 全长", "answer": "The Ming Great Wall is 8851.8 km long."}, clock=c)), Budget(), AskOptions(), False),
    "cross_language_unverified": ("How long is the Ming Great Wall?", lambda c: (corpus(clock=c), FakeLLM(
        {"rewrite": "明长城 全长", "answer": "It runs from the Yalu River to Jiayu Pass."}, clock=c)), Budget(), AskOptions(), False),
    "cross_language_unsupported_figure": ("How long is Zhang's wall?", lambda c: (corpus(clock=c), FakeLLM(
        {"rewrite": "张三 全长 公里", "answer": "It is 8851.8 km long."}, clock=c)), Budget(), AskOptions(), False),
    "unrelated_cross_language": ("How many visitors does Zhongnanhai Hall get?", lambda c: (corpus(clock=c), FakeLLM(
        {"rewrite": "中南海 游客", "answer": "It gets 1406 visitors."}, clock=c)), Budget(), AskOptions(), False),
    "restates_question": ("How do I upgrade a Python package with pip?", lambda c: (corpus(langs={"en"}, clock=c), FakeLLM(
        {"answer": "Upgrade a Python package with pip."}, clock=c)), Budget(), AskOptions(), False),
    "short_answer_unverified": ("明长城全长是8851.8公里吗？", lambda c: (corpus(clock=c), FakeLLM({"answer": "是的。"}, clock=c)),
                                Budget(), AskOptions(), False),
    "judge_yes": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM({"judge": "能", "answer": "明长城全长8851.8公里。"}, clock=c)),
                  Budget(), _inconclusive(), False),
    "judge_no": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM(
        {"judge": "不能", "rewrite": "明长城 长度", "answer": "明长城全长8851.8公里。"}, clock=c)), Budget(), _inconclusive(), False),
    "judge_unparsed": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM(
        {"judge": "maybe, who knows", "rewrite": "明长城 长度", "answer": "明长城全长8851.8公里。"}, clock=c)),
        Budget(), _inconclusive(), False),
    "judge_skipped_for_calls": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM({"answer": "明长城全长8851.8公里。"}, clock=c)),
                                Budget(max_model_calls=1), _inconclusive(), False),
    "judge_prompt_too_big": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM({"answer": "明长城全长8851.8公里。"}, clock=c)),
                             Budget(max_prompt_tokens=150), _inconclusive(), False),
    "judge_incomplete": ("Which steps install a package?", lambda c: (corpus(clock=c), FakeLLM(
        {"judge": "INCOMPLETE", "answer": "Create a virtual environment and run pip install."}, clock=c)),
        Budget(), _inconclusive(max_passages=1, expand=True, thresholds={"min_passages": 1}), False),
    "unrelated_after_rewrite": ("Who invented the telephone?", lambda c: (corpus(langs={"en"}, clock=c), FakeLLM(
        {"rewrite": "telephone inventor"}, clock=c)), Budget(), AskOptions(), False),
    "lexical_skipped": ("What happened in 1406?", lambda c: (_SkippingRetriever(
        [FakeDoc(1, "palace.txt", "The palace was begun in 1406. It took fourteen years.", [(0, 30), (30, 53)])],
        langs={"en"}, clock=c), FakeLLM({"rewrite": "palace begun", "answer": "The palace was begun in 1406."}, clock=c)),
        Budget(), AskOptions(), False),
    "server_gone_mid_answer": (WALL_LENGTH, lambda c: (corpus(clock=c), _DyingServer(
        {"answer": "明长城全长8851.8公里。"}, clock=c, seconds={"answer": 3.0})), Budget(), AskOptions(), True),
    "stream_breaks_mid_answer": (WALL_LENGTH, lambda c: (corpus(clock=c), _StreamBreaks(
        {"answer": "明长城全长8851.8公里，东起鸭绿江，西至嘉峪关。"}, clock=c)), Budget(), AskOptions(), True),
    "server_gone_uncounted": (WALL_LENGTH, lambda c: (corpus(clock=c), _ServerGoneUncounted(
        {"answer": "明长城全长8851.8公里，东起鸭绿江，西至嘉峪关。"}, clock=c)), Budget(), AskOptions(), True),
    # Conversations (rag.ask.condense): a follow-up condensed, one that stands alone, an unusable
    # condensed question, and a budget that cannot pay for the condense call.
    "follow_up_condensed": ("它东起哪里？", lambda c: (corpus(clock=c), FakeLLM(
        {"condense": "独立问题：明长城东起哪里？", "answer": "明长城东起鸭绿江。"}, clock=c)), Budget(), AskOptions(), False, _WALL_TURNS),
    "follow_up_standalone": ("故宮始建於哪一年？", lambda c: (corpus(clock=c), FakeLLM(
        {"answer": "故宮始建於1406年。"}, clock=c)), Budget(), AskOptions(rewrite=False), False, _WALL_TURNS),
    "follow_up_condense_unusable": ("它东起哪里？", lambda c: (corpus(clock=c), FakeLLM(
        {"condense": "Where does it begin?", "answer": "明长城东起鸭绿江。"}, clock=c)), Budget(), AskOptions(), False, _WALL_TURNS),
    "follow_up_substituted": ("Ming 长城呢？", lambda c: (corpus(clock=c), FakeLLM(
        {"answer": "明长城全长8851.8公里。"}, clock=c)), Budget(), AskOptions(), False,
        History((Turn("Great Wall 全长多少公里？", "明长城全长8851.8公里。"),), max_tokens=256)),
    "follow_up_condense_blocked": ("它东起哪里？", lambda c: (corpus(clock=c), FakeLLM(
        {"answer": "明长城东起鸭绿江。"}, clock=c)), Budget(max_model_calls=1), AskOptions(), False, _WALL_TURNS),
    "question_too_long": (WALL_LENGTH, lambda c: (corpus(clock=c), FakeLLM({}, clock=c, context_length=100)),
                          Budget(), AskOptions(), False),
}


def run_scenario(name: str) -> dict:
    """The scenario's events as streamed to `on_event`, and its result (or the error it raised)."""
    question, make, budget, options, stream, *history = SCENARIOS[name]
    clock = FakeClock()
    retriever, llm = make(clock)
    events: list[dict] = []
    tokens: list[str] = []
    try:
        res = ask(question, retriever, llm, budget, options, on_event=events.append,
                  on_token=tokens.append if stream else None, clock=clock, history=history[0] if history else None)
    except Exception as exc:  # noqa: BLE001 - a failed call is a scenario: its events are what matters
        return {"events": events, "raised": f"{type(exc).__name__}: {exc}", "tokens": tokens}
    out = res.to_dict()
    assert out["trace"]["events"] == events
    out["trace"] = {k: v for k, v in out["trace"].items() if k != "events"}
    return {"events": events, "result": out, "tokens": tokens}


def _canonical(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1, allow_nan=False)


@pytest.fixture(scope="module")
def golden() -> dict:
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(_canonical({n: run_scenario(n) for n in SCENARIOS}) + "\n", encoding="utf-8")
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_trace_json_is_unchanged(name, golden):
    """Same events, same keys in the same order, same values: compared as JSON text, not as dicts."""
    assert name in golden, f"no recording for {name}: run with RAG_UPDATE_TRACE_GOLDEN=1"
    got = run_scenario(name)
    assert _canonical(got) == _canonical(golden[name])


def test_recording_has_no_stale_scenarios(golden):
    assert set(golden) == set(SCENARIOS)


def test_the_recording_reaches_every_kind_decision_and_budget(golden):
    """What the event types allow is what the loop does: every kind, every step's every verdict, every
    budget, query origin and rewrite mode is in some scenario (a value no code path emits would be a
    type that lies)."""
    from rag.ask.events import KINDS, VERDICTS, BudgetStop, Query, Rewrite, allowed

    events = [e for s in golden.values() for e in s["events"]]
    assert {e["type"] for e in events} == KINDS
    assert {(e["step"], e["verdict"]) for e in events if e["type"] == "decision"} == {
        (step, v) for step, verdicts in VERDICTS.items() for v in verdicts}
    assert {e["budget"] for e in events if e["type"] == BudgetStop.kind} == set(allowed(BudgetStop, "budget"))
    assert {e["origin"] for e in events if e["type"] == Query.kind} == set(allowed(Query, "origin"))
    assert {e["mode"] for e in events if e["type"] == Rewrite.kind} == set(allowed(Rewrite, "mode"))


def test_every_recorded_event_is_what_its_class_says(golden):
    """Each recorded event has its class's keys in its class's order, required ones present, and every
    `Literal` field holds one of its values."""
    from rag.ask.events import DECISIONS, EVENTS, Decision, allowed, wire_fields

    by_tag = {(c.kind, getattr(c, "step", None)): c for c in EVENTS}
    for scenario in golden.values():
        for e in scenario["events"]:
            cls = by_tag[(e["type"], e.get("step") if e["type"] == Decision.kind else None)]
            names = [n for n, _, _ in wire_fields(cls)]
            keys = [k for k in e if k not in ("seq", "t_ms")]
            assert keys == [n for n in names if n in e], (cls.__name__, keys)
            assert {n for n, _, required in wire_fields(cls) if required} <= set(e), (cls.__name__, keys)
            for n in keys:
                choices = allowed(cls, n)
                assert choices is None or e[n] is None or e[n] in choices, (cls.__name__, n, e[n])
    assert DECISIONS and all(issubclass(c, Decision) for c in DECISIONS)


def test_matches_reads_recorded_events_by_class_and_refuses_what_cannot_be():
    from rag.ask.events import Decision, EvidenceDecision, ModelCallEvent, RewriteDecision, matches

    evidence = {"seq": 5, "t_ms": 0.0, "type": "decision", "step": "evidence", "verdict": "weak"}
    assert matches(evidence, Decision) and matches(evidence, EvidenceDecision, verdict="weak")
    assert not matches(evidence, RewriteDecision) and not matches(evidence, EvidenceDecision, verdict="sufficient")
    call = {"type": "model_call", "purpose": "answer", "output": "x"}
    assert matches(call, ModelCallEvent, purpose="answer")  # a field of the flattened call
    with pytest.raises(ValueError, match="one of"):
        matches(evidence, RewriteDecision, verdict="rewrote")
    with pytest.raises(ValueError, match="no field"):
        matches(evidence, EvidenceDecision, verdcit="weak")
