"""`rag import`: an export (`rag.portable.format`) written into the configured store, all or nothing.

In order: the manifest is read (`export_unsupported` for another format or version); every member is
checked against its sha256 (`export_corrupt`); every collection's embedder is checked against this
deployment's (`embedder_mismatch`: its vectors could not be searched with another model's queries);
then one transaction writes everything, so any failure (a collection already there without
`merge`, a row that does not parse, the database going away) leaves nothing of the import behind.

Ids: documents and chunks keep their ids when the target never handed those ids out (always so in
a new store: then search results, traces and replays name the same chunks as on the source);
otherwise they are shifted past the target's highest id, all by one offset, so their order (which
fusion's ties follow) is kept. Lexical terms are analysed again from the chunks' text (the
database is the source of truth; BM25's statistics follow from the terms), so nothing is re-embedded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import Conflict
from rag.index.lexical import Analyzer
from rag.models.registry import get_spec
from rag.portable.format import (VECTOR_IDS, VECTORS, WINDOW_VECTORS, CollectionEntry, ExportCorrupt, Manifest,
                                 read_jsonl, verify)
from rag.store import Connection, create_collection, get_collection, save_chunk_terms, transaction, transfer
from rag.store.collections import bump_seq
from rag.store.vectors import insert_vectors

BATCH = 1000  # rows (and vectors) written per statement batch


@dataclass
class Imported:
    """What one collection's import wrote."""

    collection: str
    documents: int = 0
    chunks: int = 0
    vectors: int = 0
    windows: int = 0
    skipped_documents: int = 0  # with merge: already in the collection (same sha256), kept as they were
    history: dict[str, int] = field(default_factory=dict)  # rows written per ledger/job table (present ones skipped)
    ids_kept: bool = True  # False: document and chunk ids were shifted past ids the target had used


def read_checked(root: Path, embedder: str) -> Manifest:
    """The manifest, once every member matched its checksum and every collection's embedder is this
    deployment's. Nothing is written."""
    manifest = Manifest.load(root)
    verify(root, manifest)
    for c in manifest.collections:
        check_embedder(c, embedder)
    return manifest


def check_embedder(c: CollectionEntry, embedder: str) -> None:
    if c.embed_model is None:
        return
    spec = get_spec(embedder)
    same_weights = spec is None or c.embed_sha256 is None or spec.sha256 == c.embed_sha256
    if c.embed_model != embedder or not same_weights:
        raise Conflict(f"collection {c.name!r} was embedded with {c.embed_model} (dim {c.embed_dim}); this deployment "
                       f"embeds with {embedder} (RAG_EMBEDDER). Import it where RAG_EMBEDDER is {c.embed_model}, "
                       "or ingest its documents again", code="embedder_mismatch")


def import_all(conn: Connection, root: Path, manifest: Manifest, analyzer: Analyzer, *, merge: bool,
               also: Callable[[Connection], None] | None = None) -> list[Imported]:
    """Writes every collection of a checked export, then whatever `also` writes (the keys), in ONE transaction."""
    try:
        with transaction(conn):
            done = [_collection(conn, root, c, manifest, analyzer, merge=merge) for c in manifest.collections]
            if also is not None:
                also(conn)
            return done
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportCorrupt(f"a row lacks or garbles a column ({exc!r}); nothing was imported") from None
    except sqlite3.IntegrityError as exc:  # both engines' (rag.store.pg maps psycopg's to it)
        raise ExportCorrupt(f"rows of the export contradict each other ({exc}); nothing was imported") from None


def _collection(conn: Connection, root: Path, c: CollectionEntry, manifest: Manifest, analyzer: Analyzer, *,
                merge: bool) -> Imported:
    existing = _target(conn, c, merge=merge)
    done = Imported(c.name)
    doc_shift, chunk_shift = _shift(conn, "documents", c.document_ids), _shift(conn, "chunks", c.chunk_ids)
    done.ids_kept = not (doc_shift or chunk_shift)
    doc_map: dict[int, int] = {}  # exported document id -> id in the target
    skipped_docs: set[int] = set()  # exported ids of documents already there (merge)
    skipped_chunks: set[int] = set()  # exported ids of their chunks
    folder = c.folder()

    def documents(rows: list[dict]) -> None:
        keep = []
        for r in rows:
            if r["sha256"] in existing:
                doc_map[r["id"]] = existing[r["sha256"]]
                skipped_docs.add(r["id"])
                done.skipped_documents += 1
            else:
                doc_map[r["id"]] = r["id"] + doc_shift
                keep.append({**r, "id": r["id"] + doc_shift, "collection": c.name})
        done.documents += transfer.insert_rows(conn, transfer.DOCUMENTS, keep)

    def chunks(rows: list[dict]) -> None:
        keep = []
        for r in rows:
            if r["document_id"] not in doc_map:
                raise ExportCorrupt(f"chunk {r['id']} belongs to document {r['document_id']}, which is not in the export")
            if r["document_id"] in skipped_docs:
                skipped_chunks.add(r["id"])
                continue
            keep.append({**r, "id": r["id"] + chunk_shift, "document_id": doc_map[r["document_id"]],
                         "collection": c.name, "prev_id": _plus(r["prev_id"], chunk_shift),
                         "next_id": _plus(r["next_id"], chunk_shift)})
        done.chunks += transfer.insert_rows(conn, transfer.CHUNKS, keep)
        terms = [(r["id"], *analyzer.term_counts(r["text"])) for r in keep]
        save_chunk_terms(conn, analyzer.id, terms)

    _each_batch(root, f"{folder}/documents.jsonl", documents)
    _each_batch(root, f"{folder}/chunks.jsonl", chunks)
    done.vectors = _vectors(conn, root, c, manifest, chunk_shift, skipped_chunks)
    if done.vectors != done.chunks:
        raise ExportCorrupt(f"collection {c.name!r}: {done.chunks} chunks but {done.vectors} vectors")
    done.windows = _windows(conn, root, c, chunk_shift, skipped_chunks)

    def job(r: dict) -> dict:
        return {**r, "collection": c.name, "document_id": None if r["document_id"] is None
                else doc_map.get(r["document_id"], r["document_id"] + doc_shift)}

    for table in transfer.HISTORY:
        rows_of: Any = job if table is transfer.JOBS else (lambda r: r)
        n = 0

        def write(rows: list[dict], table=table, rows_of=rows_of) -> None:
            nonlocal n
            n += transfer.insert_rows(conn, table, [rows_of(r) for r in rows])

        _each_batch(root, f"{folder}/{table.name}.jsonl", write)
        done.history[table.name] = n
    if c.embed_model and c.embed_dim and done.vectors:
        transfer.set_embedder(conn, c.name, c.embed_model, c.embed_dim)
    done.ids_kept = done.ids_kept or not (done.documents or done.chunks)  # nothing written: nothing moved
    bump_seq(conn, c.name)
    transfer.advance_ids(conn, "documents")
    transfer.advance_ids(conn, "chunks")
    return done


