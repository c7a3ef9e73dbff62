"""The `rag` console command. Each subcommand is a thin shell over the services in `rag.service`.

This package and `api/` are the only code that knows about the outside: the core library (`rag`)
imports neither, and only `rag serve` reaches the HTTP app and uvicorn.

One module per command group, each with its own `cli`; this file puts them together in the order
`rag --help` lists them. What they share (`--data-dir`, settings, how a `RagError` ends a command)
is `rag_cli.shared`.
"""

from __future__ import annotations

import typer

from rag import offline as _offline  # noqa: F401
from rag_cli import backup, bench, config, export, ingesting, keys, mcp, models, portable, questions, serve
from rag_cli.shared import Commands

app = typer.Typer(cls=Commands, add_completion=False, no_args_is_help=True,
                  help="Offline document question answering.")
for _commands in (serve, mcp, ingesting, questions, portable, backup, config):
    app.add_typer(_commands.cli)
for _name, _group in (("models", models), ("bench", bench), ("keys", keys), ("questions", export)):
    app.add_typer(_group.cli, name=_name)
