"""Dense retrieval: inner product over L2-normalised vectors in a FAISS index keyed by chunk id.

Ids are SQLite chunk ids, so `remove_ids` makes deletes real. A `DenseIndex` is never mutated
once searches can see it: `added`/`removed` clone the FAISS index and return a new object, and
the caller swaps the reference (copy-on-write). Searches therefore need no lock, and saving to
disk reads an object nobody changes.

Which FAISS index a collection gets follows its size (`rag.index.faiss_kinds`, settings
`RAG_FAISS_INDEX`, `RAG_FAISS_APPROX_FROM`): exact `flat` below the threshold, approximate `ivf`
from it. On one OpenMP thread (the default set by `configure_threads`; two threads cost more than
they give for a single query on few cores) flat scans everything: ~46 ms at 200k x 384, ~235 ms
at 1M on the shared 2-core machine; IVF scans 256 cells: ~13 ms and ~24 ms, recall@10 0.94 and
0.92 (`rag.index.faiss_kinds` has the measurements). The kind changes:

* growing: the `added` call that brings a flat index to the threshold rebuilds it as IVF
  (k-means training and assigning every vector to a cell, under the collection's write lock, on
  one thread: a one-off pause of that upload, ~30 s at 200k, measured by `rag_bench.ann` as
  ivf_train_s + ivf_add_s);
* at start-up (`conformed`): a loaded or rebuilt index whose kind (or IVF cell count, beyond 2x:
  the collection grew or shrank 4x since training) does not fit the current size and setting is
  rebuilt from its own vectors. That is how a collection that shrank below the threshold returns
  to flat, how IVF cells follow growth, and how a changed setting applies;
* deletes never change the kind (no flapping at the threshold).

On disk (derived data, rebuildable from SQLite): `<dir>/dense-<seq:012d>-<crc32:08x>.faiss`.
`seq` is the collection change_seq the index includes and `crc32` the checksum of the file's
bytes. A file is written as a hidden temp file in the same folder, fsynced, renamed into place
(atomic), and the folder fsynced; only then are older files deleted. A name therefore always
describes complete contents: a crash leaves either the old or the new file (or both, and the
newest wins), never a half-written one under a final name. A truncated or bit-flipped file
fails the checksum and is rebuilt.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

from rag.index.faiss_kinds import (
    EXACT, HNSW_M, IndexPolicy, Kind, apply_search_defaults, contents, fits, kind_of, new_index, stored_ids,
)
from rag.store.files import atomic_writer

_FILE_RE = re.compile(r"^dense-(\d{12})-([0-9a-f]{8})\.faiss$")


class CorruptIndex(Exception):
    """A saved index file cannot be used (unreadable, wrong checksum, wrong type)."""


def configure_threads(n: int | None) -> None:
    """FAISS OpenMP threads for the process. 1 is fastest for one query at a time on few cores
    (concurrent requests give parallelism); None leaves FAISS's default."""
    if n is not None:
        faiss.omp_set_num_threads(int(n))


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Float32 C-contiguous copy with rows of unit L2 norm (zero rows stay zero)."""
    arr = np.array(vectors, dtype=np.float32, order="C", copy=True, ndmin=2)
    faiss.normalize_L2(arr)  # in place; rows of norm 0 are left as they are
    return arr


class DenseIndex:
    """Immutable wrapper of one collection's FAISS index (`policy` decides its kind by size)."""

    def __init__(self, index: faiss.Index, policy: IndexPolicy = EXACT):
        self.index = index
        self.dim = int(index.d)
        self.kind: Kind = kind_of(index)
        self.policy = policy

    @classmethod
    def empty(cls, dim: int, policy: IndexPolicy = EXACT) -> DenseIndex:
        return cls(new_index("flat", int(dim)), policy)

    @classmethod
    def build(cls, dim: int, ids: Iterable[int] | np.ndarray, vectors: np.ndarray,
              policy: IndexPolicy = EXACT) -> DenseIndex:
        """An index of the kind `policy` gives for this many vectors."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return cls.empty(dim, policy)
        return cls._of_kind(policy.kind_for(len(ids)), int(dim), ids, normalized(vectors), policy)

    @classmethod
    def _of_kind(cls, kind: Kind, dim: int, ids: np.ndarray, vecs: np.ndarray, policy: IndexPolicy) -> DenseIndex:
        if vecs.shape != (len(ids), dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {dim}), got {vecs.shape}")
        out = cls(new_index(kind, dim, vecs if kind == "ivf" else None), policy)
        out.index.add_with_ids(vecs, np.ascontiguousarray(ids, dtype=np.int64))
        return out

    def added(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> DenseIndex:
        """A new index with these vectors added (ids already present are skipped), rebuilt as
        another kind when the grown collection reaches the policy's threshold."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1) if len(ids) else vectors
        if self.ntotal and len(ids):
            fresh = ~np.isin(ids, self.ids())
            ids, vectors = ids[fresh], vectors[fresh]
        if not len(ids):
            return self
        vecs = normalized(vectors)
        if vecs.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vecs.shape}")
        kind = self.policy.kind_for(self.ntotal + len(ids))
        if kind != self.kind:  # crossing the threshold; IVF cells are retrained only at start-up
            old_ids, old_vecs = contents(self.index)
            return DenseIndex._of_kind(kind, self.dim, np.concatenate([old_ids, ids]),
                                       np.concatenate([old_vecs, vecs]), self.policy)
        out = DenseIndex(faiss.clone_index(self.index), self.policy)
        out.index.add_with_ids(vecs, ids)
        return out

    def removed(self, ids: Iterable[int]) -> DenseIndex:
        """A new index without these ids (absent ids are ignored). The kind stays: a collection
        shrinking below the threshold returns to flat at the next start (`conformed`)."""
        gone = np.fromiter((int(i) for i in ids), np.int64)
        if not len(gone) or not self.ntotal:
            return self
        gone = gone[np.isin(gone, self.ids())]
        if not len(gone):
            return self
        if self.kind == "hnsw":  # FAISS cannot remove graph nodes: rebuild from what remains
            old_ids, old_vecs = contents(self.index)
            keep = ~np.isin(old_ids, gone)
            return DenseIndex._of_kind("hnsw", self.dim, old_ids[keep], old_vecs[keep], self.policy)
        out = DenseIndex(faiss.clone_index(self.index), self.policy)
        out.index.remove_ids(faiss.IDSelectorBatch(gone))
        return out

    def conformed(self, policy: IndexPolicy | None = None) -> DenseIndex:
        """This index under `policy` (default its own), rebuilt from its own vectors if its kind or
        IVF cell count does not fit its size; itself when it fits. Called at start-up."""
        policy = policy or self.policy
        kind = policy.kind_for(self.ntotal)
        if fits(self.index, kind, self.ntotal):
            return self if policy == self.policy else DenseIndex(self.index, policy)
        ids, vecs = contents(self.index)
        if not len(ids):
            return DenseIndex.empty(self.dim, policy)
        return DenseIndex._of_kind(kind, self.dim, ids, vecs, policy)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    def ids(self) -> np.ndarray:
        """Chunk ids in the index, ascending (int64)."""
        if not self.ntotal:
            return np.zeros(0, np.int64)
        return np.sort(stored_ids(self.index))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top `k` (chunk id, cosine similarity), best first. Exact for flat; IVF and HNSW may
        miss some true neighbours (and IVF may return fewer than `k` on a tiny collection)."""
        if k <= 0 or not self.ntotal:
            return []
        q = normalized(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise ValueError(f"query vector has dim {q.shape[1]}, the index {self.dim}")
        scores, ids = self.index.search(q, min(int(k), self.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    @property
    def nbytes(self) -> int:
        """Approximate memory: vectors and ids, plus IVF centroids or HNSW links."""
        extra = 0
        if self.kind == "ivf":
            extra = int(self.index.nlist) * self.dim * 4
        elif self.kind == "hnsw":
            extra = self.ntotal * HNSW_M * 2 * 4
        return self.ntotal * (self.dim * 4 + 8) + extra

    # ---- persistence

    def save(self, directory: Path, seq: int) -> Path:
        """Writes the index atomically as `dense-<seq>-<crc>.faiss`, then deletes older files."""
        directory = Path(directory)
        crc = 0
        with atomic_writer(directory, "dense-") as pending:

            def write(buf: bytes) -> int:
                nonlocal crc
                crc = zlib.crc32(buf, crc)
                pending.file.write(buf)
                return len(buf)

            faiss.write_index(self.index, faiss.PyCallbackIOWriter(write))
            final = directory / f"dense-{int(seq):012d}-{crc & 0xFFFFFFFF:08x}.faiss"
            pending.commit(final)
        for old_seq, path in saved_files(directory):
            if path != final and old_seq <= seq:
                path.unlink(missing_ok=True)
        return final

    @classmethod
    def load(cls, path: Path, policy: IndexPolicy = EXACT) -> DenseIndex:
        """Loads a saved file of any kind, verifying its checksum; raises `CorruptIndex`. The kind
        is the file's: `conformed` converts it when it does not fit the policy."""
        m = _FILE_RE.match(Path(path).name)
        if not m:
            raise CorruptIndex(f"{path}: not a dense index file name")
        expected = int(m.group(2), 16)
        crc = 0
        try:
            with open(path, "rb") as f:

                def read(n: int) -> bytes:
                    nonlocal crc
                    buf = f.read(n)
                    crc = zlib.crc32(buf, crc)
                    return buf

                index = faiss.read_index(faiss.PyCallbackIOReader(read))
                rest = f.read(1)
        except (OSError, RuntimeError, MemoryError) as e:
            raise CorruptIndex(f"{path}: {str(e).splitlines()[0][:200]}") from e
        if rest or crc & 0xFFFFFFFF != expected:
            raise CorruptIndex(f"{path}: checksum mismatch")
        try:
            kind_of(index)
        except ValueError as e:
            raise CorruptIndex(f"{path}: {e}") from e
        apply_search_defaults(index)
        return cls(index, policy)


def saved_files(directory: Path) -> list[tuple[int, Path]]:
    """Saved dense index files in `directory`, newest (highest seq) first."""
    out = []
    try:
        entries = list(Path(directory).iterdir())
    except FileNotFoundError:
        return []
    for p in entries:
        m = _FILE_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    out.sort(key=lambda t: t[0], reverse=True)
    return out


def remove_temp_files(directory: Path) -> None:
    """Deletes temp files left by a save interrupted by a crash."""
    try:
        for p in Path(directory).iterdir():
            if p.name.startswith(".dense-") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
