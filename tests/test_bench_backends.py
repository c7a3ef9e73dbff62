"""`rag bench backends` at a small size: both backends hold the same corpus and rank it alike.

Parts 1 and 2 only (part 3 starts real workers with the real embedder: minutes); the ingestion
figures' arithmetic is checked on a few job rows.
"""

from __future__ import annotations

import json

import numpy as np

from rag_bench import backends


def test_small_run_prints_both_tables_and_the_backends_agree(tmp_path, pg_server, small_embedder_dir, capsys):
    # The anchors the bench mixes vectors from, embedded here by the small 384-dim embedder (the bench's
    # own come from multilingual-e5-small, also 384-dim, cached by `rag_bench.ann_data`).
    from rag_bench.ann_data import paragraphs
    from rag.models.embedder import Embedder

    texts = paragraphs(160)
    embedder = Embedder.load(small_embedder_dir, model_id="all-minilm-l6-v2")
    np.savez(tmp_path / "ann-e5-real-150-300.npz", anchors=embedder.embed_passages(texts[:150]),
             queries=embedder.embed_queries(texts[150:]))
    out = tmp_path / "backends.json"
    report = backends.main(["--sizes", "400", "--queries", "20", "--ingest-docs", "0", "--doc-files", "150",
                            "--pg-url", pg_server, "--out", str(out), "--anchors-dir", str(tmp_path), "--anchors", "150"])
    printed = capsys.readouterr().out
    assert "## 1. Hybrid search" in printed and "## 2. Lexical ranking" in printed
    assert json.loads(out.read_text())["machine"]["cpus"]
    (size,) = report["sizes"]
    search, lexical = size["search"], size["lexical"]
    assert search["sqlite"]["dense_recall@10"] == 1.0  # exact FAISS below the approximate threshold
    assert search["postgres"]["dense_recall@10"] >= 0.9
    assert search["between"]["lexical_overlap@10"] >= 0.95  # the same BM25 formula on both
    assert lexical["bm25 in SQL (PgIndex)"]["overlap@10"] >= 0.95
    assert search["sqlite"]["sizes"]["faiss_file"] > 0 and search["postgres"]["sizes"]["hnsw_index"] > 0


def test_throughput_counts_documents_chunks_and_workers():
    from rag import store

    conn = store.connect(":memory:")
    conn.execute("CREATE TABLE ingestion_jobs (id TEXT, status TEXT, claimed_by TEXT, created_at TEXT,"
                 " started_at TEXT, finished_at TEXT, document_id INTEGER)")
    conn.execute("CREATE TABLE documents (id INTEGER, chunk_count INTEGER)")
    rows = [("a", "done", "w1", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:04.000Z", 1),
            ("b", "done", "w2", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:10.000Z", 2)]
    conn.executemany("INSERT INTO ingestion_jobs VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany("INSERT INTO documents VALUES (?, ?)", [(1, 10), (2, 30)])
    got = backends.throughput(conn, ["a", "b"], by_worker=True)
    assert got["all_done"] and got["seconds"] == 10.0 and got["chunks"] == 40
    assert got["chunks_per_s"] == 4.0 and got["per_worker_chunks_per_s"] == [1.0, 3.0]
    assert got["per_worker_busy_chunks_per_s"] == [2.5, 3.33] and got["per_worker_documents"] == [1, 1]
