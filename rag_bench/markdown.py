"""Markdown pieces shared by the bench reports (`rag_bench.qa.report`, `rag_bench.factoid.report`)."""

from __future__ import annotations


def fmt(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
