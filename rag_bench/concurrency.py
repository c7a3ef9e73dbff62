"""`rag bench concurrency`: questions per minute and latency under concurrent clients, in-process
generator against a model server.

What it answers: how much does a server runtime (`RAG_GENERATOR_RUNTIME=openai`, questions answered
`RAG_MAX_CONCURRENT_QUESTIONS` at a time, the server batching their decoding) gain over the in-process
`llamacpp` runtime (one question at a time) on the same machine, with the same GGUF and the same
questions. Both runs go through `QuestionService.ask` (retrieval, packing, the model calls, the
ledger), on one small collection ingested once; `clients` threads take questions from one queue.
A warm-up question precedes each timed run. The figures compare the two runs of one invocation;
on a shared machine, absolute numbers move with the other load, ratios less.

`LlamaServer` starts llama.cpp's HTTP server (xllamacpp) in a child process on a loopback port: this
bench uses it, and the tests of the openai runtime run against it (they also kill it mid-answer).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

_CHILD = r"""
import os, sys, time
import xllamacpp as xlc
gguf, port, slots, ctx, threads, alias = sys.argv[1:7]
p = xlc.CommonParams()
p.model.path = gguf
p.model_alias = {alias}
p.n_parallel = int(slots)
p.n_ctx = int(ctx) * int(slots)
p.cpuparams.n_threads = int(threads)
p.cpuparams_batch.n_threads = int(threads)
p.n_batch = 512
p.port = int(port)
p.hostnames = ["127.0.0.1"]
p.use_jinja = True
p.fit_params = False
p.cache_ram_mib = 0
p.ctx_shift = False
p.warmup = False
p.verbosity = -1
server = xlc.Server(p)
print("ready", flush=True)
parent = os.getppid()
while os.getppid() == parent:  # no orphan server when the process that started it dies
    time.sleep(0.5)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LlamaServer:
    """llama.cpp's OpenAI-compatible server in a child process; `url` is its `/v1` base URL."""

    proc: subprocess.Popen
    url: str
    slots: int

    @classmethod
    def start(cls, gguf: Path, *, slots: int = 1, ctx_per_slot: int = 2048, threads: int = 1,
              alias: str = "model", timeout_s: float = 120.0) -> "LlamaServer":
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(gguf), str(port), str(slots), str(ctx_per_slot),
                                 str(threads), alias], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        server = cls(proc, f"http://127.0.0.1:{port}/v1", slots)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {proc.returncode} while loading {gguf}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        server.stop()
        raise RuntimeError(f"llama.cpp server not ready within {timeout_s} s")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no goodbye on open connections."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


# ---------------------------------------------------------------- the corpus and the questions

DOCS = {
    "orchard.md": "# Orchard cooperative\n\nThe Lindqvist orchard cooperative was founded in 1987 by eleven farmers. "
                  "It grows apples and pears on 340 hectares near the river Ume. Members deliver fruit to the "
                  "central press every Tuesday and Friday during harvest.\n\nThe cooperative's cider won the "
                  "regional prize in 2019. Its chairperson is Maja Ek, elected in 2021.",
    "ferry.txt": "The Harbour Line ferry leaves the east pier every 40 minutes from 06:00 to 23:20. A single ticket "
                 "costs 4.50 euros; a monthly pass costs 62 euros. Bicycles travel free outside rush hours "
                 "(07:00-09:00 and 16:00-18:00). The crossing takes 25 minutes in calm weather.",
    "library.txt": "The Northgate library lends up to 12 books per card for four weeks. Loans can be renewed twice "
                   "online. Late returns cost 0.20 euros per book per day, capped at 8 euros. The reading room "
                   "on the second floor is open until 21:00 on weekdays.",
    "boiler.md": "# Boiler maintenance\n\nThe Vantor B2 boiler needs a service every 12 months. Bleed the "
                 "radiators when the pressure gauge reads below 1.0 bar, then top up to 1.5 bar through the "
                 "filling loop. Error code E119 means low water pressure; E133 means the flame failed to light.",
}

QUESTIONS = [
    "When was the Lindqvist orchard cooperative founded?",
    "How much does a monthly ferry pass cost?",
    "How many books can I borrow with one library card?",
    "What does boiler error code E133 mean?",
    "How long does the ferry crossing take?",
    "What is the late fee for library books?",
    "Who chairs the orchard cooperative?",
    "How often does the Vantor B2 boiler need a service?",
]


@dataclass
class RunResult:
    label: str
    slots: int
    questions: int
    seconds: float
    latencies: list[float]
    errors: int
    model_calls: int = 0
    completion_tokens: int = 0

    @property
    def per_minute(self) -> float:
        return 60.0 * self.questions / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))] if xs else float("nan")


def _ask_all(rt, questions: list[str], clients: int, label: str) -> RunResult:
    """`clients` threads take questions from one queue until it is empty."""
    from rag.service.answering import AskRequest

    todo: queue.Queue[str] = queue.Queue()
    for q in questions:
        todo.put(q)
    latencies: list[float] = []
    errors = [0]
    usage = {"model_calls": 0, "completion_tokens": 0}
    lock = threading.Lock()

    def client() -> None:
        while True:
            try:
                q = todo.get_nowait()
            except queue.Empty:
                return
            t = time.monotonic()
            try:
                out = rt.questions.ask(AskRequest("bench", q))
                with lock:
                    latencies.append(time.monotonic() - t)
                    for key in usage:
                        usage[key] += out.usage[key]
            except Exception as exc:  # counted and shown; the run goes on
                print(f"  {label}: {q!r} failed: {exc}", file=sys.stderr)
                with lock:
                    errors[0] += 1

    rt.questions.ask(AskRequest("bench", questions[0]))  # warm-up: caches, first-call allocations
    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return RunResult(label, rt.questions.slots, len(latencies), time.monotonic() - t0, latencies, errors[0],
                     usage["model_calls"], usage["completion_tokens"])


