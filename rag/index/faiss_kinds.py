"""Which FAISS index a collection gets for its size, how each kind is built, and how to read it back.

Three kinds, all over L2-normalised vectors with inner product (= cosine), all keyed by chunk id:

* `flat`: `IndexIDMap2(IndexFlatIP)`, exact. Scores and ranks are the reference.
* `ivf`: `IndexIVFFlat` (inverted lists over k-means cells, full vectors kept), approximate: a
  query scans the `nprobe` cells nearest to it. It stores chunk ids itself (no id map), so
  `remove_ids` deletes for real, and adding vectors needs no retraining: a new vector joins the
  cell of its nearest centroid. The cells are trained once, when the index is built.
* `hnsw`: `IndexIDMap2(IndexHNSWFlat)`, approximate, graph-based. FAISS cannot remove a node from
  an HNSW graph, so a delete rebuilds the graph from the remaining vectors (`DenseIndex.removed`):
  correct, but a minute or more per delete at 100k+ on two cores. Offered only on request.

`auto` is `flat` below `approx_from` chunks and `ivf` from there. Measured with
`python -m rag_bench.ann` (2 shared cores, one FAISS thread, 384-d vectors shaped like
multilingual-e5-small embeddings, 300 real queries; recall@10 against exact search):

    n       flat p50   ivf nprobe=256 p50 / recall   hnsw M=32 ef=256    ivf train+add (1 thread)
    100k*    29 ms     13 ms / 0.96                  1.2 ms / 0.99       11 + 1.5 s
    200k     46 ms     13 ms / 0.94                  (not built)         27 + 4.6 s
    1M      235 ms     24 ms / 0.92                  (not built)         87 + 28 s
    (* vectors in groups of 10 around a document vector; 200k and 1M: every vector independent.
     At 100k independent: ivf nprobe=64 0.82 in 1.9 ms, hnsw ef=128 0.92 in 1.1 ms.)

HNSW has the better recall per millisecond, but building it took ~60-80 s at 100k on one thread
(about 10x that at 1M) and it cannot delete: every document deletion would rebuild the graph.
IVF keeps real deletes, adds without retraining, and converts a 200k collection in ~30 s. nprobe
128 halves IVF's latency for recall 0.87-0.88; 256 is the default for recall >= 0.9. These
synthetic vectors are a hard case (a query's 1st and 10th neighbours differ by ~0.01 in cosine);
real collections were not measured at these sizes (no corpus here is that large).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

Kind = Literal["flat", "ivf", "hnsw"]
Setting = Literal["auto", "flat", "ivf", "hnsw"]

AUTO_APPROX: Kind = "ivf"  # what `auto` uses from `approx_from` chunks
MIN_APPROX = 1_000  # below this, any setting gets flat: too few vectors to train cells, and flat is instant
IVF_CELLS_PER_SQRT = 4.0  # nlist = 4 * sqrt(n), as txtai does
IVF_MIN_PER_CELL = 39  # FAISS's k-means wants at least 39 training points per centroid
IVF_TRAIN_PER_CELL = 64  # training sample per centroid (FAISS's default is 256): 4x less k-means work
IVF_TRAIN_ITERATIONS = 10
IVF_NPROBE = 256  # of 1265 cells at 100k, 1789 at 200k, 4000 at 1M: recall@10 0.96 / 0.94 / 0.92
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256  # recall@10 0.99 at 100k (128: 0.92-0.97)


@dataclass(frozen=True)
class IndexPolicy:
    """The index kind a collection of `n` vectors should have (`RAG_FAISS_INDEX`, `RAG_FAISS_APPROX_FROM`)."""

    setting: Setting = "flat"
    approx_from: int = 200_000

    def kind_for(self, n: int) -> Kind:
        if self.setting == "flat" or n < MIN_APPROX:
            return "flat"
        if self.setting == "auto":
            return AUTO_APPROX if n >= self.approx_from else "flat"
        return self.setting


EXACT = IndexPolicy()


def ivf_nlist(n: int) -> int:
    """Cells for `n` vectors: 4 * sqrt(n), but never fewer than 39 training points per cell."""
    return max(1, min(round(IVF_CELLS_PER_SQRT * math.sqrt(n)), n // IVF_MIN_PER_CELL))


def new_index(kind: Kind, dim: int, train: np.ndarray | None = None, *, nlist: int | None = None,
              seed: int = 1234) -> faiss.Index:
    """An empty index of `kind`; `ivf` is trained on `train` (normalised vectors) first."""
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        return faiss.IndexIDMap2(hnsw)
    if train is None or not len(train):
        raise ValueError("an IVF index needs training vectors")
    nlist = nlist or ivf_nlist(len(train))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = IVF_TRAIN_ITERATIONS
    ivf.cp.seed = seed
    sample = IVF_TRAIN_PER_CELL * nlist
    if len(train) > sample:
        train = train[np.random.default_rng(seed).choice(len(train), sample, replace=False)]
    ivf.cp.max_points_per_centroid = IVF_TRAIN_PER_CELL
    ivf.train(np.ascontiguousarray(train, dtype=np.float32))
    ivf.nprobe = IVF_NPROBE
    return ivf


def kind_of(index: faiss.Index) -> Kind:
    """The kind of a built or loaded index; ValueError for anything this project does not write."""
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexFlatIP):
            return "flat"
        if isinstance(inner, faiss.IndexHNSWFlat):
            return "hnsw"
    raise ValueError(f"unexpected index type {type(index).__name__}")


def apply_search_defaults(index: faiss.Index) -> None:
    """Search parameters are this version's defaults, whatever the saved file carried."""
    kind = kind_of(index)
    if kind == "ivf":
        index.nprobe = min(IVF_NPROBE, index.nlist)
    elif kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH


def fits(index: faiss.Index, kind: Kind, n: int) -> bool:
    """Whether `index` is of `kind` with parameters fit for `n` vectors (IVF: cells within 2x of ideal)."""
    if kind_of(index) != kind:
        return False
    if kind == "ivf":
        return 0.5 <= index.nlist / ivf_nlist(n) <= 2.0
    return True


def stored_ids(index: faiss.Index) -> np.ndarray:
    """Every id in the index, unsorted (int64)."""
    if kind_of(index) != "ivf":
        return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    lists = index.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(c), lists.list_size(c)).copy()
             for c in range(index.nlist) if lists.list_size(c)]
    return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64)


def contents(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of everything stored, aligned: what a conversion to another kind starts from."""
    dim = int(index.d)
    if kind_of(index) == "ivf":
        lists = index.invlists
        ids, vecs = [], []
        for c in range(index.nlist):
            size = lists.list_size(c)
            if size:
                ids.append(faiss.rev_swig_ptr(lists.get_ids(c), size).copy())
                codes = faiss.rev_swig_ptr(lists.get_codes(c), size * dim * 4)
                vecs.append(np.frombuffer(codes.tobytes(), np.float32).reshape(size, dim))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        return np.concatenate(ids).astype(np.int64), np.concatenate(vecs)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    inner = faiss.downcast_index(index.index)
    storage = inner if isinstance(inner, faiss.IndexFlatIP) else faiss.downcast_index(inner.storage)
    return ids, storage.reconstruct_n(0, int(storage.ntotal))
