"""Sub-chunk windows: a chunk scored by its best part as well as by its whole.

A 256-token chunk of a FAQ or a manual often holds the end of one topic and the start of the
next; one vector for the whole blurs both. Chunks longer than `window_tokens` are therefore
embedded as windows (sentence-aware, from the chunker itself), at no extra embedding cost: the
chunk's own vector is the length-weighted mean of its windows' vectors (renormalised), and its
dense score at search time is

    WHOLE_WEIGHT * cos(query, chunk) + (1 - WHOLE_WEIGHT) * max over windows cos(query, window)

computed for the dense candidates only (their windows are read from SQLite), so FAISS still holds
one vector per chunk. On the Debian FAQ with headings removed this raised dense recall@5 from 0.66
to 0.71 (mean of en>en, zh>zh, en>zh, zh>en), as shipped from 0.81 to 0.83.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


WHOLE_WEIGHT = 0.5


def pooled(vectors: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """The chunk's vector: its windows' vectors weighted by their length in characters, renormalised."""
    weights = np.asarray([max(1, e - s) for s, e in spans], dtype=np.float32)
    v = (np.asarray(vectors, dtype=np.float32) * weights[:, None]).sum(axis=0)
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype(np.float32)


def rescore(
    query: np.ndarray, dense: Sequence[tuple[int, float]], windows: Mapping[int, np.ndarray]
) -> list[tuple[int, float]]:
    """`dense` ((chunk id, cosine) best first) re-ranked by the whole/best-window mix; a chunk
    without windows keeps its cosine (its only window is itself). Ties keep the FAISS order."""
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    out = []
    for i, (cid, score) in enumerate(dense):
        w = windows.get(cid)
        best = float(np.max(w @ q)) if w is not None and len(w) else float(score)
        out.append((i, cid, WHOLE_WEIGHT * float(score) + (1.0 - WHOLE_WEIGHT) * best))
    out.sort(key=lambda t: (-t[2], t[0]))
    return [(cid, s) for _, cid, s in out]
