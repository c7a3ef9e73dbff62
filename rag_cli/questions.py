"""`rag ask`, `rag trace` and `rag replay`: a question asked, read back and re-run in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rag_cli.shared import data_dir_option, settings_for

cli = typer.Typer()


@cli.command()
def ask(
    question: str = typer.Argument(..., help="The question."),
    collection: str = typer.Option("default", "--collection", "-c"),
    trace: bool = typer.Option(False, "--trace", help="Print the full trace after the answer."),
    max_model_calls: Optional[int] = typer.Option(None, help="Budget override."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Ask a question in this process: the answer, its sources, and one cost line."""
    from rag.service.answering import AskRequest
    from rag.service.runtime import Runtime
    from rag_cli.render import cost_line, incomplete_line, render_trace, sources, support_lines

    runtime = Runtime(settings_for(data_dir))
    try:
        runtime.start(worker=False)
        budget = {"max_model_calls": max_model_calls} if max_model_calls is not None else None
        answer = runtime.questions.ask(AskRequest(collection, question, budget))
        typer.echo(answer.answer)
        if (warning := incomplete_line(answer.to_dict())) is not None:
            typer.secho(warning, fg=typer.colors.YELLOW)
        for line in support_lines(answer.to_dict()):
            typer.secho(line, fg=typer.colors.YELLOW)
        for line in sources(answer.to_dict()):
            typer.echo("  " + line)
        typer.echo(cost_line(answer.usage) + (f" · stopped by {answer.stopped_by}" if answer.stopped_by else "")
                   + f" · id {answer.id}")
        if trace:
            typer.echo(render_trace(runtime.questions.trace(answer.id)))
    finally:
        runtime.close()


@cli.command("trace")
def trace_cmd(
    question_id: str = typer.Argument(..., help="A question id (from `rag ask` or the API)."),
    full: bool = typer.Option(False, help="Show prompts, outputs and passages in full."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw trace JSON."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Print a question's trace readably: queries, candidates, decisions, calls, packing, context."""
    import json

    from rag.service.answering import recorded_trace

    trace = recorded_trace(settings_for(data_dir), question_id)
    if as_json:
        typer.echo(json.dumps(trace, ensure_ascii=False, indent=1))
    else:
        from rag_cli.render import render_trace

        typer.echo(render_trace(trace, full=full))


@cli.command()
def replay(
    question_id: str = typer.Argument(...),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Re-run a recorded question with its recorded budget and options; report any difference."""
    from rag.service.replay import replay as run_replay
    from rag.service.runtime import Runtime

    runtime = Runtime(settings_for(data_dir))
    try:
        runtime.start(worker=False)
        done = run_replay(runtime.questions, runtime.settings, question_id)
    finally:
        runtime.close()
    if done.note:
        typer.echo(f"note: {done.note}")
    if done.identical:
        typer.echo(f"replay {done.id}: identical (answer, citations, queries, candidates, context, calls, tokens)")
        return
    diffs = done.lines()
    typer.echo(f"replay {done.id}: {len(diffs)} difference(s)")
    for d in diffs:
        typer.echo("  - " + d)
    raise typer.Exit(1)
