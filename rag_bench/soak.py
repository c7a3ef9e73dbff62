"""`rag bench soak`: writers upload and readers search one real server at the same time.

What it answers: does the service keep serving readers while it ingests, does it lose or fail
anything acknowledged, and does its memory settle. It starts its own `rag serve` (fresh data
folder, the configured models) unless given `--url`, then

1. seeds the collection and measures search latency with one reader, then with the readers
   alone (the idle baseline at the same concurrency),
2. runs `writers` uploading distinct documents and `readers` searching, for `minutes`,
3. waits for every acknowledged upload to finish, and reports per interval search p50/p99,
   uploads accepted and refused (429 `queue_full` is push-back, not an error), errors, and the
   server's RSS; at the end the load/idle p50 ratio and whether every acknowledged job is `done`.

A client that gets 429 waits for `Retry-After`, as a well-behaved client would. The server it starts
has the per-key limits lifted (one admin key stands for every client); with `--url`, lift them there.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

QUERIES = [
    "How do I pin a package version?", "apt pinning priority", "What is a Debian release?",
    "How long is the Great Wall?", "明长城全长多少公里", "長城的修築歷史", "package manager dependencies",
    "security updates", "如何安装软件包", "kernel modules at boot", "network configuration file",
    "how to report a bug", "文件系统", "backup and restore", "virtual machines", "locale settings",
]

_PARAGRAPHS = [
    "Pinning lets the administrator prefer packages from one release over another by giving each "
    "source a priority in /etc/apt/preferences; a higher priority wins when several versions exist.",
    "The Great Wall of China is a series of fortifications built across the historical northern "
    "borders of ancient Chinese states; the Ming wall is about 8,850 km long.",
    "长城是中国古代的军事防御工程，修筑历史可以上溯到西周时期。明长城全长约8851.8公里。",
    "A security update fixes a vulnerability in a package of a stable release; apply them with "
    "apt update followed by apt upgrade, or let unattended-upgrades do it daily.",
    "網路設定檔位於 /etc/network/interfaces，修改後需重新啟動網路服務才會生效。",
    "Kernel modules listed in /etc/modules are loaded at boot; modprobe loads one by hand and "
    "resolves its dependencies from modules.dep.",
]


def document(n: int, rng: random.Random) -> bytes:
    """A distinct Markdown document of ~6-12 KB (distinct bytes: the service stores duplicates once)."""
    parts = [f"# Soak document {n}\n"]
    for s in range(rng.randint(8, 16)):
        parts.append(f"## Section {s}\n\n" + " ".join(rng.sample(_PARAGRAPHS, 3)) + f" (doc {n}, part {s})\n")
    return "\n".join(parts).encode()


@dataclass
class Interval:
    t_s: float
    searches: int = 0
    search_p50_ms: float | None = None
    search_p99_ms: float | None = None
    uploads_accepted: int = 0
    uploads_pushed_back: int = 0
    errors: int = 0
    rss_mb: float | None = None


@dataclass
class Report:
    writers: int
    readers: int
    minutes: float
    single_p50_ms: float  # one reader, nothing else running
    idle_p50_ms: float
    idle_p99_ms: float
    load_p50_ms: float
    load_p99_ms: float
    ratio_p50: float
    uploads_acknowledged: int
    jobs_done: int
    jobs_failed: int
    errors: int
    error_samples: list[str]
    rss_start_mb: float | None
    rss_end_mb: float | None
    rss_max_mb: float | None
    intervals: list[Interval] = field(default_factory=list)


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.accepted: list[str] = []
        self.pushed_back = 0
        self.errors: list[str] = []

    def take(self) -> tuple[list[float], int, int, int]:
        with self.lock:
            lat, self.latencies = self.latencies, []
            acc, pb, err = len(self.accepted), self.pushed_back, len(self.errors)
            self.pushed_back = 0
            return lat, acc, pb, err


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Soak:
    def __init__(self, url: str, key: str, collection: str, pid: int | None):
        self.url, self.key, self.collection, self.pid = url, key, collection, pid
        self.stats = _Stats()
        self.stop = threading.Event()
        self.counter = 0
        self.counter_lock = threading.Lock()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {self.key}"})

    def rss_mb(self) -> float | None:
        if self.pid is None:
            return None
        import psutil

        try:
            return psutil.Process(self.pid).memory_info().rss / 2**20
        except psutil.Error:
            return None

    def reader(self, seed: int) -> None:
        rng = random.Random(seed)
        with self.client() as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = c.post(f"/v1/collections/{self.collection}/search", json={"query": rng.choice(QUERIES), "k": 10})
                except httpx.HTTPError as exc:
                    self._error(f"search: {type(exc).__name__}")
                    continue
                ms = (time.perf_counter() - t0) * 1000
                if r.status_code == 200:
                    with self.stats.lock:
                        self.stats.latencies.append(ms)
                elif r.status_code == 429:
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                else:
                    self._error(f"search {r.status_code}: {r.text[:120]}")

    def writer(self, seed: int) -> None:
        rng = random.Random(seed)
        with self.client() as c:
            while not self.stop.is_set():
                with self.counter_lock:
                    self.counter += 1
                    n = self.counter
                try:
                    r = c.post(f"/v1/collections/{self.collection}/documents",
                               files=[("files", (f"soak-{n}.md", document(n, rng)))])
                except httpx.HTTPError as exc:
                    self._error(f"upload: {type(exc).__name__}")
                    continue
                if r.status_code == 202:
                    with self.stats.lock:
                        self.stats.accepted.append(r.json()["jobs"][0]["id"])
                elif r.status_code == 429:
                    with self.stats.lock:
                        self.stats.pushed_back += 1
                    self.stop.wait(float(r.headers.get("Retry-After", "1")))
                else:
                    self._error(f"upload {r.status_code}: {r.text[:120]}")

    def _error(self, what: str) -> None:
        with self.stats.lock:
            self.stats.errors.append(what)

    def run_threads(self, writers: int, readers: int, seconds: float, interval_s: float,
                    out: list[Interval], echo) -> list[float]:
        """Runs the clients for `seconds`; returns every search latency."""
        self.stop.clear()
        threads = [threading.Thread(target=self.reader, args=(i,), daemon=True) for i in range(readers)]
        threads += [threading.Thread(target=self.writer, args=(1000 + i,), daemon=True) for i in range(writers)]
        for t in threads:
            t.start()
        start = time.monotonic()
        every: list[float] = []
        accepted_before = 0
        while (elapsed := time.monotonic() - start) < seconds:
            time.sleep(min(interval_s, seconds - elapsed))
            lat, acc, pb, err = self.stats.take()
            every += lat
            row = Interval(round(time.monotonic() - start, 1), len(lat), _pct(lat, 0.5), _pct(lat, 0.99),
                           acc - accepted_before, pb, err, self.rss_mb())
            accepted_before = acc
            out.append(row)
            echo(row)
        self.stop.set()
        for t in threads:
            t.join(150)
        every += self.stats.take()[0]
        return every

    def wait_jobs(self, timeout_s: float) -> tuple[int, int, list[str]]:
        """Polls every acknowledged job until it ends; returns (done, failed, samples of failures)."""
        pending = list(self.stats.accepted)
        done = failed = 0
        samples: list[str] = []
        deadline = time.monotonic() + timeout_s
        with self.client() as c:
            while pending and time.monotonic() < deadline:
                still = []
                for job_id in pending:
                    r = c.get(f"/v1/jobs/{job_id}")
                    if r.status_code != 200:
                        still.append(job_id)
                        continue
                    job = r.json()
                    if job["status"] == "done":
                        done += 1
                    elif job["status"] in ("failed", "cancelled"):
                        failed += 1
                        if len(samples) < 5:
                            samples.append(f"{job['filename']}: {job['error']}")
                    else:
                        still.append(job_id)
                pending = still
                if pending:
                    time.sleep(1)
        return done, failed + len(pending), samples


# The soak measures the service, not the per-key limiter: one admin key stands for 40 clients.
UNLIMITED = {"RAG_REQUESTS_PER_MINUTE": "100000000", "RAG_UPLOAD_BYTES_PER_MINUTE": str(2**50),
             "RAG_MODEL_CALLS_PER_MINUTE": "100000000"}


def _start_server(data_dir: Path, port: int, log: Path, max_queued: int) -> subprocess.Popen:
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_PORT": str(port), **UNLIMITED,
           "RAG_MAX_QUEUED_JOBS": str(max_queued)}
    proc = subprocess.Popen([sys.executable, "-m", "rag_cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError(f"server did not start; see {log}")


def run(minutes: float, writers: int, readers: int, url: str | None, key: str | None, seed_docs: int,
        interval_s: float, max_queued: int = 64, echo=print) -> Report:
    proc = None
    tmp = None
    if url is None:
        import socket

        tmp = Path(tempfile.mkdtemp(prefix="rag-soak-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        echo(f"starting rag serve on port {port} (data {tmp}, log {tmp / 'server.log'})")
        proc = _start_server(tmp / "state", port, tmp / "server.log", max_queued)
        url, key = f"http://127.0.0.1:{port}", (tmp / "state" / "admin.key").read_text().strip()
    soak = Soak(url, key or "", "soak", proc.pid if proc else None)
    try:
        with soak.client() as c:
            c.post("/v1/collections", json={"name": "soak"})
            rng = random.Random(7)
            ids = [c.post("/v1/collections/soak/documents", files=[("files", (f"seed-{i}.md", document(-i - 1, rng)))])
                   .json()["jobs"][0]["id"] for i in range(seed_docs)]
            soak.stats.accepted.extend(ids)
        soak.wait_jobs(600)
        rss_start = soak.rss_mb()
        single = soak.run_threads(0, 1, 10, interval_s, [], lambda row: None)
        echo(f"one reader: search p50 {_pct(single, 0.5):.1f} ms over {len(single)} searches")
        echo(f"idle: {readers} readers, no writers, 30 s")
        idle = soak.run_threads(0, readers, 30, interval_s, [], lambda row: None)
        echo(f"idle search p50 {_pct(idle, 0.5):.1f} ms, p99 {_pct(idle, 0.99):.1f} ms over {len(idle)} searches")
        intervals: list[Interval] = []
        echo(f"load: {writers} writers + {readers} readers for {minutes} min")
        echo(f"{'t (s)':>7} {'searches':>8} {'p50 ms':>8} {'p99 ms':>8} {'uploads':>7} {'429s':>5} {'errors':>6} {'RSS MB':>7}")

        def line(r: Interval) -> None:
            f = lambda v: "—" if v is None else f"{v:.0f}"  # noqa: E731
            echo(f"{r.t_s:7.0f} {r.searches:8d} {f(r.search_p50_ms):>8} {f(r.search_p99_ms):>8} "
                 f"{r.uploads_accepted:7d} {r.uploads_pushed_back:5d} {r.errors:6d} {f(r.rss_mb):>7}")

        loaded = soak.run_threads(writers, readers, minutes * 60, interval_s, intervals, line)
        echo("waiting for every acknowledged upload to finish…")
        done, failed, samples = soak.wait_jobs(3600)
        idle_p50, load_p50 = _pct(idle, 0.5) or 0.0, _pct(loaded, 0.5) or 0.0
        rss = [r.rss_mb for r in intervals if r.rss_mb is not None]
        return Report(writers, readers, minutes, round(_pct(single, 0.5) or 0, 1), round(idle_p50, 1), round(_pct(idle, 0.99) or 0, 1),
                      round(load_p50, 1), round(_pct(loaded, 0.99) or 0, 1),
                      round(load_p50 / idle_p50, 1) if idle_p50 else 0.0,
                      len(soak.stats.accepted), done, failed, len(soak.stats.errors), soak.stats.errors[:10] + samples,
                      round(rss_start, 0) if rss_start else None, round(soak.rss_mb() or 0, 0) or None,
                      round(max(rss), 0) if rss else None, intervals)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def write(report: Report, path: Path) -> None:
    path.write_text(json.dumps(asdict(report), indent=1))


def summary(r: Report) -> str:
    ok = r.jobs_done == r.uploads_acknowledged and r.errors == 0
    return (f"{r.writers} writers + {r.readers} readers, {r.minutes} min: search p50 {r.load_p50_ms} ms "
            f"({r.readers} readers alone {r.idle_p50_ms} ms, {r.ratio_p50}x; one reader alone {r.single_p50_ms} ms), "
            f"p99 {r.load_p99_ms} ms (alone {r.idle_p99_ms} ms); "
            f"{r.uploads_acknowledged} uploads acknowledged, {r.jobs_done} done, {r.jobs_failed} failed; "
            f"{r.errors} errors; RSS {r.rss_start_mb} -> {r.rss_end_mb} MB (max {r.rss_max_mb}); "
            f"{'OK' if ok else 'NOT OK'}")
