"""Search benchmark: synthetic collections of n chunks (random unit vectors, mixed Chinese/English text).

`bench_search(n)` builds a collection in a temporary data dir through the real store and index
code and measures:

* `latency_ms`: p50/p99 over 200 queries of `dense_search` (k=10), `lexical_search` (k=10) and
  hybrid `search` (k=10: dense top 50 + BM25 top 50, RRF);
* `build_s`: storing the chunks in SQLite (`store`, one transaction per 50-chunk document),
  start-up with no index file (`open_rebuild`: FAISS from stored vectors + BM25 from cached
  terms), start-up with a saved index (`open_loaded`), saving the FAISS file (`save`: write,
  fsync, rename; done in the background in service), adding a 20-chunk document to the full
  collection (`add_document`: SQLite commit + FAISS clone + BM25 rebuild, save excluded) and
  deleting one (`delete_document`); `analyze_ms_per_chunk` is jieba+OpenCC+tokenising per
  chunk (only paid at ingestion; start-up reads cached terms);
* `bytes_per_1k_chunks`: FAISS file and SQLite growth (text, vectors, cached terms) per 1,000
  chunks, plus in-memory sizes.

Text is built from 20,000 sentences (Chinese words drawn from jieba's dictionary by frequency,
English-like words from a Zipf vocabulary); each chunk joins 8 random sentences (~250 tokens).
Sentences end with punctuation, so a chunk's terms are exactly the sum of its sentences' terms
(each sentence is analysed once, which keeps a 100k build fast).

    python -m rag_bench.search 10000 100000
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

DIM = 384
DOC_CHUNKS = 50
SENTENCES_PER_CHUNK = 8
N_SENTENCES = 20_000
N_QUERIES = 200
MODEL = "bench-random"


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1000
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p99": round(float(np.percentile(arr, 99)), 3)}


def _vocabularies(rng: np.random.Generator) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    import jieba

    from rag.index.lexical import get_analyzer

    get_analyzer().warm_up()  # initialises jieba quietly
    words = [(w, f) for w, f in jieba.dt.FREQ.items() if f > 0 and 2 <= len(w) <= 4]
    words.sort(key=lambda t: -t[1])
    words = words[:60_000]
    zh = [w for w, _ in words]
    zh_p = np.asarray([f for _, f in words], dtype=np.float64) ** 0.8
    zh_p /= zh_p.sum()
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    en = sorted({"".join(rng.choice(letters, size=int(rng.integers(3, 10)))) for _ in range(30_000)})
    rng.shuffle(en)
    en_p = 1.0 / np.arange(1, len(en) + 1) ** 1.05
    en_p /= en_p.sum()
    return zh, zh_p, en, en_p


def _sentences(rng: np.random.Generator, zh, zh_p, en, en_p) -> tuple[list[str], list[Counter]]:
    from rag.index.lexical import get_analyzer

    analyzer = get_analyzer()
    texts, counts = [], []
    for _ in range(N_SENTENCES):
        if rng.random() < 0.6:
            n = int(rng.integers(8, 20))
            s = "".join(zh[i] for i in rng.choice(len(zh), size=n, p=zh_p))
            if rng.random() < 0.3:  # mixed sentence
                s += " " + " ".join(en[i] for i in rng.choice(len(en), size=3, p=en_p))
            s += "。"
        else:
            n = int(rng.integers(8, 24))
            s = " ".join(en[i] for i in rng.choice(len(en), size=n, p=en_p)).capitalize() + ". "
        texts.append(s)
        counts.append(Counter(analyzer.analyze(s)))
    return texts, counts


def bench_search(n_chunks: int, *, seed: int = 0, workdir: str | Path | None = None) -> dict:
    """Builds an n-chunk collection and measures search latency, build times and sizes."""
    from ingest.types import ChunkDraft
    from rag.index import IndexManager
    from rag.index.dense import saved_files
    from rag.index.lexical import TermCounts, get_analyzer
    from rag.store import connect, open_db
    from rag import store

    rng = np.random.default_rng(seed)
    t_corpus = time.perf_counter()
    zh, zh_p, en, en_p = _vocabularies(rng)
    sent_texts, sent_counts = _sentences(rng, zh, zh_p, en, en_p)
    corpus_s = time.perf_counter() - t_corpus

    tmp = tempfile.TemporaryDirectory(prefix="rag-bench-search-", dir=workdir)
    root = Path(tmp.name)
    db_path, index_dir = root / "rag.sqlite3", root / "indexes"
    result: dict = {
        "n_chunks": n_chunks,
        "dim": DIM,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version},
        "corpus_prep_s": round(corpus_s, 2),
    }
    try:
        conn = open_db(db_path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size0 = _db_bytes(db_path)
        analyzer = get_analyzer()

        # analysis cost on real chunk texts (what ingestion pays per chunk)
        sample = [
            "".join(sent_texts[i] for i in rng.integers(0, N_SENTENCES, SENTENCES_PER_CHUNK)) for _ in range(300)
        ]
        t = time.perf_counter()
        for text in sample:
            analyzer.term_counts(text)
        result["analyze_ms_per_chunk"] = round((time.perf_counter() - t) / len(sample) * 1000, 3)
        result["chunk_chars_avg"] = round(float(np.mean([len(s) for s in sample])), 1)

        # store n chunks: one transaction per 50-chunk document
        t_store = 0.0
        made = 0
        doc_no = 0
        tokens = []
        while made < n_chunks:
            n = min(DOC_CHUNKS, n_chunks - made)
            drafts, terms = [], []
            for j in range(n):
                pick = rng.integers(0, N_SENTENCES, SENTENCES_PER_CHUNK)
                text = "".join(sent_texts[i] for i in pick)
                c: Counter = Counter()
                for i in pick:
                    c.update(sent_counts[i])
                drafts.append(ChunkDraft(ordinal=j, text=text, char_start=0, char_end=len(text), token_count=len(text)))
                terms.append(TermCounts(tuple(c), np.fromiter(c.values(), np.int32, len(c))))
                tokens.append(sum(c.values()))
            vecs = rng.standard_normal((n, DIM), dtype=np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            meta = store.NewDocument(
                filename=f"doc{doc_no}.txt", format="text",
                sha256=hashlib.sha256(f"{seed}-{doc_no}".encode()).hexdigest(), size_bytes=1,
            )
            t = time.perf_counter()
            store.add_document(conn, "default", meta, drafts, vecs, embed_model=MODEL, terms=terms, analyzer=analyzer.id)
            t_store += time.perf_counter() - t
            made += n
            doc_no += 1
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size1 = _db_bytes(db_path)
        result["terms_per_chunk_avg"] = round(float(np.mean(tokens)), 1)

        def manager() -> IndexManager:
            # saves debounced as in service (not inside the timed calls); close() flushes
            return IndexManager(index_dir, lambda: connect(db_path), autosave_delay_s=3600)

        m = manager()
        t = time.perf_counter()
        (report,) = m.open()
        open_rebuild = time.perf_counter() - t
        assert report.dense == "rebuilt", report
        m.close()
        uid = store.get_collection(conn, "default").uid
        ((_, faiss_file),) = saved_files(index_dir / uid)
        faiss_bytes = faiss_file.stat().st_size
        # saving cost, measured on its own
        col = m._collection("default")
        t = time.perf_counter()
        col.snapshot.dense.save(col.dir, col.snapshot.seq)
        save_s = time.perf_counter() - t

        m = manager()
        t = time.perf_counter()
        (report,) = m.open()
        open_loaded = time.perf_counter() - t
        assert report.dense == "loaded", report
        stats = m.stats("default")

        # queries: a stored-like vector (random unit) and 2-4 words from the vocabularies
        qvecs = rng.standard_normal((N_QUERIES, DIM), dtype=np.float32)
        qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
        qtexts = []
        for _ in range(N_QUERIES):
            k = int(rng.integers(2, 5))
            if rng.random() < 0.5:
                qtexts.append("".join(zh[i] for i in rng.choice(len(zh), size=k, p=zh_p)))
            else:
                qtexts.append(" ".join(en[i] for i in rng.choice(len(en), size=k, p=en_p)))
        for q, text in zip(qvecs[:10], qtexts[:10]):  # warm-up
            m.search("default", q, text, k=10)
        lat: dict[str, list[float]] = {"dense": [], "bm25": [], "hybrid": []}
        lex_hits = []
        for q, text in zip(qvecs, qtexts):
            t = time.perf_counter()
            m.dense_search("default", q, 10)
            lat["dense"].append(time.perf_counter() - t)
            t = time.perf_counter()
            lex_hits.append(len(m.lexical_search("default", text, 10)))
            lat["bm25"].append(time.perf_counter() - t)
            t = time.perf_counter()
            m.search("default", q, text, 10)
            lat["hybrid"].append(time.perf_counter() - t)
        result["latency_ms"] = {k: _percentiles(v) for k, v in lat.items()}
        result["bm25_queries_with_hits"] = round(float(np.mean(np.asarray(lex_hits) > 0)), 3)

        # one more document into the full collection, then delete it
        drafts = []
        for j in range(20):
            text = "".join(sent_texts[i] for i in rng.integers(0, N_SENTENCES, SENTENCES_PER_CHUNK))
            drafts.append(ChunkDraft(ordinal=j, text=text, char_start=0, char_end=len(text), token_count=len(text)))
        vecs = rng.standard_normal((20, DIM), dtype=np.float32)
        meta = store.NewDocument(filename="extra.txt", format="text",
                                sha256=hashlib.sha256(b"extra").hexdigest(), size_bytes=1)
        t = time.perf_counter()
        added = m.add_document(conn, "default", meta, drafts, vecs, embed_model=MODEL)
        add_s = time.perf_counter() - t
        t = time.perf_counter()
        m.delete_document(conn, added.document.id)
        delete_s = time.perf_counter() - t
        m.close()

        result["build_s"] = {
            "store": round(t_store, 2),
            "store_per_1k_chunks": round(t_store / n_chunks * 1000, 3),
            "open_rebuild": round(open_rebuild, 2),
            "open_loaded": round(open_loaded, 2),
            "save": round(save_s, 2),
            "add_document_20_chunks": round(add_s, 3),
            "delete_document_20_chunks": round(delete_s, 3),
        }
        result["bytes_per_1k_chunks"] = {
            "faiss_file": int(faiss_bytes / n_chunks * 1000),
            "sqlite": int((size1 - size0) / n_chunks * 1000),
        }
        result["memory_bytes"] = {"dense": stats["dense_bytes"], "lexical": stats["lexical_bytes"],
                                  "vocabulary_terms": stats["vocabulary"]}
        conn.close()
    finally:
        tmp.cleanup()
    return result


def bench_commit(n: int = 200, *, workdir: str | Path | None = None) -> dict:
    """Latency of a small committed write (a job progress update) with synchronous FULL vs NORMAL."""
    from rag.store import open_db
    from rag import store

    out = {}
    with tempfile.TemporaryDirectory(prefix="rag-bench-commit-", dir=workdir) as d:
        for mode in ("FULL", "NORMAL"):
            conn = open_db(Path(d) / f"{mode}.sqlite3")
            conn.execute(f"PRAGMA synchronous = {mode}")
            job = store.create_job(conn, "default", "x")
            times = []
            for i in range(n):
                t = time.perf_counter()
                store.update_job(conn, job.id, progress={"i": i})
                times.append(time.perf_counter() - t)
            out[mode] = _percentiles(times)
            conn.close()
    return out


def _db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    args = [int(a) for a in (argv if argv is not None else sys.argv[1:])] or [10_000, 100_000]
    out = {"commit_ms": bench_commit()}
    for n in args:
        out[str(n)] = bench_search(n)
        print(json.dumps({str(n): out[str(n)]}, indent=1), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
