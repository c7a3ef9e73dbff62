"""Replaying a recorded question and comparing it with its recording: what a user needs to trust a trace."""

from __future__ import annotations

from dataclasses import dataclass, fields

from rag.ask import AskOptions, Thresholds
from rag.service.answering import AskRequest, QuestionService
from rag.settings import Settings


@dataclass(frozen=True)
class Replay:
    id: str  # the new question's id
    diffs: list[str]  # empty when answer, citations, queries, context and cost are identical
    note: str | None  # set when the configured models differ from the recorded ones


def replay(questions: QuestionService, settings: Settings, question_id: str) -> Replay:
    """Re-runs a question with its recorded collection, budget and options, and compares."""
    old = questions.trace(question_id)
    before = questions.get(question_id)
    notes = []
    if old["models"].get("generator") != settings.generator or old["models"].get("embedder") != settings.embedder:
        notes.append(f"recorded with {old['models']}, replaying with generator={settings.generator} "
                     f"embedder={settings.embedder}")
    options, dropped = known_options(old["options"])
    if dropped:
        notes.append(f"recorded options this version no longer has: {', '.join(dropped)}")
    new = questions.ask(AskRequest(old["collection"], old["question"], old["budget"], options))
    note = "; ".join(notes) or None
    return Replay(new["id"], compare(before, old, new, questions.trace(new["id"])), note)


def known_options(recorded: dict) -> tuple[dict, list[str]]:
    """The recorded options this version understands, and the names of those it does not (an
    option removed since the question was asked would otherwise make the replay a 422)."""
    names = {f.name for f in fields(AskOptions)}
    th_names = {f.name for f in fields(Thresholds)}
    options = {k: v for k, v in recorded.items() if k in names}
    dropped = sorted(k for k in recorded if k not in names)
    if isinstance(options.get("thresholds"), dict):
        th = options["thresholds"]
        options["thresholds"] = {k: v for k, v in th.items() if k in th_names}
        dropped += sorted(f"thresholds.{k}" for k in th if k not in th_names)
    return options, dropped


def _queries(trace: dict) -> list[str]:
    return [e["query"] for e in trace.get("events", []) if e.get("type") == "query"]


def _context(trace: dict) -> list[list[int]]:
    return [list(p.get("chunk_ids", [])) for p in trace.get("context", [])]


def compare(old_result: dict, old_trace: dict, new_result: dict, new_trace: dict) -> list[str]:
    """Differences in answer, abstention, stop reason, citations, queries, context and cost."""
    diffs = []
    for key in ("answer", "abstained", "stopped_by"):
        if old_result.get(key) != new_result.get(key):
            diffs.append(f"{key}: {old_result.get(key)!r} -> {new_result.get(key)!r}")
    old_c = [c["chunk_ids"] for c in old_result.get("citations", [])]
    new_c = [c["chunk_ids"] for c in new_result.get("citations", [])]
    if old_c != new_c:
        diffs.append(f"citations: {old_c} -> {new_c}")
    if _queries(old_trace) != _queries(new_trace):
        diffs.append(f"queries: {_queries(old_trace)} -> {_queries(new_trace)}")
    if _context(old_trace) != _context(new_trace):
        diffs.append(f"context chunks: {_context(old_trace)} -> {_context(new_trace)}")
    for key in ("model_calls", "prompt_tokens", "completion_tokens"):
        a, b = old_result.get("usage", {}).get(key), new_result.get("usage", {}).get(key)
        if a != b:
            diffs.append(f"{key}: {a} -> {b}")
    return diffs