def _target(conn: Connection, c: CollectionEntry, *, merge: bool) -> dict[str, int]:
    """Creates the collection, or checks the one there may take the import; returns its documents by sha256."""
    row = conn.execute("SELECT name FROM collections WHERE name = ?", (c.name,)).fetchone()
    if row is None:
        create_collection(conn, c.name, c.description)
        return {}
    target = get_collection(conn, c.name)
    if target.document_count and not merge:
        raise Conflict(f"collection {c.name!r} already exists here with {target.document_count} documents; "
                       "import into another store, delete it first, or pass --merge", code="collection_exists")
    if target.embed_model and c.embed_model and (target.embed_model, target.embed_dim) != (c.embed_model, c.embed_dim):
        raise Conflict(f"collection {c.name!r} here holds vectors of {target.embed_model} (dim {target.embed_dim}); "
                       f"the export's are {c.embed_model} (dim {c.embed_dim})", code="embedder_mismatch")
    return transfer.document_ids_by_sha(conn, c.name)


def _shift(conn: Connection, table: str, span: tuple[int, int] | None) -> int:
    """0 when the exported ids were never handed out here; else the offset that puts them past them."""
    if span is None:
        return 0
    top = transfer.high_water(conn, table)
    return 0 if span[0] > top else top + 1 - span[0]


def _plus(value: int | None, shift: int) -> int | None:
    return None if value is None else value + shift


def _each_batch(root: Path, name: str, write) -> None:
    batch: list[dict] = []
    for row in read_jsonl(root, name):
        batch.append(row)
        if len(batch) >= BATCH:
            _guarded(write, batch, name)
            batch = []
    if batch:
        _guarded(write, batch, name)


def _guarded(write, batch: list[dict], name: str) -> None:
    try:
        write(batch)
    except (KeyError, TypeError, ValueError) as exc:  # a row without a column, or of the wrong type
        raise ExportCorrupt(f"{name}: a row lacks or garbles a column ({exc!r})") from None


def _binary(root: Path, name: str, row_bytes: int) -> Iterator[bytes]:
    with open(root / name, "rb") as f:
        while block := f.read(row_bytes * BATCH):
            if len(block) % row_bytes:
                raise ExportCorrupt(f"{name} ends in the middle of a row")
            yield block


def _vectors(conn: Connection, root: Path, c: CollectionEntry, manifest: Manifest, shift: int, skipped: set[int]) -> int:
    folder, n = c.folder(), manifest.members[f"{c.folder()}/{VECTOR_IDS}"].rows
    if not n:
        return 0
    if not c.embed_model or not c.embed_dim:
        raise ExportCorrupt(f"collection {c.name!r} has vectors but no embedder in the manifest")
    written = 0
    for ids_raw, vec_raw in zip(_binary(root, f"{folder}/{VECTOR_IDS}", 8),
                                _binary(root, f"{folder}/{VECTORS}", 4 * c.embed_dim), strict=True):
        ids = np.frombuffer(ids_raw, dtype="<i8")
        vecs = np.frombuffer(vec_raw, dtype="<f4").reshape(-1, c.embed_dim)
        if len(ids) != len(vecs):
            raise ExportCorrupt(f"{folder}: vectors.ids and vectors.f32 hold different numbers of rows")
        keep = np.fromiter((int(i) not in skipped for i in ids), bool, len(ids))
        insert_vectors(conn, [int(i) + shift for i in ids[keep]], vecs[keep], c.embed_model)
        written += int(keep.sum())
    return written


def _windows(conn: Connection, root: Path, c: CollectionEntry, shift: int, skipped: set[int]) -> int:
    folder = c.folder()
    if not c.embed_dim:
        return 0
    size = 4 * c.embed_dim
    with open(root / f"{folder}/{WINDOW_VECTORS}", "rb") as vectors:

        def write(rows: list[dict]) -> None:
            raw = vectors.read(size * len(rows))
            if len(raw) != size * len(rows):
                raise ExportCorrupt(f"{folder}/{WINDOW_VECTORS} holds fewer vectors than windows.jsonl has rows")
            keep = [{**r, "chunk_id": r["chunk_id"] + shift, "dim": c.embed_dim, "vector": raw[i * size:(i + 1) * size]}
                    for i, r in enumerate(rows) if r["chunk_id"] not in skipped]
            nonlocal written
            written += transfer.insert_rows(conn, transfer.WINDOWS, keep)

        written = 0
        _each_batch(root, f"{folder}/windows.jsonl", write)
    return written
