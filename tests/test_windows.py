"""Sub-chunk windows: pooling, re-ranking, and the pipeline storing them with the real small embedder."""

from __future__ import annotations

import numpy as np
import pytest

from rag.index.windows import WHOLE_WEIGHT, pooled, rescore
from rag.store.records import ChunkWindows


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_pooled_is_the_length_weighted_mean_renormalised():
    a, b = unit(1, 0, 0), unit(0, 1, 0)
    v = pooled(np.stack([a, b]), [(0, 30), (30, 40)])  # 30 and 10 characters
    assert np.isclose(np.linalg.norm(v), 1.0)
    assert np.allclose(v, unit(3, 1, 0), atol=1e-6)


def test_a_chunk_whose_window_matches_moves_up():
    q = unit(1, 0, 0)
    # chunk 1: whole vector mildly related, no windows; chunk 2: whole less related, one window exact
    windows = {2: np.stack([unit(0, 1, 0), unit(1, 0, 0)])}
    out = rescore(q, [(1, 0.60), (2, 0.50)], windows)
    assert [c for c, _ in out] == [2, 1]
    assert out[0][1] == pytest.approx(WHOLE_WEIGHT * 0.50 + (1 - WHOLE_WEIGHT) * 1.0)
    assert out[1][1] == pytest.approx(0.60)  # no windows: its own cosine


def test_without_windows_the_order_and_scores_are_unchanged():
    dense = [(7, 0.9), (3, 0.8), (5, 0.8), (1, 0.1)]
    assert rescore(unit(1, 0), dense, {}) == dense


def test_windows_need_two_spans_and_one_vector_each():
    with pytest.raises(ValueError):
        ChunkWindows(((0, 5),), np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError):
        ChunkWindows(((0, 5), (5, 9)), np.zeros((3, 3), np.float32))


def test_pipeline_stores_windows_and_pools_the_chunk_vector(small_settings):
    """A long chunk is embedded as windows: each window's stored vector is the embedder's vector of
    exactly that span, the chunk's stored vector is their pooled mean, and deleting the document
    removes the windows with it."""
    from ingest.uploads import Upload
    from rag.service.runtime import Runtime
    from rag import store

    settings = small_settings.model_copy(update={"window_tokens": 40})
    sentences = [f"Sentence number {i} talks about topic {w} and nothing else at all." for i, w in
                 enumerate(["apples", "trains", "rivers", "violins", "glaciers", "printers", "tigers", "lanterns"])]
    text = "\n\n".join(" ".join(sentences[i:i + 2]) for i in range(0, len(sentences), 2))
    rt = Runtime(settings)
    rt.start(worker=False)
    try:
        conn = rt.db.get()
        store.create_collection(conn, "w")
        (job,) = rt.ingest.submit("w", [Upload("topics.txt", text.encode())])
        out = rt.ingest.run_job(job.id)
        assert out is not None
        chunks = store.list_chunks(conn, out.added.document.id)
        windows = store.window_vectors(conn, [c.id for c in chunks])
        assert windows, "no chunk was split into windows"
        vectors = {b_id: v for batch in store.iter_vectors(conn, "w") for b_id, v in zip(batch.ids, batch.vectors)}
        for c in chunks:
            rows = conn.execute("SELECT char_start, char_end FROM chunk_windows WHERE chunk_id = ? ORDER BY n",
                                (c.id,)).fetchall()
            if c.id not in windows:
                assert not rows and c.token_count <= 40
                continue
            spans = [(s, e) for s, e in rows]
            assert len(spans) >= 2 and all(0 <= s < e <= len(c.text) for s, e in spans)
            assert all(rt.embedder.count_tokens(c.text[s:e]) <= 40 for s, e in spans)
            direct = np.asarray(rt.embedder.embed_passages([c.text[s:e] for s, e in spans]))
            assert np.allclose(windows[c.id], direct, atol=2e-4)  # batches pad differently
            assert np.allclose(vectors[c.id], pooled(direct, spans), atol=2e-4)

        # a query naming one window's topic ranks that chunk first, scored by whole and best window
        target = next(c for c in chunks if "violins" in c.text)
        assert target.id in windows
        hits = rt.searcher.hits("w", "Which sentence talks about violins?", 3, lexical=False)
        assert hits[0].chunk_id == target.id
        q = np.asarray(rt.embedder.embed_queries(["Which sentence talks about violins?"])[0])
        expected = WHOLE_WEIGHT * float(vectors[target.id] @ q) + (1 - WHOLE_WEIGHT) * float(np.max(windows[target.id] @ q))
        assert hits[0].dense_score == pytest.approx(expected, abs=1e-4)

        rt.index.delete_document(conn, out.added.document.id)
        assert conn.execute("SELECT count(*) FROM chunk_windows").fetchone()[0] == 0
        assert target.id not in store.window_vectors(conn, [target.id])
    finally:
        rt.close()
