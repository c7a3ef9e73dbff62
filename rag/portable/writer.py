"""`rag export`: one collection, or every collection, written into a new folder (`rag.portable.format`).

Everything is read inside one consistent view of the store (`transfer.snapshot`), so an export taken
while a server ingests is the store at one moment. Rows and vectors are streamed page by page into
their members; the manifest, with every member's checksum, is written last, through a temporary
file and a rename, so a folder with a manifest is a finished export.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rag.errors import Conflict, RagError
from rag.models.registry import get_spec
from rag.portable.format import (JSONL_TABLES, MANIFEST, VECTOR_IDS, VECTORS, WINDOW_VECTORS, CollectionEntry, Manifest,
                                 MemberWriter)
from rag.store import Connection, get_collection, iter_vectors, list_collections, transfer, utcnow
from rag.store.dialect import dialect

_TABLES = {"documents": transfer.DOCUMENTS, "chunks": transfer.CHUNKS, "windows": transfer.WINDOWS,
           **{t.name: t for t in transfer.HISTORY}}


def export(conn: Connection, out: Path, collection: str | None = None, *,
           also: Callable[[Connection, Path, Manifest], None] | None = None) -> Manifest:
    """Writes `collection` (None: every collection) into `out`, a folder that must be new or empty
    (409 `export_exists` otherwise), and then whatever `also` writes in the same view (the keys).
    Returns the manifest written."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"{out} exists and is not an empty folder; export into a new one", code="export_exists")
    out.mkdir(parents=True, exist_ok=True)
    with transfer.snapshot(conn):
        names = [get_collection(conn, collection).name] if collection else [c.name for c in list_collections(conn)]
        manifest = Manifest(dialect(conn), utcnow(), [])
        for name in names:
            manifest.collections.append(_export_collection(conn, out, name, manifest))
        if also is not None:
            also(conn, out, manifest)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)
    return manifest


def _export_collection(conn: Connection, out: Path, name: str, manifest: Manifest) -> CollectionEntry:
    rec = get_collection(conn, name)
    spec = get_spec(rec.embed_model) if rec.embed_model else None
    entry = CollectionEntry(rec.name, rec.description, rec.created_at, rec.embed_model, rec.embed_dim,
                            spec.sha256 if spec else None, None, None)
    folder = entry.folder()
    spans: dict[str, tuple[int, int] | None] = {}
    for member in JSONL_TABLES:
        writer = MemberWriter(out, f"{folder}/{member}.jsonl")
        window_vectors = MemberWriter(out, f"{folder}/{WINDOW_VECTORS}") if member == "windows" else None
        low = high = None
        for row in transfer.read_rows(conn, _TABLES[member], name):
            if window_vectors is not None:
                window_vectors.write(_window_bytes(row.pop("vector"), row.pop("dim"), rec.embed_dim), 1)
            if member in ("documents", "chunks"):
                low, high = row["id"] if low is None else low, row["id"]
            writer.row(row)
        spans[member] = None if low is None else (low, high)
        manifest.members[writer.name] = writer.close()
        if window_vectors is not None:
            manifest.members[window_vectors.name] = window_vectors.close()
    entry.document_ids, entry.chunk_ids = spans["documents"], spans["chunks"]
    ids, vecs = MemberWriter(out, f"{folder}/{VECTOR_IDS}"), MemberWriter(out, f"{folder}/{VECTORS}")
    for batch in iter_vectors(conn, name):
        if batch.model != rec.embed_model or batch.vectors.shape[1] != rec.embed_dim:
            raise RagError(f"collection {name!r} holds vectors of {batch.model} while it records {rec.embed_model}",
                           code="store_corrupt", status=500)
        ids.write(np.ascontiguousarray(batch.ids, dtype="<i8").tobytes(), len(batch.ids))
        vecs.write(np.ascontiguousarray(batch.vectors, dtype="<f4").tobytes(), len(batch.ids))
    manifest.members[ids.name], manifest.members[vecs.name] = ids.close(), vecs.close()
    return entry


def _window_bytes(vector: bytes, dim: int, embed_dim: int | None) -> bytes:
    if dim != embed_dim or len(vector) != dim * 4:
        raise RagError("a stored window vector does not have its collection's dimension", code="store_corrupt", status=500)
    return bytes(vector)
