"""`rag serve` and `rag worker`: the processes that run until stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rag.errors import RagError
from rag_cli.shared import data_dir_option, settings_for

cli = typer.Typer()


@cli.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Bind address (default from RAG_HOST)."),
    port: Optional[int] = typer.Option(None, help="Port (default from RAG_PORT)."),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Prepare the configured models if needed, load them, and serve the HTTP API."""
    import uvicorn

    from api.app import create_app
    from rag.malloc import pin_mmap_threshold
    from rag.service.runtime import Runtime

    pin_mmap_threshold()  # before the models load: see rag.malloc
    settings = settings_for(data_dir, host=host, port=port)
    runtime = Runtime(settings)
    runtime.start(progress=True, warm_ingest=True)
    typer.echo(runtime.startup_line())
    typer.echo(f"serving on http://{settings.host}:{settings.port}  (data: {settings.data_dir})")
    uvicorn.run(create_app(settings, runtime), host=settings.host, port=settings.port, log_level="info")


@cli.command()
def worker(
    data_dir: Optional[Path] = data_dir_option("State folder (default from RAG_DATA_DIR): only the model cache is used."),
) -> None:
    """Run an ingestion worker on the shared PostgreSQL store (RAG_DATABASE_URL) until stopped (SIGTERM/Ctrl-C).

    Any number of workers on any machines claim jobs from the same queue; a killed worker's job is
    claimed again by another when its lease (RAG_JOB_LEASE_S) runs out."""
    import signal
    import threading

    from rag.malloc import pin_mmap_threshold
    from rag.service.runtime import Runtime

    # A worker has no API (no keys to check) and is itself the process to lower in priority.
    settings = settings_for(data_dir, load_generator=False, ingest_embed_process=False, auth="off")
    runtime = Runtime(settings)
    if not runtime.shared_store:
        raise RagError("`rag worker` needs RAG_DATABASE_URL=postgresql://...; with the embedded store, "
                       "`rag serve` runs the ingestion worker itself", code="invalid_setting")
    pin_mmap_threshold()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        runtime.start(worker=False)
        runtime.ingest.start()
        typer.echo(f"worker {runtime.ingest.worker_id} claiming jobs", err=True)
        stop.wait()
    finally:
        runtime.close()
