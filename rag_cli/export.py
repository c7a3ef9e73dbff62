"""`rag questions export`: the ledger's finished questions as JSON Lines, for evaluation sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from rag_cli.shared import data_dir_option, settings_for

cli = typer.Typer(no_args_is_help=True, help="The question ledger: export as evaluation data.")


@cli.command("export")
def export(
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Only this collection."),
    since: Optional[str] = typer.Option(None, help="Only questions asked at or after this UTC time (ISO 8601)."),
    feedback: str = typer.Option("any", help="any, rated (with a rating), up or down (with a rating of that kind)."),
    limit: int = typer.Option(10_000, min=1, max=100_000, help="At most this many questions, oldest first."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """One JSON object per line: question, answer, citations, context, usage and ratings (as
    `GET /v1/questions/export` returns them), read from the ledger without loading any model."""
    from rag.service.answering import recorded_export

    records = recorded_export(settings_for(data_dir), collection=collection, since=since, rated=feedback, limit=limit)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if output is None:
        typer.echo(lines, nl=False)
    else:
        output.write_text(lines, encoding="utf-8")
        typer.echo(f"{len(records)} questions written to {output}", err=True)
