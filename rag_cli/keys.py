"""`rag keys`: API keys created (the key shown once), listed and revoked."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rag_cli.shared import data_dir_option, settings_for

cli = typer.Typer(no_args_is_help=True, help="API keys: create (shown once), list, revoke.")


@cli.command("create")
def keys_create(
    role: str = typer.Option(..., "--role", help="read (search, ask, read), write (plus upload/delete documents) or admin (everything)."),
    collection: Optional[list[str]] = typer.Option(None, "--collection", "-c", help="A collection the role applies to (repeatable; NAME:read or NAME:write gives that collection its own role); none: every collection."),
    name: str = typer.Option("", "--name", help="A label, e.g. who holds the key."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from rag.service.auth import open_keys

    grants = {c.rpartition(":")[0] or c: c.rpartition(":")[2] if ":" in c else role for c in collection or []}
    new = open_keys(settings_for(data_dir)).create(role, grants=grants or None, name=name)
    typer.echo(new.key)
    scope = "every collection" if new.record.grants is None else ", ".join(sorted(new.record.grants))
    typer.echo(f"key {new.record.id}: {new.record.role} on {scope} (shown once: store it now)", err=True)


@cli.command("list")
def keys_list(data_dir: Optional[Path] = data_dir_option()) -> None:
    """Every key: id, role, collections, name, created, revoked (never the key itself)."""
    from rag.service.auth import open_keys

    for k in open_keys(settings_for(data_dir)).list():
        scope = "*" if k.grants is None else ",".join(f"{c}:{r}" for c, r in sorted(k.grants.items()))
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        typer.echo(f"{k.id}  {k.role:<5}  {scope:<30}  {state:<32}  {k.created_at}  {k.name}")


@cli.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key's id (from `rag keys list`)."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Revoke a key: it never authenticates again (its history stays)."""
    from rag.service.auth import open_keys

    k = open_keys(settings_for(data_dir)).revoke(key_id)
    typer.echo(f"key {k.id} revoked at {k.revoked_at}")
