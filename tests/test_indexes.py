"""Derived indexes: RRF fusion, BM25 analysis (Chinese/English, Traditional/Simplified), FAISS
wrapper persistence, and the manager (consistency with SQLite, start-up repair, concurrency)."""

from __future__ import annotations

import hashlib
import threading
import time

import bm25s
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.types import ChunkDraft
from rag import store
from rag.errors import NotFound, RagError
from rag.index import Hit, IndexManager, fuse_rrf
from rag.index.dense import CorruptIndex, DenseIndex, saved_files
from rag.index.lexical import LexicalIndex, get_analyzer
from rag.store import connect, open_db

DIM = 384
MODEL = "test-embedder"


def unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def drafts(texts: list[str]) -> list[ChunkDraft]:
    return [ChunkDraft(ordinal=i, text=t, char_start=0, char_end=len(t), token_count=len(t)) for i, t in enumerate(texts)]


def meta(key: str) -> store.NewDocument:
    return store.NewDocument(filename=f"{key}.txt", format="text", sha256=hashlib.sha256(key.encode()).hexdigest(),
                            size_bytes=len(key))


# ---------------------------------------------------------------- fusion


def test_fuse_rrf_hand_example():
    dense = ["a", "b", "c"]
    bm25 = ["c", "a", "d"]
    fused = fuse_rrf([dense, bm25], k=60)
    expected = {
        "a": 1 / 61 + 1 / 62,
        "b": 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "d": 1 / 63,
    }
    assert [i for i, _ in fused] == ["a", "c", "b", "d"]
    for item, score in fused:
        assert score == pytest.approx(expected[item])


def test_fuse_rrf_ties_weights_and_edge_cases():
    # x and y tie (1/1 each with k=0); y has the better best rank? both rank 1 -> first seen wins
    assert [i for i, _ in fuse_rrf([["x"], ["y"]], k=0)] == ["x", "y"]
    # a duplicate inside one list counts once, at its best rank
    assert fuse_rrf([["a", "a", "b"]], k=0) == [("a", 1.0), ("b", 1 / 3)]
    assert fuse_rrf([], k=60) == [] and fuse_rrf([[], []]) == []
    weighted = fuse_rrf([["a"], ["b"]], k=0, weights=[1.0, 2.0])
    assert weighted == [("b", 2.0), ("a", 1.0)]
    with pytest.raises(ValueError):
        fuse_rrf([["a"]], weights=[1.0, 2.0])


