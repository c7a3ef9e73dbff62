"""Moving a deployment: `rag export` writes collections with everything they own into a folder
(`format`: versioned, checksummed, streamed), `rag import` writes such a folder into the configured
store, SQLite or Postgres, without re-embedding and all or nothing.

    format   the folder's layout, the manifest, checksums and the format's errors
    writer   store -> folder (one consistent view, page by page)
    reader   folder -> store (verify everything, then one transaction)

These functions open the store the settings select (`RAG_DATA_DIR` or `RAG_DATABASE_URL`) and load
no model: the embedder is checked by name and weights checksum, not run.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from rag.index.lexical import get_analyzer
from rag.portable.format import FORMAT, VERSION, ExportCorrupt, ExportUnsupported, Manifest
from rag.portable.reader import Imported, import_all, read_checked
from rag.portable.writer import export
from rag.settings import Settings
from rag.store import open_configured
from rag.store.dialect import dialect

__all__ = ["FORMAT", "VERSION", "ExportCorrupt", "ExportUnsupported", "Imported", "Manifest", "export_store",
           "import_store"]


def export_store(settings: Settings, out: Path, *, collection: str | None = None) -> Manifest:
    """One collection (or all of them) of the configured store, written into the new folder `out`."""
    with closing(open_configured(settings)) as conn:
        return export(conn, out, collection)


def import_store(settings: Settings, source: Path, *, merge: bool = False) -> list[Imported]:
    """An export folder written into the configured store: checked in full first, then one transaction.
    `merge`: a collection already here takes the export's documents it lacks (by sha256) and its history."""
    manifest = read_checked(source, settings.embedder)
    analyzer = get_analyzer()
    with closing(open_configured(settings)) as conn:
        done = import_all(conn, source, manifest, analyzer, merge=merge)
        if dialect(conn) == "postgres":  # searched through HNSW from the first query, as after an ingestion
            from rag.store.pg_schema import ensure_vector_index

            for dim in {c.embed_dim for c in manifest.collections if c.embed_dim}:
                ensure_vector_index(conn, dim)
    return done
