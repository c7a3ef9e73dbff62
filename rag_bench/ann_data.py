"""Vectors for the ANN benchmark that look like real embeddings, at sizes no corpus here reaches.

Pure random unit vectors make every approximate index look bad: in 384 dimensions all pairwise
distances are nearly equal, so "nearest" is noise. Real embeddings are anisotropic and clustered.
So the benchmark starts from real text embedded with the real embedder (multilingual-e5-small):

* anchors: a few thousand paragraphs from Debian's documentation (`/usr/share/doc`: READMEs,
  NEWS, changelogs) and the project's samples, embedded as passages;
* base vectors: each is a random mixture of two anchors (weight t ~ U(0, 0.5) on the second)
  plus Gaussian noise with the anchors' own covariance (scaled by `noise`), renormalised, so the
  synthetic cloud follows the real data's principal directions instead of being isotropic. At
  noise 0.6 the mean pairwise cosine (0.82) matches the real anchors' (0.83). Optionally
  (`chunks_per_doc`) vectors come in groups around a document vector, as chunks do;
* queries: held-out paragraphs (never anchors) embedded as *queries* (the `query: ` prefix), the
  way a question reaches the index; their neighbours are therefore not copies of themselves.

The real embeddings are cached (`<cache>/ann-e5-real.npz`); nothing downloads: the model comes
from `RAG_MODEL_CACHE_DIR`.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DOC_ROOTS = (Path("/usr/share/doc"), Path(__file__).resolve().parents[1] / "data" / "samples")
MIN_CHARS, MAX_CHARS = 200, 1200


@dataclass(frozen=True)
class RealVectors:
    """Embedded anchors (passages) and held-out queries, L2-normalised float32."""

    anchors: np.ndarray
    queries: np.ndarray


def _read(path: Path) -> str:
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError):
        return ""
    return raw[:200_000].decode("utf-8", errors="ignore")


def paragraphs(limit: int, seed: int = 0) -> list[str]:
    """Distinct prose-like paragraphs of MIN..MAX characters, shuffled, at most `limit`."""
    files = [p for root in DOC_ROOTS if root.exists() for p in sorted(root.rglob("*"))
             if p.is_file() and not p.name.startswith("copyright") and p.suffix in ("", ".gz", ".md", ".txt")]
    seen: set[str] = set()
    out: list[str] = []
    for path in files:
        for block in _read(path).split("\n\n"):
            text = " ".join(block.split())
            letters = sum(c.isalpha() for c in text)
            if MIN_CHARS <= len(text) <= MAX_CHARS and letters > 0.6 * len(text) and text not in seen:
                seen.add(text)
                out.append(text)
    random.Random(seed).shuffle(out)
    return out[:limit]


def real_vectors(cache_dir: Path, n_anchors: int, n_queries: int) -> RealVectors:
    """Anchors and queries embedded with the real embedder, cached in `cache_dir`."""
    path = Path(cache_dir) / f"ann-e5-real-{n_anchors}-{n_queries}.npz"
    if path.exists():
        data = np.load(path)
        return RealVectors(data["anchors"], data["queries"])
    from rag.models.loader import load_embedder
    from rag.settings import Settings

    texts = paragraphs(n_anchors + n_queries)
    if len(texts) < n_anchors + n_queries:
        raise RuntimeError(f"only {len(texts)} paragraphs found, {n_anchors + n_queries} needed")
    embedder, _ = load_embedder(Settings(), prepare=False)
    anchors = np.asarray(embedder.embed_passages(texts[:n_anchors]), np.float32)
    queries = np.asarray(embedder.embed_queries(texts[n_anchors:]), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, anchors=anchors, queries=queries)
    return RealVectors(anchors, queries)


def synthetic_base(anchors: np.ndarray, n: int, *, noise: float = 0.6, chunks_per_doc: int = 1,
                   chunk_noise: float = 0.3, seed: int = 1, batch: int = 100_000) -> np.ndarray:
    """`n` unit vectors: mixtures of two anchors plus noise shaped like the anchors' covariance.

    With `chunks_per_doc` > 1, each such vector is a document and its chunks scatter around it
    with `chunk_noise` (chunks of one document are each other's near neighbours, as in a real
    collection); with 1, every vector is independent (harder for an approximate index)."""
    rng = np.random.default_rng(seed)
    mean = anchors.mean(axis=0)
    _, s, vt = np.linalg.svd(anchors - mean, full_matrices=False)
    shape = (s[:, None] / np.sqrt(len(anchors))) * vt  # z @ shape ~ N(0, covariance)
    out = np.empty((n, anchors.shape[1]), np.float32)
    for lo in range(0, n, batch):
        m = min(batch, n - lo)
        docs = -(-m // chunks_per_doc)
        a = anchors[rng.integers(0, len(anchors), docs)]
        b = anchors[rng.integers(0, len(anchors), docs)]
        t = rng.uniform(0.0, 0.5, (docs, 1)).astype(np.float32)
        z = rng.standard_normal((docs, len(s))).astype(np.float32)
        v = np.repeat((1 - t) * a + t * b + noise * (z @ shape), chunks_per_doc, axis=0)[:m]
        if chunks_per_doc > 1:
            v += chunk_noise * (rng.standard_normal((m, len(s))).astype(np.float32) @ shape)
        out[lo:lo + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out
