"""Per-collection dense + lexical indexes, kept in step with SQLite (the source of truth).

This module is the registry of collections and the owner of their write path; a snapshot and its
repair from SQLite are in `rag.index.snapshot`, background saving in `rag.index.saver`.

Consistency design
------------------
* SQLite commits first. A document add/delete is one transaction that also bumps the
  collection's `change_seq`; only after the commit do the in-memory indexes change.
* Each collection's indexes live in one immutable snapshot (seq, dense, lexical, chunk->document
  map). A change builds a new snapshot (FAISS clone + add/remove, BM25 rebuild from cached term
  counts) and swaps the reference; a search reads one snapshot from start to end, so it sees a
  document entirely or not at all, and searches never wait for writers.
* Writers of one collection are serialised by its write lock, held across the SQLite commit and
  the snapshot swap, so snapshots advance in seq order. A change arriving with a seq gap (a
  commit made outside this manager: `rag.store` called directly, or another process) triggers a
  resync: the id sets of SQLite and of the snapshot are diffed and the difference applied (chunk
  ids are never reused and chunks never change, so equal id sets mean equal contents).
* The FAISS index is saved (debounced, `autosave_delay_s`) as `dense-<seq>-<crc>.faiss`, written
  to a temp file, fsynced, renamed, dir fsynced. The BM25 index is not saved: it is rebuilt at
  start-up from the per-chunk term counts cached in SQLite (`chunk_terms`), without jieba.
* `open()` (start-up) loads the newest valid FAISS file, compares its seq and id set with SQLite
  and repairs the difference from the stored vectors (or rebuilds when the file is missing,
  corrupt or of another dimension). A crash between commit and save therefore costs only a
  repair at the next start.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rag import store
from rag.errors import RagError
from rag.index.dense import CorruptIndex, DenseIndex, configure_threads, remove_temp_files, saved_files
from rag.index.faiss_kinds import IndexPolicy
from rag.index.fusion import RRF_K, Hit, hybrid_hits
from rag.index.lexical import Analyzer, LexicalIndex, TermCounts, Vocabulary, get_analyzer
from rag.index.saver import DebouncedSaver
from rag.index.search_index import OpenReport, Rescore
from rag.index.snapshot import Snapshot, sync_snapshot
from rag.store.db import ConnectionFactory, connect

log = logging.getLogger("rag.index")

_UID_RE = re.compile(r"^[0-9a-f]{32}$")


class _Collection:
    def __init__(self, name: str, uid: str, directory: Path, snapshot: Snapshot, vocab: Vocabulary):
        self.name = name
        self.uid = uid
        self.dir = directory
        self.snapshot = snapshot
        self.vocab = vocab
        self.write_lock = threading.RLock()  # writers: SQLite commit + snapshot swap
        self.save_lock = threading.Lock()
        self.saved_seq = -1
        self.deleted = False


class IndexManager:
    """Owns the derived indexes of every collection: the embedded backend's `SearchIndex`. Thread-safe.

    `connect` must return a NEW SQLite connection on every call (the manager opens short-lived
    ones for start-up and resyncs, and closes them). Write methods take the caller's connection and run the SQLite transaction
    themselves, under the collection's write lock, then update the indexes.
    """

    def __init__(
        self,
        index_dir: str | Path,
        connect: ConnectionFactory,
        *,
        analyzer: Analyzer | None = None,
        autosave_delay_s: float = 2.0,
        faiss_threads: int | None = 1,
        dense_policy: IndexPolicy = IndexPolicy("auto", 200_000),
    ):
        self.index_dir = Path(index_dir)
        self._connect = connect
        self.analyzer = analyzer or get_analyzer()
        self.autosave_delay_s = float(autosave_delay_s)
        self.dense_policy = dense_policy  # FAISS index kind by collection size (rag.index.faiss_kinds)
        configure_threads(faiss_threads)
        self._collections: dict[str, _Collection] = {}
        self._lock = threading.RLock()  # guards _collections (loading/removing holders)
        self._saver = DebouncedSaver(self._save_named, self.autosave_delay_s)

    @classmethod
    def from_settings(cls, settings: Any, connect_factory: ConnectionFactory | None = None, **kwargs: Any) -> IndexManager:
        factory = connect_factory or (lambda: connect(settings.db_path))
        kwargs.setdefault("dense_policy", IndexPolicy(settings.faiss_index, settings.faiss_approx_from))
        return cls(settings.index_dir, factory, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> list[OpenReport]:
        """Start-up: loads/verifies/repairs every collection's indexes, deletes index folders of
        collections that no longer exist, starts the background saver. Returns one report per
        collection."""
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            records = store.list_collections(conn)
        reports = []
        with self._lock:
            for rec in records:
                col, report = self._load(rec.name, rec.uid)
                self._collections[rec.name] = col
                reports.append(report)
            known = {rec.uid for rec in records}
            for p in self.index_dir.iterdir():
                if p.is_dir() and _UID_RE.match(p.name) and p.name not in known:
                    log.info("removing index folder of a deleted collection: %s", p)
                    shutil.rmtree(p, ignore_errors=True)
        self.analyzer.warm_up()
        return reports

    def close(self) -> None:
        """Saves pending changes and stops the saver thread."""
        self._saver.close()
        self.flush()

    def flush(self) -> None:
        """Saves every collection whose saved FAISS file is behind its snapshot, now."""
        self._saver.clear()
        with self._lock:
            cols = list(self._collections.values())
        for col in cols:
            self._save(col)

    # ------------------------------------------------------------------ loading / resync

    def _collection(self, name: str) -> _Collection:
        col = self._collections.get(name)
        if col is not None and not col.deleted:
            return col
        with self._lock:
            col = self._collections.get(name)
            if col is not None and not col.deleted:
                return col
            with closing(self._connect()) as conn:
                rec = store.get_collection(conn, name)  # NotFound if absent
            col, _ = self._load(rec.name, rec.uid)
            self._collections[name] = col
            return col

    def _load(self, name: str, uid: str) -> tuple[_Collection, OpenReport]:
        t0 = time.perf_counter()
        directory = self.index_dir / uid
        remove_temp_files(directory)
        dense: DenseIndex | None = None
        dense_seq = -1
        for seq, path in saved_files(directory):
            try:
                dense = DenseIndex.load(path, self.dense_policy)
                dense_seq = seq
                break
            except CorruptIndex as e:
                log.warning("collection %s: ignoring unusable index file: %s", name, e)
        vocab = Vocabulary()
        empty = Snapshot(-1, dense, LexicalIndex.empty(vocab, self.analyzer), np.zeros(0, np.int64), np.zeros(0, np.int64))
        col = _Collection(name, uid, directory, empty, vocab)
        snap, info = sync_snapshot(self._connect, col.name, col.uid, empty, self.analyzer,
                                   dense_ids=dense.ids() if dense is not None else None, policy=self.dense_policy)
        if snap.dense is not None:
            conformed = snap.dense.conformed()  # another kind when the size or the setting changed
            if conformed is not snap.dense:
                log.info("collection %s: FAISS index %s -> %s (%d vectors)", name, snap.dense.kind, conformed.kind, len(conformed))
                snap, info["dense_rebuilt"], dense_seq = replace(snap, dense=conformed), True, -1  # save it
        col.snapshot = snap
        if dense is None:
            state = "empty" if snap.dense is None or not len(snap.dense) else "rebuilt"
        elif info["dense_rebuilt"]:
            state = "rebuilt"
        elif info["dense_changed"] or dense_seq != snap.seq:
            state = "repaired"
        else:
            state = "loaded"
        col.saved_seq = dense_seq if dense is not None else -1
        if state == "loaded":
            col.saved_seq = snap.seq
        elif snap.dense is not None:
            self._schedule_save(col)  # in the background: start-up does not wait for the disk
        report = OpenReport(
            collection=name,
            seq=snap.seq,
            chunks=len(snap.ids),
            dense=state,
            terms_cached=info["terms_cached"],
            terms_analyzed=info["terms_analyzed"],
            seconds=time.perf_counter() - t0,
        )
        log.info("collection %s: %s", name, report)
        return col, report

    # ------------------------------------------------------------------ writes

    def add_document(
        self,
        conn: store.Connection,
        collection: str,
        meta: store.NewDocument,
        chunks: Sequence[store.ChunkSource],
        vectors: np.ndarray,
        job_id: str | None = None,
        *,
        embed_model: str,
        windows: Sequence[store.ChunkWindows | None] | None = None,
    ) -> store.AddedDocument:
        """Stores a document (one SQLite transaction, see `rag.store.documents.add_document`, including
        the chunks' lexical terms and sub-chunk windows) and then makes it searchable. Duplicates
        (same sha256 in the collection) change nothing but the job."""
        order = sorted(range(len(chunks)), key=lambda i: chunks[i].ordinal)
        chunks = [chunks[i] for i in order]
        if windows is not None and len(windows) == len(order):
            windows = [windows[i] for i in order]
        vecs = np.asarray(vectors)
        if len(order) and vecs.ndim == 2 and vecs.shape[0] == len(order):
            vecs = vecs[order]
        terms = [self.analyzer.term_counts(c.text) for c in chunks]  # CPU work outside the lock
        col = self._collection(collection)
        with col.write_lock:
            added = store.add_document(
                conn, collection, meta, chunks, vecs, job_id,
                embed_model=embed_model, terms=terms, analyzer=self.analyzer.id, windows=windows,
            )
            if not added.duplicate:
                doc_ids = np.full(len(added.chunk_ids), added.document.id, np.int64)
                self._apply_added(col, np.asarray(added.chunk_ids, np.int64), doc_ids, vecs, terms, added.change_seq)
        return added

    def delete_document(
        self, conn: store.Connection, document_id: int, *, collection: str | None = None
    ) -> store.DeletedDocument:
        """Deletes a document (one SQLite transaction) and removes its chunks from the indexes."""
        doc = store.get_document(conn, document_id, collection=collection)
        col = self._collection(doc.collection)
        with col.write_lock:
            deleted = store.delete_document(conn, document_id, collection=doc.collection)
            self._apply_removed(col, deleted.chunk_ids, deleted.change_seq)
        return deleted

    def delete_collection(self, conn: store.Connection, name: str) -> store.DeletedCollection:
        """Deletes a collection in SQLite, then its in-memory indexes and index folder."""
        col = self._collections.get(name)
        lock = col.write_lock if col is not None else threading.RLock()
        with lock:
            deleted = store.delete_collection(conn, name)
        self._forget_collection(name, uid=deleted.collection.uid)
        return deleted

    def _forget_collection(self, name: str, *, uid: str | None = None) -> None:
        """Drops a deleted collection's indexes and its index folder (also one this process never loaded)."""
        with self._lock:
            col = self._collections.pop(name, None)
        if col is not None:
            with col.write_lock, col.save_lock:
                col.deleted = True
                shutil.rmtree(col.dir, ignore_errors=True)
        if uid is not None and _UID_RE.match(uid):
            shutil.rmtree(self.index_dir / uid, ignore_errors=True)

    # ------------------------------------------------------------------ snapshot updates

    def _resync_locked(self, col: _Collection) -> None:
        snap, _ = sync_snapshot(self._connect, col.name, col.uid, col.snapshot, self.analyzer, policy=self.dense_policy)
        col.snapshot = snap
        self._schedule_save(col)

    def _apply_added(
        self,
        col: _Collection,
        ids: np.ndarray,
        doc_ids: np.ndarray,
        vectors: np.ndarray,
        terms: Sequence[TermCounts],
        seq: int,
    ) -> None:
        snap = col.snapshot
        if seq <= snap.seq:
            return  # already included (a resync got there first)
        if seq != snap.seq + 1:
            log.info("collection %s: seq %d after %d, resyncing", col.name, seq, snap.seq)
            self._resync_locked(col)
            return
        dense = snap.dense
        if len(ids):
            dim = int(np.asarray(vectors).shape[1])
            if dense is None or (dense.dim != dim and not len(dense)):
                dense = DenseIndex.empty(dim, self.dense_policy)
            dense = dense.added(ids, vectors)
        lexical = snap.lexical.added(ids, terms)
        all_ids = np.concatenate([snap.ids, ids])
        all_docs = np.concatenate([snap.doc_ids, doc_ids])
        if len(all_ids) > 1 and not (np.diff(all_ids) > 0).all():
            order = np.argsort(all_ids, kind="stable")
            all_ids, all_docs = all_ids[order], all_docs[order]
        col.snapshot = Snapshot(seq, dense, lexical, all_ids, all_docs)
        self._schedule_save(col)

    def _apply_removed(self, col: _Collection, chunk_ids: Sequence[int], seq: int) -> None:
        snap = col.snapshot
        if seq <= snap.seq:
            return
        if seq != snap.seq + 1:
            log.info("collection %s: seq %d after %d, resyncing", col.name, seq, snap.seq)
            self._resync_locked(col)
            return
        gone = np.asarray(list(chunk_ids), dtype=np.int64)
        keep = ~np.isin(snap.ids, gone)
        dense = snap.dense.removed(gone) if snap.dense is not None else None
        col.snapshot = Snapshot(seq, dense, snap.lexical.removed(gone), snap.ids[keep], snap.doc_ids[keep])
        self._schedule_save(col)

    # ------------------------------------------------------------------ saving

    def _schedule_save(self, col: _Collection) -> None:
        if self.autosave_delay_s <= 0:
            self._save(col)
            return
        self._saver.schedule(col.name)

    def _save_named(self, name: str) -> None:
        col = self._collections.get(name)
        if col is not None:
            self._save(col)

    def _save(self, col: _Collection) -> None:
        with col.save_lock:
            snap = col.snapshot
            if col.deleted or snap.dense is None or snap.seq == col.saved_seq:
                return
            snap.dense.save(col.dir, snap.seq)
            col.saved_seq = snap.seq

    # ------------------------------------------------------------------ reads

    def _snapshot(self, collection: str) -> Snapshot:
        return self._collection(collection).snapshot

    def dense_search(self, collection: str, query_vector: np.ndarray, k: int = 10) -> list[Hit]:
        snap = self._snapshot(collection)
        found = _dense(snap, query_vector, k)
        docs = snap.document_of([c for c, _ in found])
        return [
            Hit(c, int(d), s, dense_score=s, dense_rank=r)
            for r, ((c, s), d) in enumerate(zip(found, docs), start=1)
        ]

    def lexical_search(self, collection: str, query_text: str, k: int = 10) -> list[Hit]:
        snap = self._snapshot(collection)
        found = snap.lexical.search(query_text, k) if query_text else []
        docs = snap.document_of([c for c, _ in found])
        return [
            Hit(c, int(d), s, bm25_score=s, bm25_rank=r) for r, ((c, s), d) in enumerate(zip(found, docs), start=1)
        ]

    def search(
        self,
        collection: str,
        query_vector: np.ndarray | None,
        query_text: str | None,
        k: int = 10,
        *,
        candidates: int | None = None,
        rrf_k: float = RRF_K,
        rescore: Rescore | None = None,
    ) -> list[Hit]:
        """Hybrid search: top `candidates` (default max(50, 4k)) from dense and from BM25, fused
        with reciprocal rank fusion, best `k` returned. Either query may be None. `rescore`
        re-ranks the dense candidates (sub-chunk windows, `rag.index.windows`) before fusion."""
        if k <= 0:
            return []
        n = candidates or max(50, 4 * k)
        snap = self._snapshot(collection)
        dense = _dense(snap, query_vector, n) if query_vector is not None else []
        if rescore is not None and dense:
            dense = rescore(dense)
        lexical = snap.lexical.search(query_text, n) if query_text else []
        return hybrid_hits(dense, lexical, k, rrf_k, snap.document_of)

    def stats(self, collection: str) -> dict[str, Any]:
        col = self._collection(collection)
        snap = col.snapshot
        return {
            "collection": collection,
            "seq": snap.seq,
            "saved_seq": col.saved_seq,
            "chunks": len(snap.ids),
            "dim": snap.dense.dim if snap.dense is not None else None,
            "dense_bytes": snap.dense.nbytes if snap.dense is not None else 0,
            "lexical_bytes": snap.lexical.nbytes,
            "vocabulary": len(col.vocab),
        }


def _dense(snap: Snapshot, query_vector: np.ndarray | None, k: int) -> list[tuple[int, float]]:
    if query_vector is None or snap.dense is None:
        return []
    q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    if q.shape[0] != snap.dense.dim:
        raise RagError(
            f"query vector has dimension {q.shape[0]}, the collection's vectors {snap.dense.dim}",
            code="dimension_mismatch",
            status=409,
        )
    return snap.dense.search(q, k)


