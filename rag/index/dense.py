"""Dense retrieval: exact inner product over L2-normalised vectors, FAISS `IndexIDMap2(IndexFlatIP)`.

Ids are SQLite chunk ids, so `remove_ids` makes deletes real. A `DenseIndex` is never mutated
once searches can see it: `added`/`removed` clone the FAISS index and return a new object, and
the caller swaps the reference (copy-on-write). Searches therefore need no lock, and saving to
disk reads an object nobody changes.

Why exact Flat and not HNSW: measured on this project's 2-core reference machine, a single
query over 100k x 384 takes ~9 ms with FAISS limited to one OpenMP thread (the default set by
`configure_threads`), versus ~50-60 ms with two threads (OpenMP overhead for a single query),
and HNSW takes ~1 minute to build at 100k and cannot delete. See `rag.bench.search` for numbers.

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
    """Immutable wrapper of one collection's FAISS index."""

    def __init__(self, index: faiss.IndexIDMap2):
        self.index = index
        self.dim = int(index.d)

    @classmethod
    def empty(cls, dim: int) -> DenseIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(int(dim))))

    @classmethod
    def build(cls, dim: int, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> DenseIndex:
        out = cls.empty(dim)
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids):
            out._add_in_place(ids, vectors)
        return out

    def _add_in_place(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vecs = normalized(vectors)
        if vecs.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vecs.shape}")
        self.index.add_with_ids(vecs, np.ascontiguousarray(ids, dtype=np.int64))

    def added(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> DenseIndex:
        """A new index with these vectors added (ids already present are skipped)."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1) if len(ids) else vectors
        if self.ntotal and len(ids):
            fresh = ~np.isin(ids, self.ids())
            ids, vectors = ids[fresh], vectors[fresh]
        if not len(ids):
            return self
        out = DenseIndex(faiss.clone_index(self.index)) if self.ntotal else DenseIndex.empty(self.dim)
        out._add_in_place(ids, vectors)
        return out

    def removed(self, ids: Iterable[int]) -> DenseIndex:
        """A new index without these ids (absent ids are ignored)."""
        gone = np.fromiter((int(i) for i in ids), np.int64)
        if not len(gone) or not self.ntotal:
            return self
        gone = gone[np.isin(gone, self.ids())]
        if not len(gone):
            return self
        out = DenseIndex(faiss.clone_index(self.index))
        out.index.remove_ids(faiss.IDSelectorBatch(gone))
        return out

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    def ids(self) -> np.ndarray:
        """Chunk ids in the index, ascending (int64)."""
        if not self.ntotal:
            return np.zeros(0, np.int64)
        return np.sort(faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top `k` (chunk id, cosine similarity), best first."""
        if k <= 0 or not self.ntotal:
            return []
        q = normalized(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise ValueError(f"query vector has dim {q.shape[1]}, the index {self.dim}")
        scores, ids = self.index.search(q, min(int(k), self.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    @property
    def nbytes(self) -> int:
        return self.ntotal * (self.dim * 4 + 8)

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
    def load(cls, path: Path) -> DenseIndex:
        """Loads a saved file, verifying its checksum; raises `CorruptIndex`."""
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
        if not isinstance(index, faiss.IndexIDMap2):
            raise CorruptIndex(f"{path}: unexpected index type {type(index).__name__}")
        return cls(index)


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
