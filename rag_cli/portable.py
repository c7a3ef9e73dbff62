"""`rag export` and `rag import`: move collections, with everything they own, between deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rag_cli.shared import data_dir_option, settings_for

cli = typer.Typer()


@cli.command("export")
def export(
    output: Path = typer.Argument(..., help="A new (or empty) folder to write the export into."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Only this collection (default: every one)."),
    include_keys: bool = typer.Option(False, "--include-keys", help="Also the API keys (their keyed hashes, never a "
                                      "key) and the secret they were hashed with; a collection export carries admin "
                                      "keys and those granted that collection."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Write collections, with what they own, into a folder that `rag import` reads.

    From the configured store (RAG_DATA_DIR or RAG_DATABASE_URL): documents, chunks, vectors and
    windows, jobs history, questions with their calls, traces, ratings and conversations (format
    rag-export v1: JSON Lines and float32 files, a manifest with every file's sha256). Loads no model;
    safe while a server runs (one consistent view). Keys only with --include-keys; the originals'
    bytes are not carried (the store keeps none after ingestion)."""
    from rag.portable import export_store

    manifest = export_store(settings_for(data_dir), output, collection=collection, include_keys=include_keys)
    for c in manifest.collections:
        rows = {n.rsplit("/", 1)[1]: m.rows for n, m in manifest.members.items() if n.startswith(c.folder() + "/")}
        typer.echo(f"{c.name}: {rows['documents.jsonl']} documents, {rows['chunks.jsonl']} chunks, "
                   f"{rows['vectors.f32']} vectors ({c.embed_model or 'none'}), {rows['questions.jsonl']} questions")
    if include_keys:
        keys = manifest.members.get("keys/api_keys.jsonl")
        typer.echo(f"{keys.rows} API keys (hashes)" if keys else "no API keys here (none was ever made)")
    typer.echo(f"written to {output}", err=True)


@cli.command("import")
def import_(
    source: Path = typer.Argument(..., exists=True, file_okay=False, help="A folder `rag export` wrote."),
    merge: bool = typer.Option(False, "--merge", help="Import into collections that already hold documents here: "
                               "the export's documents they lack (by sha256) are added with their chunks and "
                               "vectors, documents they have are kept as they are, and history rows (jobs, "
                               "questions, calls, ratings, conversations) they lack are added. Without it such a "
                               "collection is refused (collection_exists) and nothing is imported."),
    include_keys: bool = typer.Option(False, "--include-keys", help="Also the export's API keys (an export made with "
                                      "--include-keys); refused (key_secret_mismatch) where keys of this store use "
                                      "another hashing secret: import keys before a deployment's first start."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Import a `rag export` folder into the configured store, without re-embedding.

    Into RAG_DATA_DIR's SQLite or RAG_DATABASE_URL's Postgres. Every file is checked against the
    manifest's sha256 first (export_corrupt), the embedder must be this deployment's RAG_EMBEDDER
    (embedder_mismatch), and everything is written in one transaction: on any error nothing of the
    import remains. Ids are kept where the target never used them (a new store)."""
    from rag.portable import import_store

    report = import_store(settings_for(data_dir), source, merge=merge, include_keys=include_keys)
    for done in report.collections:
        history = ", ".join(f"{n} {k}" for k, n in done.history.items() if n)
        typer.echo(f"{done.collection}: {done.documents} documents, {done.chunks} chunks, {done.vectors} vectors, "
                   f"{done.windows} windows" + (f", {done.skipped_documents} documents already here" if
                                                 done.skipped_documents else "")
                   + (f"; {history}" if history else "") + ("" if done.ids_kept else "; ids shifted"))
    if report.keys is not None:
        typer.echo(f"{report.keys} API keys added (restart running servers to use their hashing secret)")
