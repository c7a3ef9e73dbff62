"""`rag settings`: every setting, its environment variable and its value (or the README's table)."""

from __future__ import annotations

from pathlib import Path

import typer

from rag.settings import Settings

cli = typer.Typer()


@cli.command("settings")
def settings_cmd(markdown: bool = typer.Option(False, help="Print the README's settings table.")) -> None:
    """Every setting, its environment variable, and its current value."""
    s = Settings()
    if markdown:
        typer.echo("| variable | default | what it does |\n|---|---|---|")
    for name, field in Settings.model_fields.items():
        env = f"RAG_{name.upper()}"
        if markdown:
            default = field.default
            if isinstance(default, Path):
                default = default.relative_to(Path.cwd()) if default.is_relative_to(Path.cwd()) else default
            typer.echo(f"| `{env}` | `{default}` | {field.description} |")
        else:
            typer.echo(f"{env}={getattr(s, name)}")
