"""The HTTP API: thin routes that validate, delegate to `rag`/`ingest`, and map errors to JSON."""
