"""A collection's indexes as one immutable snapshot, and how a snapshot is brought in line with SQLite.

`sync_snapshot` is the start-up repair and the seq-gap resync: it reads SQLite in one read
transaction (a consistent view), diffs the chunk id sets of SQLite and of the snapshot it starts
from, and applies the difference (stale ids removed; missing ones added from stored vectors and
cached lexical terms, analysing text only where the cache lacks it). Chunk ids are never reused
and chunks never change, so equal id sets mean equal contents.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag import store
from rag.errors import NotFound, RagError
from rag.index.dense import DenseIndex
from rag.index.faiss_kinds import EXACT, IndexPolicy
from rag.index.lexical import Analyzer, LexicalIndex
from rag.store.db import ConnectionFactory, read_view

log = logging.getLogger("rag.index")


class IndexMismatch(RagError):
    code = "index_mismatch"
    status = 500


@dataclass(frozen=True)
class Snapshot:
    """One collection's indexes at one change_seq, immutable: a search reads one from start to end."""

    seq: int
    dense: DenseIndex | None  # None until the collection has had vectors
    lexical: LexicalIndex
    ids: np.ndarray  # chunk ids, ascending (== lexical.ids == sorted dense ids)
    doc_ids: np.ndarray  # aligned with ids

    def document_of(self, chunk_ids: Sequence[int]) -> np.ndarray:
        pos = np.searchsorted(self.ids, np.asarray(chunk_ids, dtype=np.int64))
        return self.doc_ids[np.minimum(pos, len(self.ids) - 1)] if len(self.ids) else np.zeros(0, np.int64)


def sync_snapshot(
connect: ConnectionFactory, name: str, uid: str, base: Snapshot, analyzer: Analyzer, *,
dense_ids: np.ndarray | None = None, policy: IndexPolicy = EXACT,
) -> tuple[Snapshot, dict[str, Any]]:
    """A snapshot equal to SQLite's current state, reusing what `base` already holds.

    Reads SQLite in one read transaction (a consistent view), diffs the id sets and applies
    the difference: deleted ids are removed, missing ones added from stored vectors and
    cached terms (analysing the text where the cache lacks them). A dense index built from
    scratch gets the kind `policy` gives for its size."""
    info: dict[str, Any] = {"dense_rebuilt": False, "dense_changed": False, "terms_cached": 0, "terms_analyzed": 0}
    dense = base.dense
    lexical = base.lexical
    if dense_ids is None:
        dense_ids = base.ids if dense is not None else np.zeros(0, np.int64)
    to_analyze: list[tuple[int, str]] = []
    cached: store.CachedTerms | None = None
    with closing(connect()) as conn:
        with read_view(conn):
            state = store.index_state(conn, name)
            if state is None or state.uid != uid:
                raise NotFound(f"collection {name!r} does not exist", code="collection_not_found")
            seq, dim = state.change_seq, state.embed_dim
            ids, doc_ids = store.chunk_ids(conn, name)

            # dense
            if dim is None:
                if dense is not None and len(dense):
                    dense, info["dense_changed"] = None, True
            else:
                dim = int(dim)
                if dense is None or dense.dim != dim:
                    vecs = [b for b in store.iter_vectors(conn, name)]
                    dense = dense_from_batches(dim, vecs, policy)
                    info["dense_rebuilt"] = True
                else:
                    stale = np.setdiff1d(dense_ids, ids, assume_unique=True)
                    missing = np.setdiff1d(ids, dense_ids, assume_unique=True)
                    if len(stale):
                        dense = dense.removed(stale)
                    if len(missing):
                        add_ids, add_vecs = concat(dim, list(store.iter_vectors(conn, name, ids=missing)))
                        dense = dense.added(add_ids, add_vecs)
                    info["dense_changed"] = bool(len(stale) or len(missing))

            # lexical
            stale = np.setdiff1d(lexical.ids, ids, assume_unique=True)
            missing = np.setdiff1d(ids, lexical.ids, assume_unique=True)
            if len(stale):
                lexical = lexical.removed(stale)
            if len(missing):
                cached = store.load_chunk_terms(
                    conn, name, analyzer.id, ids=None if not len(lexical) else missing
                )
                to_analyze = cached.missing

        analyzed = [analyzer.term_counts(text) for _, text in to_analyze]
        if to_analyze:
            try:
                store.save_chunk_terms(
                    conn, analyzer.id, ((cid, tc.terms, tc.counts) for (cid, _), tc in zip(to_analyze, analyzed))
                )
            except sqlite3.Error as e:  # a cache: failing to write it costs only time at next start
                log.warning("collection %s: could not cache lexical terms: %s", name, e)
    if cached is not None and cached.ids:
        lexical = lexical.added_encoded(cached.ids, cached.terms, cached.counts)
        info["terms_cached"] = len(cached.ids)
    if to_analyze:
        lexical = lexical.added([cid for cid, _ in to_analyze], analyzed)
        info["terms_analyzed"] = len(to_analyze)

    snap = Snapshot(seq, dense, lexical, ids, doc_ids)
    verify(name, snap)
    return snap, info


def concat(dim: int, batches: list[store.VectorBatch]) -> tuple[np.ndarray, np.ndarray]:
    if not batches:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    ids = np.concatenate([b.ids for b in batches])
    vecs = np.concatenate([b.vectors for b in batches]) if len(batches) > 1 else batches[0].vectors
    if vecs.shape[1] != dim:
        raise IndexMismatch(f"stored vectors have dim {vecs.shape[1]}, the collection says {dim}")
    return ids, vecs


def dense_from_batches(dim: int, batches: list[store.VectorBatch], policy: IndexPolicy = EXACT) -> DenseIndex:
    ids, vecs = concat(dim, batches)
    return DenseIndex.build(dim, ids, vecs, policy)


def verify(name: str, snap: Snapshot) -> None:
    if not np.array_equal(snap.lexical.ids, snap.ids):
        raise IndexMismatch(f"collection {name}: lexical index ids differ from SQLite")
    if snap.dense is not None and not np.array_equal(snap.dense.ids(), snap.ids):
        raise IndexMismatch(f"collection {name}: dense index ids differ from SQLite (missing vectors?)")
    if snap.dense is None and len(snap.ids):
        raise IndexMismatch(f"collection {name}: chunks without an embedder dimension")
