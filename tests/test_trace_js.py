"""The console reads trace events by their `type` (and a decision's `step`/`verdict`) as strings, in
browser JavaScript that cannot import `rag.ask.events`; this test reads the JS and the CSS instead, so
a renamed kind or verdict fails here rather than as a silently empty timeline."""

from __future__ import annotations

import re
from pathlib import Path

from rag.ask.events import KINDS, STEPS, VERDICTS

STATIC = Path(__file__).resolve().parent.parent / "api" / "console" / "static"
JS = STATIC / "js"
ALL_VERDICTS = {v for verdicts in VERDICTS.values() for v in verdicts}

_COMPARED = re.compile(r"""\b\w+\.(type|step|verdict)\s*[!=]==?\s*["']([^"']+)["']""")
_SWITCH = re.compile(r"""switch\s*\(\s*\w+\.(type|step|verdict)\s*\)\s*\{""")
_CASE = re.compile(r"""\bcase\s+["']([^"']+)["']\s*:""")


def _block(text: str, open_at: int) -> str:
    """The text of the `{...}` block whose `{` is at `open_at`."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at : i + 1]
    raise AssertionError("unbalanced braces")


def compared(text: str) -> dict[str, set[str]]:
    """Strings the JS compares `x.type`, `x.step` or `x.verdict` with (`===` or a `switch` case)."""
    out: dict[str, set[str]] = {"type": set(), "step": set(), "verdict": set()}
    for field, value in _COMPARED.findall(text):
        out[field].add(value)
    for m in _SWITCH.finditer(text):
        out[m.group(1)] |= set(_CASE.findall(_block(text, m.end() - 1)))
    return out


def test_the_parser_finds_what_it_should():
    js = 'a.find((e) => e.type === "fused"); if (e.step !== "judge") {} switch (e.type) { case "x": { } case "y": }'
    assert compared(js) == {"type": {"fused", "x", "y"}, "step": {"judge"}, "verdict": set()}


def test_trace_js_compares_only_kinds_and_verdicts_that_exist():
    got = compared((JS / "trace.js").read_text(encoding="utf-8"))
    assert got["type"] and got["type"] <= KINDS, got["type"] - KINDS
    assert got["step"] <= STEPS and got["verdict"] <= ALL_VERDICTS, got


def test_every_kind_is_described_in_words_and_nothing_else_is():
    got = compared((JS / "words.js").read_text(encoding="utf-8"))
    # "error" is not a trace event: words.js also describes the stream's failure line.
    assert KINDS <= got["type"], KINDS - got["type"]
    assert got["type"] - KINDS <= {"error"}, got["type"] - KINDS
    assert got["step"] <= STEPS and got["verdict"] <= ALL_VERDICTS, got


def test_css_styles_only_kinds_that_exist():
    styled = set(re.findall(r"\.ev-(\w+)", (STATIC / "app.css").read_text(encoding="utf-8")))
    assert styled <= KINDS, styled - KINDS