def test_fuse_rrf_swapped_ranks_go_to_the_clearer_win():
    """a is 1st in dense by a hair, b 1st in BM25 by a margin: equal RRF, b wins on relative scores."""
    dense, bm25 = ["a", "b", "c"], ["b", "a", "c"]
    assert [i for i, _ in fuse_rrf([dense, bm25], k=60)][:2] == ["a", "b"]  # without scores: first seen
    fused = fuse_rrf([dense, bm25], k=60, scores=[[0.9364, 0.9337, 0.90], [10.31, 9.42, 6.0]])
    assert [i for i, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(fused[1][1])
    with pytest.raises(ValueError):
        fuse_rrf([dense, bm25], scores=[[1.0, 0.5, 0.1]])


# ---------------------------------------------------------------- lexical analysis


@pytest.fixture(scope="module")
def analyzer():
    a = get_analyzer()
    a.warm_up()
    return a


def lexical(texts: list[str]) -> LexicalIndex:
    a = get_analyzer()
    return LexicalIndex.build(list(range(1, len(texts) + 1)), [a.term_counts(t) for t in texts])


CORPUS = [
    "软件包管理器负责安装、升级和删除软件。",  # 1 Simplified
    "軟體套件管理是系統管理員的日常工作。",  # 2 Traditional
    "如何安装软件包：使用 apt-get install 命令。",  # 3 Simplified + English
    "The package manager resolves dependencies automatically.",  # 4 English
    "今天天气很好，我们去公园散步。",  # 5 unrelated
]


def test_traditional_query_matches_simplified_text_and_back(analyzer):
    idx = lexical(CORPUS)
    trad = [c for c, _ in idx.search("軟體套件管理", 5)]
    assert trad[:1] == [2] and 1 in trad  # 软件 + 管理 match the Simplified chunk 1
    simp = [c for c, _ in idx.search("软件套件管理", 5)]
    assert simp[:1] == [2] and 1 in simp  # Simplified query finds the Traditional chunk first
    assert analyzer.query_terms("軟體") == analyzer.query_terms("软件") == ["软件"]
    assert 5 not in trad


def test_chinese_segmentation_finds_longer_words(analyzer):
    idx = lexical(CORPUS)
    hits = [c for c, _ in idx.search("安装软件", 5)]
    assert set(hits[:2]) == {1, 3}  # 3 has 安装 + 软件包 only: found through the sub-word 软件
    only = lexical(["如何安装软件包", "今天天气很好"])
    assert [c for c, _ in only.search("安装软件", 5)] == [1]
    assert "软件包" in analyzer.analyze("如何安装软件包") and "软件" in analyzer.analyze("如何安装软件包")


def test_english_and_mixed_text(analyzer):
    idx = lexical(CORPUS)
    assert [c for c, _ in idx.search("Package MANAGER", 5)][:1] == [4]
    assert [c for c, _ in idx.search("apt-get", 5)] == [3]
    # NFKC, stop words; a glued letter-digit name is also kept whole
    assert analyzer.analyze("The ＡＰＴ-GET tool, v3.11!") == ["apt", "get", "tool", "v3", "11", "v3.11"]
    assert idx.search("the of and", 5) == []  # only stop words
    assert idx.search("", 5) == [] and idx.search("zzzz", 5) == []


def test_glued_letter_digit_names_match_whole(analyzer):
    """jieba cuts ModelX3.5 into ModelX3 | .5; the whole name must still outrank chunks sharing a piece."""
    idx = lexical(["星云科技发布了ModelX3.5模型，参数量为70亿。", "ModelX3 的后续版本计划于5月推出。", "今天天气很好"])
    assert [c for c, _ in idx.search("ModelX3.5的参数量是多少？", 5)][:1] == [1]
    assert "modelx3.5" in analyzer.analyze("星云科技的ModelX3.5模型")
    assert "sources.list" not in analyzer.analyze("edit sources.list")  # letters only: its pieces suffice


def test_simplified_text_is_not_rewritten(analyzer):
    # tw2sp applied to Simplified text would turn 程序 (program) into 进程 (process)
    assert analyzer.fold("程序设计") == "程序设计"
    assert analyzer.fold("軟體") == "软件"


def test_bm25_scores_equal_bm25s_reference(analyzer):
    texts = CORPUS + ["软件 软件 软件 管理", "package package install", "安装 安装 软件包 package"]
    idx = lexical(texts)
    ref = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    ref.index([analyzer.analyze(t) for t in texts], show_progress=False)
    for q in ["软件管理", "package install", "安装软件包", "dependencies 依赖 package"]:
        terms = [t for t in analyzer.query_terms(q) if t in ref.vocab_dict]
        np.testing.assert_allclose(idx.scores_for_terms(analyzer.query_terms(q)), ref.get_scores(terms), rtol=1e-5)


def test_lexical_index_add_remove(analyzer):
    idx = lexical(CORPUS[:2])
    bigger = idx.added([10, 3], [analyzer.term_counts(CORPUS[3]), analyzer.term_counts("package apt")])
    assert list(bigger.ids) == [1, 2, 3, 10] and list(idx.ids) == [1, 2]  # the old object is unchanged
    assert [c for c, _ in bigger.search("package", 5)] == [3, 10]
    smaller = bigger.removed([3, 99])
    assert list(smaller.ids) == [1, 2, 10] and [c for c, _ in smaller.search("package", 5)] == [10]
    assert smaller.added([10], [analyzer.term_counts("x")]) is smaller  # present ids are ignored


_WORDS = ["软件", "安装", "管理", "package", "install", "manager", "天气", "weather", "軟體", "dependencies"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(st.sampled_from(_WORDS), min_size=0, max_size=6)),
                min_size=1, max_size=12))
def test_incremental_lexical_index_equals_fresh_build(ops):
    """Any sequence of adds and removes gives the same scores as building the survivors at once."""
    a = get_analyzer()
    idx = LexicalIndex.empty()
    live: dict[int, str] = {}
    for n, (remove, words) in enumerate(ops, start=1):
        if remove and live:
            victim = sorted(live)[n % len(live)]
            idx = idx.removed([victim])
            del live[victim]
        else:
            text = " ".join(words)
            idx = idx.added([n], [a.term_counts(text)])
            live[n] = text
    fresh = LexicalIndex.build(sorted(live), [a.term_counts(live[i]) for i in sorted(live)])
    assert list(idx.ids) == list(fresh.ids)
    for q in ["软件 package", "安装 weather", "軟體管理", "dependencies"]:
        np.testing.assert_allclose(idx.scores_for_terms(a.query_terms(q)), fresh.scores_for_terms(a.query_terms(q)),
                                   rtol=1e-5)
        assert [c for c, _ in idx.search(q, 5)] == [c for c, _ in fresh.search(q, 5)]


