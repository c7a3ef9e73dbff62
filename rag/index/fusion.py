"""Rank fusion of several ranked lists (dense, BM25, ...)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

RRF_K = 60


def fuse_rrf(
    lists: Sequence[Sequence[T]],
    k: float = RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[T, float]]:
    """Reciprocal rank fusion (Cormack et al. 2009): score(d) = sum_i w_i / (k + rank_i(d)).

    `lists` are ranked ids, best first; ranks are 1-based; an id repeated within one list counts
    at its first (best) position only; an id absent from a list gets nothing from it.
    Returns (id, score) for every id, best first. Ties are broken by the best rank the id has in
    any list, then by the order ids were first seen (list 0 first), so the result is
    deterministic.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    if weights is None:
        weights = [1.0] * len(lists)
    elif len(weights) != len(lists):
        raise ValueError("one weight per list")
    score: dict[T, float] = {}
    best: dict[T, int] = {}
    first: dict[T, int] = {}
    for ranked, w in zip(lists, weights):
        seen: set[T] = set()
        for rank, item in enumerate(ranked, start=1):
            if item in seen:
                continue
            seen.add(item)
            score[item] = score.get(item, 0.0) + w / (k + rank)
            if rank < best.get(item, rank + 1):
                best[item] = rank
            first.setdefault(item, len(first))
    return sorted(score.items(), key=lambda t: (-t[1], best[t[0]], first[t[0]]))
