"""Human-readable renderings of answers, costs and traces for the CLI."""

from __future__ import annotations

import json

from rag.ask.events import Attribution, Citations, Context, Decision, Fused, ModelCallEvent, Packing, Query, Selection

# Events whose whole body `--full` shows (the rest are cut at 160 characters either way).
_LONG = frozenset(c.kind for c in (Fused, Packing, Selection, Attribution, Context, Citations))


def cost_line(usage: dict) -> str:
    calls = usage.get("model_calls", 0)
    seconds = usage.get("wall_seconds", usage.get("seconds")) or 0.0
    return (f"{calls} model call{'s' if calls != 1 else ''} · {usage.get('prompt_tokens', 0):,} prompt tokens · "
            f"{usage.get('completion_tokens', 0):,} completion tokens · {seconds:.1f} s")


INCOMPLETE = {
    "timeout_s": "cut at the question's deadline: only its whole sentences that the passages support are kept",
    "max_answer_tokens": "cut at the answer's token limit: its unfinished last sentence is removed",
}


def incomplete_line(result: dict) -> str | None:
    """A warning for an answer whose model call was cut (`complete` false), else None."""
    if result.get("complete", True):
        return None
    return "incomplete answer: " + INCOMPLETE.get(result.get("incomplete_reason") or "", "the model call was cut")


def support_lines(result: dict) -> list[str]:
    """What a reader must know beside the answer: not verified, or sentences removed as unsupported."""
    out = []
    if result.get("verified") is False:
        why = (result.get("support") or {}).get("why_unverified") or "no check could tie it to the passages"
        out.append(f"not verified: answered without citations ({why})")
    if result.get("dropped_sentences"):
        n = result["dropped_sentences"]
        out.append(f"{n} sentence{'s' if n != 1 else ''} of the model's answer removed: not supported by the passages")
    return out


def sources(result: dict) -> list[str]:
    lines = []
    for c in result.get("citations", []):
        where = f", page {c['page']}" if c.get("page") else ""
        quote = (c.get("quote") or "").replace("\n", " ")
        lines.append(f"[{c['n']}] {c['filename']}{where} (chunks {', '.join(map(str, c['chunk_ids']))}): {quote[:120]}")
    return lines


def _short(value, width: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= width else text[: width - 1] + "…"


def render_trace(trace: dict, *, full: bool = False) -> str:
    """One line per event; prompts and outputs in full only with `full`."""
    out = [f"question {trace['id']}: {trace['question']}  [{trace['status']}]",
           f"budget {json.dumps(trace.get('budget'))} · models {json.dumps(trace.get('models'))}"]
    for e in trace.get("events", []):
        kind = e.get("type")
        head = f"{e.get('seq', ''):>3} {e.get('t_ms', 0):>9.0f} ms  {kind:<18}"
        if kind == Query.kind:
            body = f"round {e.get('round')} {e.get('origin')}: {e.get('query')!r}"
        elif kind == Decision.kind:
            body = f"{e.get('step')}: {e.get('verdict')} — {e.get('reason')}"
        elif kind == ModelCallEvent.kind:
            body = (f"#{e.get('n')} {e.get('purpose')} · {e.get('prompt_tokens')} prompt + {e.get('completion_tokens')} "
                    f"completion tokens · {e.get('wall_ms', 0):.0f} ms · output {_short(e.get('output', ''), 100)}")
            if full:
                body += "\n      prompt:\n" + "\n".join("      | " + ln for ln in str(e.get("prompt", "")).splitlines())
                body += "\n      output:\n" + "\n".join("      | " + ln for ln in str(e.get("output", "")).splitlines())
        elif kind in _LONG:
            rest = {k: v for k, v in e.items() if k not in ("seq", "t_ms", "type")}
            body = _short(rest, 10_000 if full else 160)
        else:
            rest = {k: v for k, v in e.items() if k not in ("seq", "t_ms", "type")}
            body = _short(rest)
        out.append(head + body)
    ctx = trace.get("context", [])
    out.append(f"context given to the answering call: {len(ctx)} passage(s)")
    for i, p in enumerate(ctx, 1):
        out.append(f"  [{i}] chunks {p.get('chunk_ids')}: {_short(p.get('text', ''), 10_000 if full else 120)}")
    return "\n".join(out)
