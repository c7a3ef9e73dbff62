"""`rag bench ingest`: end-to-end ingestion throughput against the raw embedder, plus search latency.

The raw rate is measured on the very texts the pipeline embedded (its chunks, or their sub-chunk
windows: `rag.index.windows`), embedded again in the same length-sorted batches, so the ratio
isolates what parsing, chunking, BM25, FAISS and SQLite add.
"""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rag.settings import Settings

DEFAULT_DOCS = (
    Path("/usr/share/debian-reference/debian-reference.en.pdf"),
    Path("/usr/share/debian-reference/debian-reference.zh-cn.pdf"),
)


@dataclass
class IngestBench:
    documents: int
    pages: int
    chunks: int
    tokens: int
    seconds: float
    parse_s: float
    chunk_s: float
    embed_s: float
    store_s: float
    raw_embed_s: float
    peak_rss_mb: float
    peak_child_rss_mb: float
    faiss_bytes_per_1k: int
    sqlite_bytes_per_1k: int

    @property
    def rates(self) -> dict:
        return {
            "pages_per_s": self.pages / self.seconds,
            "chunks_per_s": self.chunks / self.seconds,
            "raw_embed_chunks_per_s": self.chunks / self.raw_embed_s,
            "raw_embed_tokens_per_s": self.tokens / self.raw_embed_s,
            "share_in_embedding": self.embed_s / self.seconds,
            "vs_raw_embedder": (self.chunks / self.seconds) / (self.chunks / self.raw_embed_s),
        }


def bench_ingest(settings: Settings, docs: list[Path]) -> IngestBench:
    from ingest.uploads import Upload
    from rag.service.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="rag-bench-ingest-") as tmp:
        s = settings.model_copy(update={"data_dir": Path(tmp), "load_generator": False,
                                        "model_cache_dir": settings.models_dir})
        rt = Runtime(s)
        rt.start(worker=False)
        totals = dict(pages=0, chunks=0, tokens=0, parse_s=0.0, chunk_s=0.0, embed_s=0.0, store_s=0.0)
        t0 = time.monotonic()
        for path in docs:
            (job,) = rt.ingest.submit("default", [Upload(path.name, path.read_bytes())])
            out = rt.ingest.run_job(job.id)
            if out is None:
                raise RuntimeError(f"{path}: {rt.ingest.get_job(job.id).error_message}")
            totals["pages"] += out.pages
            totals["chunks"] += out.chunks
            totals["tokens"] += out.tokens
            for k, v in out.times.as_dict().items():
                totals[k] += v
        seconds = time.monotonic() - t0
        chunks = [c for d in rt.collections.list_documents("default") for c in rt.collections.list_chunks("default", d.id)]
        pieces = [c.text[a:b] for c in chunks for a, b in rt.ingest.pipeline.windows_of(c)]
        texts = sorted(pieces, key=len)  # the texts the pipeline embedded, in its length-sorted batching
        t1 = time.monotonic()
        for i in range(0, len(texts), s.embed_batch_size):
            rt.embedder.embed_passages(texts[i:i + s.embed_batch_size])
        raw = time.monotonic() - t1
        rt.index.flush()
        faiss_bytes = sum(p.stat().st_size for p in s.index_dir.rglob("*.faiss"))
        sqlite_bytes = sum(p.stat().st_size for p in s.data_dir.glob("rag.sqlite3*"))
        rt.close()
    n = max(1, totals["chunks"])
    return IngestBench(
        documents=len(docs), seconds=seconds, raw_embed_s=raw,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_child_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        faiss_bytes_per_1k=int(faiss_bytes / n * 1000), sqlite_bytes_per_1k=int(sqlite_bytes / n * 1000),
        **totals,
    )


def report(b: IngestBench, search: dict[int, dict]) -> str:
    r = b.rates
    lines = [
        f"documents {b.documents} · pages {b.pages} · chunks {b.chunks} · tokens {b.tokens:,} · {b.seconds:.1f} s",
        f"pages/s {r['pages_per_s']:.2f} · chunks/s {r['chunks_per_s']:.2f} · raw embedder chunks/s "
        f"{r['raw_embed_chunks_per_s']:.2f} ({r['raw_embed_tokens_per_s']:,.0f} tokens/s)",
        f"end-to-end vs raw embedder: {r['vs_raw_embedder']:.0%} · share of time in embedding {r['share_in_embedding']:.0%}",
        f"stages: parse {b.parse_s:.1f} s · chunk {b.chunk_s:.1f} s · embed {b.embed_s:.1f} s · store+index {b.store_s:.1f} s",
        f"peak RSS {b.peak_rss_mb:.0f} MB (PDF worker {b.peak_child_rss_mb:.0f} MB) · bytes per 1,000 chunks: "
        f"FAISS {b.faiss_bytes_per_1k:,} · SQLite {b.sqlite_bytes_per_1k:,}",
    ]
    for n, res in search.items():
        lat = res["latency_ms"]
        lines.append(f"search at {n:,} chunks: dense p50 {lat['dense']['p50']} / p99 {lat['dense']['p99']} ms · "
                     f"bm25 p50 {lat['bm25']['p50']} / p99 {lat['bm25']['p99']} ms · hybrid p50 {lat['hybrid']['p50']} / "
                     f"p99 {lat['hybrid']['p99']} ms")
    return "\n".join(lines)