# ---------------------------------------------------------------- dense index


def test_dense_index_copy_on_write_and_search():
    vecs = unit(10, 1)
    idx = DenseIndex.build(DIM, range(100, 110), vecs)
    assert idx.search(vecs[3], 1) == [(103, pytest.approx(1.0, abs=1e-5))]
    smaller = idx.removed([103, 999])
    assert len(idx) == 10 and len(smaller) == 9 and 103 not in smaller.ids()
    assert smaller.search(vecs[3], 1)[0][0] != 103
    bigger = smaller.added([200], vecs[3:4] * 5.0)  # not normalised on input: normalised inside
    assert bigger.search(vecs[3], 1) == [(200, pytest.approx(1.0, abs=1e-5))]
    assert len(bigger.search(vecs[0], 100)) == 10


def test_dense_save_load_and_corruption(tmp_path):
    vecs = unit(50, 2)
    idx = DenseIndex.build(DIM, range(1, 51), vecs)
    path = idx.save(tmp_path, 7)
    assert saved_files(tmp_path) == [(7, path)]
    loaded = DenseIndex.load(path)
    assert list(loaded.ids()) == list(range(1, 51)) and loaded.search(vecs[5], 1)[0][0] == 6
    newer = idx.removed([1]).save(tmp_path, 8)
    assert saved_files(tmp_path) == [(8, newer)]  # older file deleted after the new one is durable
    data = newer.read_bytes()
    newer.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CorruptIndex):
        DenseIndex.load(newer)
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF  # one flipped byte in the vectors
    newer.write_bytes(bytes(flipped))
    with pytest.raises(CorruptIndex):
        DenseIndex.load(newer)


# ---------------------------------------------------------------- manager


class Env:
    def __init__(self, tmp_path, autosave_delay_s: float = 0.0):
        self.db = tmp_path / "rag.sqlite3"
        self.index_dir = tmp_path / "indexes"
        self.conn = open_db(self.db)
        self.autosave = autosave_delay_s
        self.manager = self.new_manager()
        self.n = 0

    def new_manager(self) -> IndexManager:
        m = IndexManager(self.index_dir, lambda: connect(self.db), autosave_delay_s=self.autosave)
        self.reports = m.open()
        return m

    def add(self, texts: list[str], collection: str = "default", seed: int | None = None, via_repo: bool = False):
        self.n += 1
        vecs = unit(len(texts), seed if seed is not None else self.n)
        if via_repo:  # committed behind the manager's back
            return store.add_document(self.conn, collection, meta(f"doc{self.n}-{texts}"), drafts(texts), vecs,
                                     embed_model=MODEL), vecs
        return self.manager.add_document(self.conn, collection, meta(f"doc{self.n}-{texts}"), drafts(texts), vecs,
                                         embed_model=MODEL), vecs

    def snapshot(self, collection: str = "default"):
        return self.manager._collection(collection).snapshot

    def sqlite_ids(self, collection: str = "default") -> list[int]:
        return list(store.chunk_ids(self.conn, collection)[0])

    def assert_consistent(self, collection: str = "default"):
        snap = self.snapshot(collection)
        ids = self.sqlite_ids(collection)
        assert list(snap.ids) == ids
        assert list(snap.lexical.ids) == ids
        if snap.dense is not None:
            assert list(snap.dense.ids()) == ids and snap.dense.ntotal == len(ids)
        assert snap.seq == store.change_seq(self.conn, collection)

    def close(self):
        self.manager.close()
        self.conn.close()


@pytest.fixture()
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


def test_add_search_and_hit_fields(env):
    (a, a_vecs) = env.add(["如何安装软件包", "The package manager resolves dependencies"])
    (b, _) = env.add(["今天天气很好", "weather report for today"])
    env.assert_consistent()
    hits = env.manager.search("default", a_vecs[0], "安装软件", k=3)
    assert isinstance(hits[0], Hit)
    top = hits[0]
    assert top.chunk_id == a.chunk_ids[0] and top.document_id == a.document.id
    assert (top.dense_rank, top.bm25_rank) == (1, 1)
    assert top.score == pytest.approx(2 / 61) and top.dense_score == pytest.approx(1.0, abs=1e-5)
    others = [h for h in hits if h.bm25_rank is None]
    assert others and all(h.bm25_score is None and h.dense_rank is not None for h in others)
    dense = env.manager.dense_search("default", a_vecs[1], k=1)
    assert dense[0].chunk_id == a.chunk_ids[1] and dense[0].score == dense[0].dense_score and dense[0].bm25_rank is None
    lex = env.manager.lexical_search("default", "weather", k=5)
    assert [h.chunk_id for h in lex] == [b.chunk_ids[1]] and lex[0].document_id == b.document.id
    assert env.manager.search("default", None, "weather", k=5)[0].chunk_id == b.chunk_ids[1]
    with pytest.raises(RagError):
        env.manager.search("default", np.ones(DIM + 1, np.float32), "x")
    with pytest.raises(NotFound):
        env.manager.search("nope", a_vecs[0], "x")


