"""`rag backup` and `rag restore`: the embedded store's data dir, copied while a server runs, and put back.

The work is `rag.service.backup`; these commands print its steps and what the backup holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rag_cli.shared import data_dir_option, settings_for

cli = typer.Typer()


def _step(message: str) -> None:
    typer.echo(message, err=True)


@cli.command()
def backup(
    target: Path = typer.Argument(..., help="Backup folder: created, or an earlier backup replaced once this one is complete."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Back up the data dir, also while a server runs and ingests.

    SQLite through its online backup API, the bytes of pending jobs, FAISS files that match the copied
    database, the key secret; a manifest with each file's sha256. With RAG_DATABASE_URL use pg_dump (README)."""
    from rag.service.backup import create_backup

    s = create_backup(settings_for(data_dir), target, on_step=_step)
    typer.echo(f"{s.path}: {s.collections} collections, {s.documents} documents, {s.chunks} chunks, "
               f"{s.pending_jobs} pending jobs; {s.files} files, {s.bytes:,} bytes; "
               f"FAISS copied for {s.indexes_copied} of {s.collections} collections (the others are rebuilt at start)")


@cli.command()
def restore(
    source: Path = typer.Argument(..., help="A folder written by `rag backup`."),
    force: bool = typer.Option(False, "--force", help="Replace a data dir that is not empty (its models/ cache is kept)."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Verify a backup's checksums, then make it the data dir, atomically.

    Refused while any process uses the data dir, and over a non-empty one without --force."""
    from rag.service.backup import restore_backup

    r = restore_backup(settings_for(data_dir), source, force=force, on_step=_step)
    counts = r.manifest["counts"]
    typer.echo(f"{r.data_dir}: {counts['documents']} documents, {counts['chunks']} chunks restored "
               f"(backup of {r.manifest['created_at']}); start the server to re-run {counts['pending_jobs']} pending job(s)")