def _in_process(settings, data, common, questions, clients, slots, gguf_dir, name) -> RunResult:
    rt = _runtime(settings, data, generator_runtime="llamacpp", **common)
    try:
        return _ask_all(rt, questions, clients, "in-process llamacpp")
    finally:
        rt.generator.close()
        rt.close()


def _on_server(settings, data, common, questions, clients, slots, gguf_dir, name) -> RunResult:
    server = LlamaServer.start(gguf_dir / "model.gguf", slots=slots, ctx_per_slot=max(2048, settings.context_window),
                               threads=common["threads"], alias=name)
    try:
        rt = _runtime(settings, data, generator_runtime="openai", generator_url=server.url, generator_model=name,
                      max_concurrent_questions=slots, **common)
        try:
            return _ask_all(rt, questions, clients, f"llama.cpp server, {slots} slots (openai)")
        finally:
            rt.generator.close()
            rt.close()
    finally:
        server.stop()


def _runtime(settings, data_dir: Path, **over):
    from rag.service.runtime import Runtime

    rt = Runtime(settings.model_copy(update={"data_dir": data_dir, "model_cache_dir": settings.models_dir,
                                             "ingest_embed_process": False, **over}))
    rt.start(worker=False)
    if not any(c.name == "bench" for c in rt.collections.list()):
        _ingest(rt)
    return rt


def _ingest(rt) -> None:
    from ingest.uploads import Upload
    from rag import store

    store.create_collection(rt.db.get(), "bench", "rag bench concurrency")
    for name, text in DOCS.items():
        (job,) = rt.ingest.submit("bench", [Upload(name, text.encode())])
        if rt.ingest.run_job(job.id) is None:
            raise RuntimeError(f"{name}: {rt.ingest.get_job(job.id).error_message}")


def pick_generator(settings) -> str:
    """The 0.5B Qwen when it is prepared in the model cache (either runtime's folder), else SmolLM2-135M."""
    from rag.models import cache
    from rag.models.registry import REGISTRY

    qwen = REGISTRY["qwen2.5-coder-0.5b-instruct"]
    return qwen.name if cache.is_prepared(qwen, settings.models_dir) else "smollm2-135m-instruct"


def main(settings=None, *, clients: int = 4, slots: int = 4, rounds: int = 2, max_answer_tokens: int = 64,
         generator: str | None = None, threads: int = 0, repeats: int = 2) -> dict:
    """Runs both configurations `repeats` times (alternating which goes first) and prints a table;
    returns the figures. `rounds`: passes over the questions (8 each). `threads` 0: one per core."""
    from rag.models import cache
    from rag.models.registry import REGISTRY
    from rag.settings import Settings

    settings = settings or Settings()
    name = generator or pick_generator(settings)
    gguf_dir = cache.prepare(REGISTRY[name], settings.models_dir, progress=False, runtime="llamacpp").path
    n_threads = threads or (os.cpu_count() or 1)
    questions = QUESTIONS * rounds
    common = {"generator": name, "max_answer_tokens": max_answer_tokens, "threads": n_threads}
    print(f"generator {name}, {clients} clients, {len(questions)} questions, {n_threads} threads, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="rag-bench-concurrency-") as tmp:
        data = Path(tmp)
        for r in range(repeats):  # alternate the order, so a drift in the machine's other load hits both
            runs = [_in_process, _on_server] if r % 2 == 0 else [_on_server, _in_process]
            for run in runs:
                results.append(run(settings, data, common, questions, clients, slots, gguf_dir, name))
                print(f"  {results[-1].label}: {results[-1].per_minute:.2f} questions/min, load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    print(report(results))
    return {"generator": name, "clients": clients, "results": [
        {"label": r.label, "slots": r.slots, "questions": r.questions, "seconds": round(r.seconds, 2),
         "per_minute": round(r.per_minute, 2), "p50_s": round(r.pct(0.5), 2), "p90_s": round(r.pct(0.9), 2),
         "model_calls": r.model_calls, "completion_tokens": r.completion_tokens, "errors": r.errors}
        for r in results]}


def report(results: list[RunResult]) -> str:
    from rag_bench.markdown import table

    base = results[0]
    rows = [[r.label, str(r.slots), str(r.questions), f"{r.seconds:.1f}", f"{r.per_minute:.2f}",
             f"{r.pct(0.5):.2f}", f"{r.pct(0.9):.2f}", f"{statistics.mean(r.latencies):.2f}" if r.latencies else "—",
             str(r.model_calls), str(r.completion_tokens), str(r.errors),
             f"{r.per_minute / base.per_minute:.2f}x" if base.per_minute else "—"] for r in results]
    return "\n".join(table(["runtime", "slots", "questions", "wall s", "questions/min", "p50 s", "p90 s", "mean s",
                            "model calls", "completion tokens", "errors", "throughput vs first"], rows))


if __name__ == "__main__":
    main()