def test_duplicate_upload_changes_nothing(env):
    texts = ["same text here"]
    first, vecs = env.add(texts)
    again = env.manager.add_document(env.conn, "default", meta(f"doc1-{texts}"), drafts(texts), vecs, embed_model=MODEL)
    assert again.duplicate and again.document.id == first.document.id
    assert env.snapshot().seq == first.change_seq and len(env.snapshot().ids) == 1


def test_collections_are_isolated(env):
    store.create_collection(env.conn, "other")
    (a, a_vecs) = env.add(["shared words alpha"], collection="default")
    (b, _) = env.add(["shared words beta"], collection="other")
    assert {h.chunk_id for h in env.manager.search("default", a_vecs[0], "shared words", k=10)} == set(a.chunk_ids)
    assert {h.chunk_id for h in env.manager.search("other", a_vecs[0], "shared words", k=10)} == set(b.chunk_ids)
    env.assert_consistent("default")
    env.assert_consistent("other")


def test_delete_leaves_no_stale_chunk_anywhere(env):
    (keep, _) = env.add(["keep this chunk 保留"])
    (gone, gone_vecs) = env.add(["delete this chunk 删除", "another deleted chunk"])
    env.manager.delete_document(env.conn, gone.document.id)
    env.assert_consistent()
    assert store.get_chunks(env.conn, gone.chunk_ids) == []
    snap = env.snapshot()
    assert not set(gone.chunk_ids) & set(snap.dense.ids()) and not set(gone.chunk_ids) & set(snap.lexical.ids)
    assert env.manager.lexical_search("default", "删除 deleted", k=10) == []
    found = {h.chunk_id for h in env.manager.search("default", gone_vecs[0], "delete deleted chunk", k=10)}
    assert found == set(keep.chunk_ids)
    # and after a restart
    env.manager.close()
    env.manager = env.new_manager()
    env.assert_consistent()
    assert env.reports[0].dense == "loaded"


def test_restart_loads_saved_index(env):
    env.add(["one", "two"])
    env.add(["three"])
    env.manager.close()
    env.manager = env.new_manager()
    (report,) = env.reports
    assert (report.dense, report.chunks, report.terms_cached, report.terms_analyzed) == ("loaded", 3, 3, 0)
    env.assert_consistent()


def test_restart_repairs_stale_index(env):
    env.add(["indexed before the crash"])
    saved_seq = env.snapshot().seq
    (late, late_vecs) = env.add(["committed but never indexed"], via_repo=True)  # crash after commit
    first = store.list_documents(env.conn, "default")[0]
    store.delete_document(env.conn, first.id)  # and a delete the index never heard of
    env.manager.close()
    env.manager = env.new_manager()
    (report,) = env.reports
    assert report.dense == "repaired" and report.seq == saved_seq + 2 and report.terms_analyzed == 1
    env.assert_consistent()
    assert env.manager.dense_search("default", late_vecs[0], 1)[0].chunk_id == late.chunk_ids[0]
    assert saved_files(env.index_dir / store.get_collection(env.conn, "default").uid)[0][0] == report.seq


def test_restart_rebuilds_missing_or_corrupt_index(env):
    (doc, vecs) = env.add(["alpha beta", "gamma delta"])
    env.manager.close()
    folder = env.index_dir / store.get_collection(env.conn, "default").uid
    ((_, path),) = saved_files(folder)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    env.manager = env.new_manager()
    assert env.reports[0].dense == "rebuilt"
    env.assert_consistent()
    assert env.manager.dense_search("default", vecs[1], 1)[0].chunk_id == doc.chunk_ids[1]
    env.manager.close()
    for _, p in saved_files(folder):
        p.unlink()
    (folder / ".dense-leftover.tmp").write_bytes(b"junk")  # an interrupted save
    env.manager = env.new_manager()
    assert env.reports[0].dense == "rebuilt" and not (folder / ".dense-leftover.tmp").exists()
    env.assert_consistent()


