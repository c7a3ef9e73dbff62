"""Replaying a recorded question and comparing it with its recording: what a user needs to trust a trace.

The comparison is structured (one `Change` per aspect, before and after), so the CLI, the HTTP API
and the console show the same thing; `Replay.lines()` is its one-line-per-difference rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from rag.ask import AskOptions, Thresholds
from rag.ask.events import Fused, Query, matches
from rag.ask.condense import History
from rag.service.answering import AskRequest, QuestionService
from rag.settings import Settings

# What a replay compares, in the order a reader checks it: the outcome, then how it was reached, then its cost.
ASPECTS = ("answer", "abstained", "stopped_by", "citations", "queries", "candidates", "context",
           "model_calls", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class Change:
    aspect: str  # one of ASPECTS
    before: Any
    after: Any

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class Replay:
    id: str  # the new question's id
    replayed_from: str
    changes: list[Change]  # every aspect, changed or not, in ASPECTS order
    note: str | None  # set when the configured models or options differ from the recorded ones

    @property
    def identical(self) -> bool:
        return not any(c.changed for c in self.changes)

    @property
    def model_calls(self) -> int:
        """Calls the replay itself made (charged to the caller's quota)."""
        return next((c.after or 0) for c in self.changes if c.aspect == "model_calls")

    def lines(self) -> list[str]:
        return [f"{c.aspect}: {c.before!r} -> {c.after!r}" for c in self.changes if c.changed]


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
    recorded = (old.get("settings") or {}).get("history")  # a conversation's turn: asked again with its history
    history = History.from_dict(recorded) if recorded else None
    new = questions.ask(AskRequest(old["collection"], old["question"], old["budget"], options, history)).to_dict()
    note = "; ".join(notes) or None
    return Replay(new["id"], question_id, compare(before, old, new, questions.trace(new["id"])), note)


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


def _aspects(result: dict, trace: dict) -> dict[str, Any]:
    """The comparable view of one run. Candidates are each round's fused ranking (chunk ids);
    context is the chunk ids of each passage given to the answering call."""
    events = trace.get("events", [])
    usage = result.get("usage", {})
    return {
        "answer": result.get("answer"),
        "abstained": result.get("abstained"),
        "stopped_by": result.get("stopped_by"),
        "citations": [list(c.get("chunk_ids", [])) for c in result.get("citations", [])],
        "queries": [e["query"] for e in events if matches(e, Query)],
        "candidates": [[c["chunk_id"] for c in e.get("candidates", [])] for e in events if matches(e, Fused)],
        "context": [list(p.get("chunk_ids", [])) for p in trace.get("context", [])],
        "model_calls": usage.get("model_calls"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
    }


def compare(old_result: dict, old_trace: dict, new_result: dict, new_trace: dict) -> list[Change]:
    a, b = _aspects(old_result, old_trace), _aspects(new_result, new_trace)
    return [Change(k, a[k], b[k]) for k in ASPECTS]
