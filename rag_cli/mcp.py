"""`rag mcp`: the MCP tools (`api.mcp`) over stdio, for an agent that starts the server itself."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rag_cli.shared import data_dir_option, settings_for

cli = typer.Typer()

KEY_ENV = "RAG_MCP_KEY"


@cli.command()
def mcp(
    key_file: Optional[Path] = typer.Option(None, "--key-file", help=f"A file holding the API key to act as "
                                            f"(default: the key in ${KEY_ENV})."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Serve the MCP tools (list_collections, search, ask, get_trace) over stdin/stdout as one API key.

    The key is checked before any model loads (without a valid one: exit status 1, code unauthorized) and
    every tool call acts with its roles and grants, exactly as over HTTP. Not needed with RAG_AUTH=off.
    Logs go to stderr: stdout carries the protocol only."""
    import os

    import anyio

    from api.mcp import build
    from rag.service.auth import OPEN, Unauthorized, open_keys
    from rag.service.runtime import Runtime

    settings = settings_for(data_dir)
    who = OPEN
    if settings.auth == "on":
        key = (key_file.read_text(encoding="utf-8") if key_file else os.environ.get(KEY_ENV, "")).strip()
        who = open_keys(settings).authenticate(key) if key else None
        if who is None:
            raise Unauthorized(f"`rag mcp` needs a valid API key: set {KEY_ENV} or give --key-file "
                               "(create one with `rag keys create`)")
    runtime = Runtime(settings)
    try:
        runtime.start(worker=False)  # a server on the same folder may be answering: its questions are left alone

        def principal_of(_ctx):
            runtime.quotas.request(who.key_id)  # a tool call is one request, as an HTTP call would be
            return who

        anyio.run(build(lambda: runtime, principal_of).run_stdio_async)
    finally:
        runtime.close()
