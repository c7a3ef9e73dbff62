"""Rank fusion of several ranked lists (dense, BM25, ...)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

RRF_K = 60


def fuse_rrf(
    lists: Sequence[Sequence[T]],
    k: float = RRF_K,
    weights: Sequence[float] | None = None,
    scores: Sequence[Sequence[float]] | None = None,
) -> list[tuple[T, float]]:
    """Reciprocal rank fusion (Cormack et al. 2009): score(d) = sum_i w_i / (k + rank_i(d)).

    `lists` are ranked ids, best first; ranks are 1-based; an id repeated within one list counts
    at its first (best) position only; an id absent from a list gets nothing from it.
    Returns (id, score) for every id, best first. Equal fused scores are common (ranks 1 and 2
    swapped between two lists); with `scores` (each list's own scores, parallel to it) such ties
    go to the id whose scores are closer to each list's best (sum of score / top score), so a
    clear win in one list beats a near-tie in the other. Remaining ties: the best rank the id has
    in any list, then the order ids were first seen (list 0 first), so the result is deterministic.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    if weights is None:
        weights = [1.0] * len(lists)
    elif len(weights) != len(lists):
        raise ValueError("one weight per list")
    if scores is not None and (len(scores) != len(lists) or any(len(a) != len(b) for a, b in zip(scores, lists))):
        raise ValueError("scores must be parallel to lists")
    score: dict[T, float] = {}
    relative: dict[T, float] = {}
    best: dict[T, int] = {}
    first: dict[T, int] = {}
    for i, (ranked, w) in enumerate(zip(lists, weights)):
        seen: set[T] = set()
        top = max(scores[i], default=0.0) if scores is not None else 0.0
        for rank, item in enumerate(ranked, start=1):
            if item in seen:
                continue
            seen.add(item)
            score[item] = score.get(item, 0.0) + w / (k + rank)
            if top > 0:
                relative[item] = relative.get(item, 0.0) + scores[i][rank - 1] / top
            if rank < best.get(item, rank + 1):
                best[item] = rank
            first.setdefault(item, len(first))
    return sorted(score.items(), key=lambda t: (-round(t[1], 12), -relative.get(t[0], 0.0), best[t[0]], first[t[0]]))


@dataclass(frozen=True)
class Hit:
    """One ranked chunk. `score` is the fused RRF score for a hybrid search, and the dense or BM25
    score itself for a dense-only / lexical-only search. Ranks are 1-based; None when the chunk
    was not in that list."""

    chunk_id: int
    document_id: int
    score: float
    dense_score: float | None = None
    dense_rank: int | None = None
    bm25_score: float | None = None
    bm25_rank: int | None = None


def hybrid_hits(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], k: int, rrf_k: float,
                document_of: Callable[[list[int]], Sequence[int]]) -> list[Hit]:
    """The best `k` of two ranked (chunk id, score) lists fused by RRF, each hit with both lists'
    rank and score. Both stores (FAISS + bm25s, Postgres) rank through this one function."""
    fused = fuse_rrf([[c for c, _ in dense], [c for c, _ in lexical]], k=rrf_k,
                     scores=[[x for _, x in dense], [x for _, x in lexical]])[:k]
    d_info = {c: (s, r) for r, (c, s) in enumerate(dense, start=1)}
    l_info = {c: (s, r) for r, (c, s) in enumerate(lexical, start=1)}
    docs = document_of([c for c, _ in fused])
    hits = []
    for (c, score), doc in zip(fused, docs):
        ds, dr = d_info.get(c, (None, None))
        ls, lr = l_info.get(c, (None, None))
        hits.append(Hit(c, int(doc), score, ds, dr, ls, lr))
    return hits