def test_commits_made_outside_the_manager_are_resynced_at_its_next_change(env):
    (a, _) = env.add(["first"])
    env.add(["second"], via_repo=True)  # seq +1, manager not told
    (c, _) = env.add(["third"], via_repo=True)
    (d, _) = env.add(["fourth"])  # seq gap -> resync, then this one
    env.assert_consistent()
    store.delete_document(env.conn, a.document.id)  # manager not told
    env.manager.delete_document(env.conn, d.document.id)  # seq gap -> resync
    env.assert_consistent()
    assert [h.chunk_id for h in env.manager.lexical_search("default", "third", 5)] == list(c.chunk_ids)
    assert env.manager.lexical_search("default", "first", 5) == env.manager.lexical_search("default", "fourth", 5) == []


def test_delete_collection_removes_index_folder(env):
    store.create_collection(env.conn, "tmp")
    env.add(["temporary"], collection="tmp")
    uid = store.get_collection(env.conn, "tmp").uid
    assert (env.index_dir / uid).is_dir()
    env.manager.delete_collection(env.conn, "tmp")
    assert not (env.index_dir / uid).exists()
    with pytest.raises(NotFound):
        env.manager.search("tmp", None, "temporary")
    store.create_collection(env.conn, "tmp")  # same name again: a new, empty collection
    assert env.manager.lexical_search("tmp", "temporary", 5) == []


def test_orphan_index_folders_are_removed_at_start(env):
    store.create_collection(env.conn, "gone")
    env.add(["x"], collection="gone")
    uid = store.get_collection(env.conn, "gone").uid
    env.manager.close()
    store.delete_collection(env.conn, "gone")  # deleted while the manager was down
    env.manager = env.new_manager()
    assert not (env.index_dir / uid).exists()


def test_debounced_save_and_flush_on_close(tmp_path):
    env = Env(tmp_path, autosave_delay_s=30.0)
    try:
        env.add(["saved later"])
        uid = store.get_collection(env.conn, "default").uid
        assert saved_files(env.index_dir / uid) == []  # not yet
        env.manager.close()  # flushes
        assert saved_files(env.index_dir / uid)[0][0] == env.snapshot().seq
    finally:
        env.conn.close()


def test_concurrent_searches_never_see_half_added_documents(env):
    """Writers add and delete documents while readers search with k >= every chunk: each document
    in a result must be there with all its chunks (documents have 1-6 chunks sharing a term)."""
    rng = np.random.default_rng(5)
    # one writer on a fresh database: the i-th document added gets id i + 1
    sizes = {i + 1: int(rng.integers(1, 7)) for i in range(40)}
    stop = threading.Event()
    errors: list[BaseException] = []
    checks = [0]
    query = unit(1, 999)[0]

    def writer():
        try:
            conn = connect(env.db)
            live: list[int] = []
            for i in range(40):
                n = sizes[i + 1]
                texts = [f"common doc{i} part{j}" for j in range(n)]
                res = env.manager.add_document(conn, "default", meta(f"c{i}"), drafts(texts), unit(n, 1000 + i),
                                               embed_model=MODEL)
                assert res.document.id == i + 1
                live.append(res.document.id)
                if i % 3 == 2:
                    env.manager.delete_document(conn, live.pop(0))
            conn.close()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            stop.set()

    def reader(kind: str):
        try:
            while not stop.is_set():
                if kind == "dense":
                    hits = env.manager.dense_search("default", query, k=1000)
                elif kind == "lexical":
                    hits = env.manager.lexical_search("default", "common", k=1000)
                else:
                    hits = env.manager.search("default", query, "common", k=1000, candidates=1000)
                per_doc: dict[int, int] = {}
                for h in hits:
                    per_doc[h.document_id] = per_doc.get(h.document_id, 0) + 1
                for doc, n in per_doc.items():
                    assert n == sizes[doc], (doc, n, sizes[doc])
                checks[0] += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(k,)) for k in ("dense", "lexical", "hybrid", "hybrid")
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert checks[0] > 20 and time.monotonic() - t0 < 120
    env.assert_consistent()


def test_from_settings_uses_the_data_dir(tmp_path):
    from rag.settings import Settings

    settings = Settings(data_dir=tmp_path / "state")
    open_db(settings.db_path).close()
    manager = IndexManager.from_settings(settings, autosave_delay_s=0)
    (report,) = manager.open()
    assert report.collection == "default" and report.dense == "empty" and report.chunks == 0
    assert manager.search("default", unit(1, 0)[0], "anything") == []
    assert settings.index_dir.is_dir()
    manager.close()


def test_jieba_initialises_quietly():
    import subprocess
    import sys

    code = "from rag.index.lexical import get_analyzer; a = get_analyzer(); a.warm_up(); print(a.analyze('安装软件包'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stderr == "" and "软件包" in out.stdout
