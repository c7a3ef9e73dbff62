"""Moving a deployment: `rag export` writes collections with everything they own into a folder
(`format`: versioned, checksummed, streamed), `rag import` writes such a folder into the configured
store, SQLite or Postgres, without re-embedding and all or nothing.

    format   the folder's layout, the manifest, checksums and the format's errors
    writer   store -> folder (one consistent view, page by page)
    reader   folder -> store (verify everything, then one transaction)
    keys     API keys' hashes and their hashing secret, only when asked (`--include-keys`)

These functions open the store the settings select (`RAG_DATA_DIR` or `RAG_DATABASE_URL`) and load
no model: the embedder is checked by name and weights checksum, not run.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from rag.index.lexical import get_analyzer
from rag.portable.format import FORMAT, VERSION, ExportCorrupt, ExportUnsupported, Manifest
from rag.portable.keys import import_keys, write_keys
from rag.portable.reader import Imported, import_all, read_checked
from rag.portable.writer import export
from rag.service.auth import install_secret
from rag.settings import Settings
from rag.store import open_configured
from rag.store.dialect import dialect

__all__ = ["FORMAT", "VERSION", "ExportCorrupt", "ExportUnsupported", "ImportReport", "Imported", "Manifest", "export_store",
           "import_store"]


def export_store(settings: Settings, out: Path, *, collection: str | None = None,
                 include_keys: bool = False) -> Manifest:
    """One collection (or all of them) of the configured store, written into the new folder `out`;
    `include_keys`: with the API keys' hashes and their hashing secret (`rag.portable.keys`)."""
    with closing(open_configured(settings)) as conn:
        secret = install_secret(settings, conn) if include_keys else None
        also = (lambda c, o, m: write_keys(c, o, m, secret)) if secret is not None else None
        return export(conn, out, collection, also=also)


@dataclass(frozen=True)
class ImportReport:
    collections: list[Imported]
    keys: int | None  # keys added (None: not asked for, or the export has none)


def import_store(settings: Settings, source: Path, *, merge: bool = False,
                 include_keys: bool = False) -> ImportReport:
    """An export folder written into the configured store: checked in full first, then one transaction.
    `merge`: a collection already here takes the export's documents it lacks (by sha256) and its history.
    `include_keys`: the export's API keys too (they are left out without it)."""
    manifest = read_checked(source, settings.embedder)
    analyzer = get_analyzer()
    keys: list[int] = []
    also = (lambda conn: keys.append(import_keys(conn, source, settings))) if include_keys and manifest.keys else None
    with closing(open_configured(settings)) as conn:
        done = import_all(conn, source, manifest, analyzer, merge=merge, also=also)
        if dialect(conn) == "postgres":  # searched through HNSW from the first query, as after an ingestion
            from rag.store.pg_schema import ensure_vector_index

            for dim in {c.embed_dim for c in manifest.collections if c.embed_dim}:
                ensure_vector_index(conn, dim)
    return ImportReport(done, keys[0] if keys else None)
