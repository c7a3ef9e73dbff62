"""`rag ingest`: files ingested in this process, with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rag.errors import RagError
from rag_cli.shared import data_dir_option, settings_for

cli = typer.Typer()


@cli.command()
def ingest(
    paths: list[Path] = typer.Argument(..., exists=True, help="Files or folders (folders are walked for supported files)."),
    collection: str = typer.Option("default", "--collection", "-c", help="Target collection (created if missing)."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Ingest files in this process, with progress (files, pages, chunks). Use the HTTP API while a server runs."""
    from tqdm import tqdm

    from ingest.detect import EXTENSIONS as SUPPORTED_EXTENSIONS
    from ingest.uploads import Upload
    from rag.service.runtime import Runtime

    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*")))
             if p.is_file() and (path.is_file() or p.suffix.lower() in SUPPORTED_EXTENSIONS)]
    runtime = Runtime(settings_for(data_dir, load_generator=False))
    try:
        runtime.start(worker=False)
        runtime.collections.ensure(collection)
        ok = failed = pages = chunks = 0
        with tqdm(files, unit="file", desc="files") as bar:
            for path in bar:
                bar.set_postfix_str(path.name[:40])
                try:
                    (job,) = runtime.ingest.submit(collection, [Upload(path.name, path.read_bytes())])
                except RagError as exc:
                    failed += 1
                    tqdm.write(f"{path}: {exc.code}: {exc.message}")
                    continue
                outcome = runtime.ingest.run_job(job.id)
                done = runtime.ingest.get_job(job.id)
                if done.status == "done":
                    ok += 1
                    pages += outcome.pages if outcome else 0
                    chunks += outcome.chunks if outcome else 0
                    bar.set_postfix(pages=pages, chunks=chunks)
                else:
                    failed += 1
                    tqdm.write(f"{path}: {done.error_code}: {done.error_message}")
        typer.echo(f"{ok} ingested, {failed} failed · {pages} pages · {chunks} chunks → collection {collection!r}")
    finally:
        runtime.close()
    if failed:
        raise typer.Exit(1)
