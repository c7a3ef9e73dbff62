"""All candidates found so far for one question, fused across queries and deduplicated.

Each `Retriever.search` result (already a dense+BM25 RRF list) is one ranked list; the pool fuses the
lists of every query issued (the question and its rewrites) with reciprocal rank fusion,
score = sum over lists of 1 / (rrf_k + rank), so a chunk found by several queries rises. Chunks are
deduplicated by id, and a chunk whose text is identical (folded) to a better-ranked one is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from rag.ask.types import Candidate


@dataclass
class Pooled:
    candidate: Candidate  # with dense/bm25 best score and rank over all queries; fused_score = pool score
    rank: int  # 1-based in the pool
    queries: list[str] = field(default_factory=list)  # queries that returned it

    def to_dict(self) -> dict:
        c = self.candidate
        return {
            "rank": self.rank,
            "chunk_id": c.chunk_id,
            "document_id": c.document_id,
            "filename": c.filename,
            "page": c.page,
            "score": round(c.fused_score, 6),
            "dense_score": c.dense_score,
            "bm25_score": c.bm25_score,
            "queries": list(self.queries),
        }


class Pool:
    def __init__(self, rrf_k: int = 60):
        self.rrf_k = rrf_k
        self.lists: list[tuple[str, list[int]]] = []
        self._cands: dict[int, Candidate] = {}
        self._best: dict[int, dict] = {}
        self._score: dict[int, float] = {}
        self._queries: dict[int, list[str]] = {}
        self._first_seen: dict[int, int] = {}
        self.agreements: dict[str, list[int]] = {}  # query -> chunks in both retrievers' top-n

    def __len__(self) -> int:
        return len(self._cands)

    def add(self, query: str, results: list[Candidate], *, agree_top_n: int = 3) -> int:
        """Adds one query's ranked results; returns how many chunks were new to the pool."""
        ids: list[int] = []
        new = 0
        for c in results:
            if c.chunk_id in ids:
                continue
            ids.append(c.chunk_id)
            rank = len(ids)
            if c.chunk_id not in self._cands:
                new += 1
                self._cands[c.chunk_id] = c
                self._first_seen[c.chunk_id] = len(self._first_seen)
                self._best[c.chunk_id] = {"dense_score": None, "dense_rank": None, "bm25_score": None, "bm25_rank": None}
            b = self._best[c.chunk_id]
            for key, better in (("dense_score", max), ("bm25_score", max), ("dense_rank", min), ("bm25_rank", min)):
                v = getattr(c, key)
                if v is not None:
                    b[key] = v if b[key] is None else better(b[key], v)
            self._score[c.chunk_id] = self._score.get(c.chunk_id, 0.0) + 1.0 / (self.rrf_k + rank)
            self._queries.setdefault(c.chunk_id, []).append(query)
        self.lists.append((query, ids))
        self.agreements[query] = [
            c.chunk_id
            for c in results
            if c.dense_rank is not None and c.bm25_rank is not None and c.dense_rank <= agree_top_n and c.bm25_rank <= agree_top_n
        ]
        return new

    def ranked(self) -> tuple[list[Pooled], list[dict]]:
        """(pool best first, duplicates dropped as [{chunk_id, same_as}])."""
        from rag.text.fold import fold

        order = sorted(self._cands, key=lambda i: (-self._score[i], self._first_seen[i]))
        out: list[Pooled] = []
        seen_text: dict[str, int] = {}
        dups: list[dict] = []
        for cid in order:
            c = self._cands[cid]
            key = " ".join(fold(c.text).split())
            if key and key in seen_text:
                dups.append({"chunk_id": cid, "same_as": seen_text[key], "reason": "identical text"})
                continue
            seen_text[key] = cid
            pooled = replace(c, fused_score=self._score[cid], **self._best[cid])
            out.append(Pooled(pooled, len(out) + 1, list(self._queries[cid])))
        return out, dups

    def get(self, chunk_id: int) -> Candidate | None:
        return self._cands.get(chunk_id)
