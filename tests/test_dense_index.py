"""FAISS index kind by collection size (#14): the policy, flat unchanged, IVF and HNSW with real
deletes, conversion when a collection crosses the threshold, and save/load/convert at start-up."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ingest.types import ChunkDraft
from rag import store
from rag.index import IndexManager
from rag.index.dense import DenseIndex, saved_files
from rag.index.faiss_kinds import MIN_APPROX, IndexPolicy, contents, ivf_nlist
from rag.store import connect, open_db

DIM = 32


def clustered(n: int, seed: int, centres: int = 50) -> np.ndarray:
    """Unit vectors around a few centres (random unit vectors give ANN nothing to find)."""
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(99).standard_normal((centres, DIM))
    v = c[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def exact_top(base: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    return ids[np.argsort(-(base @ q), kind="stable")[:k]].tolist()


def recall(index: DenseIndex, base: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    got = [len({c for c, _ in index.search(q, k)} & set(exact_top(base, ids, q, k))) / k for q in queries]
    return float(np.mean(got))


# ---------------------------------------------------------------- policy


@pytest.mark.parametrize("setting, n, kind", [
    ("auto", 199_999, "flat"), ("auto", 200_000, "ivf"), ("flat", 10**7, "flat"),
    ("ivf", MIN_APPROX, "ivf"), ("ivf", MIN_APPROX - 1, "flat"), ("hnsw", 5000, "hnsw"),
])
def test_policy_kind_by_size(setting, n, kind):
    assert IndexPolicy(setting, 200_000).kind_for(n) == kind


def test_ivf_cells_follow_sqrt_n_with_enough_training_points():
    assert ivf_nlist(1_000_000) == 4000 and ivf_nlist(200_000) == 1789
    assert ivf_nlist(2000) == 2000 // 39  # 4*sqrt(2000)=179 would leave 11 points per cell


# ---------------------------------------------------------------- flat is unchanged


def test_flat_below_threshold_is_exact_with_cosine_scores():
    base, ids = clustered(3000, 1), np.arange(10, 3010, dtype=np.int64)
    index = DenseIndex.build(DIM, ids, base, IndexPolicy("auto", 200_000))
    assert index.kind == "flat"
    q = clustered(1, 2)[0]
    found = index.search(q, 10)
    assert [c for c, _ in found] == exact_top(base, ids, q, 10)
    assert [s for _, s in found] == pytest.approx(sorted((base @ q).tolist(), reverse=True)[:10], abs=1e-5)


# ---------------------------------------------------------------- approximate kinds


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_searches_adds_and_really_deletes(kind, tmp_path):
    base, ids = clustered(4000, 3), np.arange(1, 4001, dtype=np.int64) * 7
    index = DenseIndex.build(DIM, ids, base, IndexPolicy(kind))
    assert index.kind == kind and np.array_equal(index.ids(), ids)
    queries = clustered(50, 4)
    assert recall(index, base, ids, queries) >= 0.9
    top = index.search(base[5], 1)[0]
    assert top[0] == ids[5] and top[1] == pytest.approx(1.0, abs=1e-5)

    gone = ids[:2000]
    smaller = index.removed(gone)
    assert smaller.kind == kind and np.array_equal(smaller.ids(), ids[2000:]) and len(index) == 4000
    assert all(c not in set(gone.tolist()) for q in queries for c, _ in smaller.search(q, 20))
    assert smaller.search(base[5], 1)[0][0] != ids[5]

    extra = clustered(10, 5)
    grown = smaller.added(np.arange(90_000, 90_010), extra)
    assert grown.kind == kind and grown.search(extra[3], 1)[0][0] == 90_003

    loaded = DenseIndex.load(grown.save(tmp_path, seq=3), IndexPolicy(kind))
    assert loaded.kind == kind and np.array_equal(loaded.ids(), grown.ids())
    assert loaded.search(queries[0], 10) == grown.search(queries[0], 10)


def test_contents_round_trip_every_kind():
    base, ids = clustered(1500, 6), np.arange(1500, dtype=np.int64) + 100
    for kind in ("flat", "ivf", "hnsw"):
        got_ids, got = contents(DenseIndex.build(DIM, ids, base, IndexPolicy(kind)).index)
        order = np.argsort(got_ids)
        assert np.array_equal(got_ids[order], ids) and np.allclose(got[order], base, atol=1e-6)


# ---------------------------------------------------------------- crossing the threshold


def test_growing_past_the_threshold_converts_and_shrinking_waits_for_start_up():
    policy = IndexPolicy("auto", approx_from=2000)
    base = clustered(2600, 7)
    ids = np.arange(1, 2601, dtype=np.int64)
    small = DenseIndex.build(DIM, ids[:1900], base[:1900], policy)
    assert small.kind == "flat"
    big = small.added(ids[1900:], base[1900:])  # the add that reaches 2000 converts
    assert big.kind == "ivf" and np.array_equal(big.ids(), ids) and small.kind == "flat"
    assert recall(big, base, ids, clustered(30, 8)) >= 0.9

    shrunk = big.removed(ids[:1000])  # deletes never change the kind (no flapping at the line)
    assert shrunk.kind == "ivf"
    back = shrunk.conformed()  # start-up: 1600 < 2000 -> flat
    assert back.kind == "flat" and np.array_equal(back.ids(), ids[1000:])
    q = clustered(1, 9)[0]
    assert [c for c, _ in back.search(q, 10)] == exact_top(base[1000:], ids[1000:], q, 10)
    assert back.conformed() is back


def test_ivf_cells_are_retrained_at_start_up_once_the_collection_outgrew_them():
    policy = IndexPolicy("ivf")
    base = clustered(20_000, 10)
    ids = np.arange(20_000, dtype=np.int64)
    index = DenseIndex.build(DIM, ids[:1000], base[:1000], policy)
    assert index.index.nlist == ivf_nlist(1000)
    grown = index.added(ids[1000:], base[1000:])  # no retraining in the write path
    assert grown.kind == "ivf" and grown.index.nlist == ivf_nlist(1000) and len(grown) == 20_000
    opened = grown.conformed()
    assert opened.kind == "ivf" and opened.index.nlist == ivf_nlist(20_000) and np.array_equal(opened.ids(), ids)


def test_a_setting_change_converts_a_loaded_file(tmp_path):
    base, ids = clustered(3000, 11), np.arange(3000, dtype=np.int64)
    path = DenseIndex.build(DIM, ids, base, IndexPolicy("ivf")).save(tmp_path, seq=1)
    loaded = DenseIndex.load(path, IndexPolicy("flat"))
    assert loaded.kind == "ivf"  # the file's kind...
    flat = loaded.conformed()  # ...converted at open
    assert flat.kind == "flat" and np.array_equal(flat.ids(), ids)


# ---------------------------------------------------------------- through the manager


def _add(conn, manager: IndexManager, key: str, vecs: np.ndarray) -> store.AddedDocument:
    drafts = [ChunkDraft(ordinal=i, text=f"{key} chunk {i}", char_start=0, char_end=9, token_count=3)
              for i in range(len(vecs))]
    doc = store.NewDocument(filename=f"{key}.txt", format="text", sha256=hashlib.sha256(key.encode()).hexdigest(),
                            size_bytes=9)
    return manager.add_document(conn, "default", doc, drafts, vecs, embed_model="test")


def test_manager_converts_at_threshold_and_at_open(tmp_path):
    db, index_dir = tmp_path / "rag.sqlite3", tmp_path / "indexes"
    conn = open_db(db)

    def manager(policy: IndexPolicy) -> tuple[IndexManager, list]:
        m = IndexManager(index_dir, lambda: connect(db), autosave_delay_s=0, dense_policy=policy)
        return m, m.open()

    auto = IndexPolicy("auto", approx_from=1500)
    m, _ = manager(auto)
    vecs = clustered(2000, 12)
    _add(conn, m, "a", vecs[:1000])
    assert m._snapshot("default").dense.kind == "flat"
    added = _add(conn, m, "b", vecs[1000:])
    snap = m._snapshot("default")
    assert snap.dense.kind == "ivf" and np.array_equal(snap.dense.ids(), snap.ids)
    assert m.dense_search("default", vecs[1500], 1)[0].chunk_id == added.chunk_ids[500]
    m.close()

    m, (report,) = manager(auto)  # same setting: the IVF file loads as it is
    assert report.dense == "loaded" and m._snapshot("default").dense.kind == "ivf"
    m.close()
    m, (report,) = manager(IndexPolicy("flat"))  # setting changed: converted at open
    snap = m._snapshot("default")
    assert report.dense == "rebuilt" and snap.dense.kind == "flat" and np.array_equal(snap.dense.ids(), snap.ids)
    m.close()
    uid = store.get_collection(conn, "default").uid
    assert DenseIndex.load(saved_files(index_dir / uid)[0][1]).kind == "flat"
    conn.close()


def test_from_settings_passes_the_index_settings(tmp_path, monkeypatch):
    from rag.settings import Settings

    monkeypatch.setenv("RAG_FAISS_INDEX", "hnsw")
    monkeypatch.setenv("RAG_FAISS_APPROX_FROM", "1234")
    settings = Settings(data_dir=tmp_path / "state")
    open_db(settings.db_path).close()
    manager = IndexManager.from_settings(settings, autosave_delay_s=0)
    assert manager.dense_policy == IndexPolicy("hnsw", 1234)
