"""What every `rag` command shares: the `--data-dir` option, settings from a command's options, and
the one way a `RagError` ends a command (a red `error [code]: message` on stderr, exit status 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, Optional

import click
import typer
from typer.core import TyperGroup

from rag.errors import RagError
from rag.settings import Settings

STATE_FOLDER = "State folder (default from RAG_DATA_DIR)."


def data_dir_option(help: str | None = STATE_FOLDER) -> Any:
    """`--data-dir`: the state folder a command opens (`settings_for` puts it into the settings)."""
    return typer.Option(None, help=help)


def settings_for(data_dir: Optional[Path] = None, **overrides) -> Settings:
    """Settings from the environment, with the options a command was given (None: not given)."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def fail(exc: RagError) -> NoReturn:
    typer.secho(f"error [{exc.code}]: {exc.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


class Commands(TyperGroup):
    """The root command group. A `RagError` a command does not handle itself ends it through `fail`,
    so no command repeats the mapping; the group's invoke runs every subcommand, nested ones too, and
    sits inside Click's `main`, so `CliRunner` sees the same exit status as the console does."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RagError as exc:
            fail(exc)
