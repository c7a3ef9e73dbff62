"""The composition root: settings, loaded models, the store, the indexes and the services on them.

The API builds one `Runtime` at start-up and hands it to its routes; the CLI and the benches build
one per command. Everything above this module talks to the services it holds (`ingest`,
`collections`, `searcher`, `questions`), never to the store or the indexes. Nothing here knows
about HTTP. SQLite or Postgres is chosen once, by `rag.service.backend.open_backend`; the services
see only the `Connections` and `SearchIndex` protocols.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rag import __version__
from rag.ask import LLM
from rag.index.search_index import OpenReport, SearchIndex
from rag.models.embed_process import ChildSpec, EmbedProcess
from rag.models.embedder import Embedder
from rag.models.loader import ModelStatus, load_embedder, load_generator, loads_in_parallel
from rag.service.answering import QuestionService
from rag.service.auth import KeyService
from rag.service.chat import ChatService
from rag.service.conversations import ConversationService
from rag.service.backend import open_backend
from rag.service.collections import CollectionService
from rag.service.ingesting import IngestService
from rag.service.presence import Presence
from rag.service.quotas import Quotas, SharedQuotas
from rag.service.searching import Searcher
from rag.settings import Settings
from rag.store import Connections, StoreLocation, servers
from rag.store.datadir_lock import DataDirLock

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    embedder: Embedder | None = None
    embed_process: EmbedProcess | None = None  # ingestion's embedder, when it runs in a child process
    generator: LLM | None = None
    models: dict[str, ModelStatus] = field(default_factory=dict)
    db: Connections | None = None
    index: SearchIndex | None = None
    index_reports: list[OpenReport] = field(default_factory=list)
    ingest: IngestService | None = None
    collections: CollectionService | None = None
    searcher: Searcher | None = None
    questions: QuestionService | None = None
    presence: Presence | None = None  # this process's heartbeat row; reaps dead processes' questions
    conversations: ConversationService | None = None
    chat: ChatService | None = None
    keys: KeyService | None = None
    quotas: Quotas | None = None
    startup: dict[str, float] = field(default_factory=dict)  # seconds per start-up phase (logged, in /health)
    dir_lock: DataDirLock | None = None  # the embedded store's data dir, held shared: `rag restore` waits for none

    def load_models(self, *, progress: bool = False) -> None:
        """The embedder, and the generator beside it when they can load at once (`loads_in_parallel`):
        a restart is ready in about the longer of the two loads instead of their sum."""
        self.startup["models_at_once"] = loads_in_parallel(self.settings)
        if not self.startup["models_at_once"]:
            self.embedder, self.models["embedder"] = load_embedder(self.settings, progress=progress)
            if self.settings.load_generator:
                self.generator, self.models["generator"] = load_generator(self.settings, progress=progress)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="rag-load-generator") as pool:
            generator = pool.submit(load_generator, self.settings, progress=progress)
            self.embedder, self.models["embedder"] = load_embedder(self.settings, progress=progress)
            self.generator, self.models["generator"] = generator.result()

    @property
    def shared_store(self) -> bool:
        """PostgreSQL (`RAG_DATABASE_URL`): state shared with other processes, nothing to recover here."""
        return StoreLocation.from_settings(self.settings).shared

    def start(self, *, progress: bool = False, worker: bool = True, warm_ingest: bool = False) -> None:
        """Everything the service needs before it answers: models, database, indexes, ingestion.

        `warm_ingest` starts ingestion's embedding child now, in the background, instead of at the first
        upload: starting it (a Python process importing torch and loading the embedder) is seconds a first
        small upload would otherwise wait for. `rag serve` asks for it; a one-off CLI command does not."""
        t0 = time.monotonic()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.shared_store:
            self.dir_lock = DataDirLock(self.settings.data_dir, exclusive=False)
        backend, t1, t2 = self._open_beside_models(progress, t0)
        self.db, self.index = backend.db, backend.index
        self.searcher = Searcher(self.db, self.index, self.embedder)
        self.collections = CollectionService(self.db, self.index)
        if self.settings.ingest_embed_process and not self.settings.embedder_url:  # a server embeds: no child
            self.embed_process = EmbedProcess(ChildSpec(
                folder=self.models["embedder"].path, model_id=self.embedder.model_id,
                passage_prefix=self.embedder.passage_prefix, batch_size=self.embedder.batch_size,
                threads=self.settings.threads, niceness=self.settings.ingest_niceness,
                precision=self.embedder.precision), self.embedder.dim)
        self.ingest = IngestService(self.settings, self.db, self.index, self.embedder, self.embed_process)
        self.presence = Presence(self.settings, self.db, shared=backend.shared)
        self.questions = QuestionService(self.settings, self.db, self.searcher, self.generator, self.embedder,
                                         server_id=self.presence.id)
        self.conversations = ConversationService(self.settings, self.db, self.questions)
        self.chat = ChatService(self.settings, self.questions)
        # registers this process and closes the questions of dead ones (never those of a live server)
        self.presence.start()
        self.keys = KeyService(self.settings, self.db)
        if self.settings.auth == "on":
            self.keys.bootstrap()
        # several servers on one Postgres count a key's limits once, in Postgres; one process in memory
        self.quotas = (SharedQuotas(self.settings, self.db, self.presence.id) if backend.shared
                       else Quotas(self.settings))
        if worker and (self.settings.serve_worker or not backend.shared):
            self.ingest.start()
            if warm_ingest and self.embed_process is not None:
                threading.Thread(target=self._warm_embed_process, name="rag-embed-warm", daemon=True).start()
        if warm_ingest:
            threading.Thread(target=self.embedder.warm_up, name="rag-embedder-warm", daemon=True).start()
        self._log_startup(t0, t1, t2, time.monotonic())

    def _open_beside_models(self, progress: bool, t0: float):
        """The store and its indexes open while the models load when nothing in them needs the embedder
        (the embedded store; Postgres' vector index needs its dimension first): a restart then waits for
        the longer of the two, not their sum. Returns the backend and when the models and the store were done."""
        def open_store(dim: int | None):
            backend = open_backend(self.settings, dim=dim)
            self.index_reports = backend.index.open()
            return backend, time.monotonic()

        if self.shared_store:
            self.load_models(progress=progress)
            t1 = time.monotonic()
            backend, t2 = open_store(self.embedder.dim)
            self.startup["store_and_indexes_s"] = round(t2 - t1, 2)
            return backend, t1, t2
        with ThreadPoolExecutor(1, thread_name_prefix="rag-open-store") as pool:
            opened = pool.submit(open_store, None)
            self.load_models(progress=progress)
            t1 = time.monotonic()
            backend, t2 = opened.result()
        self.startup["store_and_indexes_s"] = round(t2 - t0, 2)
        return backend, t1, max(t1, t2)

    def _log_startup(self, t0: float, t1: float, t2: float, t3: float) -> None:
        """Where start-up time went: restarts must stay quick, and this says which phase did not."""
        loads = {kind: st.load_seconds for kind, st in self.models.items() if st.load_seconds is not None}
        self.startup = {**self.startup, "total_s": round(t3 - t0, 2), "models_s": round(t1 - t0, 2),
                        **{f"{kind}_s": v for kind, v in loads.items()},
                        "services_s": round(t3 - t2, 2)}
        log.info("%s", self.startup_line())

    def startup_line(self) -> str:
        s = self.startup
        loads = ", ".join(f"{kind} {s[f'{kind}_s']:.1f} s" for kind in self.models if f"{kind}_s" in s)
        at_once = " at once" if s.get("models_at_once") else ""
        beside = "" if self.shared_store else " beside them"
        return (f"ready in {s['total_s']:.1f} s: models {s['models_s']:.1f} s ({loads}{at_once}), store and indexes "
                f"{s['store_and_indexes_s']:.1f} s{beside}, services and recovery {s['services_s']:.1f} s")

    def _warm_embed_process(self) -> None:
        """A failure here is only logged: the first batch starts the child again and reports its error."""
        try:
            self.embed_process.start()
        except Exception as exc:  # noqa: BLE001
            log.warning("the ingestion embedding process did not start ahead of use: %s", exc)

    def health(self, *, detail: bool = True, scope: list[str] | None = None) -> dict:
        """Status for anyone. With `detail` (an admin key, or auth off) versions, model folders, the store,
        the queue and the machine; with a `scope` (a key limited to those collections) only what it may
        know: which models answer, and the jobs queued or running in its own collections."""
        if scope is not None:
            return self._scoped_health(scope)
        if not detail:
            return {"status": "ok"}
        return {
            "status": "ok",
            "version": __version__,
            "versions": versions(),
            "models": {kind: vars(status) for kind, status in self.models.items()},
            "store": self.store_info(),
            "ingestion": {"pending_jobs": self.ingest.pending() if self.ingest else 0},
            "machine": machine_info(),
            "startup": self.startup,
        }

    def _scoped_health(self, collections: list[str]) -> dict:
        from rag.store.jobs import count_unfinished_jobs

        models = {kind: {"name": st.name, "loaded": st.loaded, "runtime": st.details.get("runtime"),
                         "mode": st.details.get("mode")} for kind, st in self.models.items()}
        pending = count_unfinished_jobs(self.db.get(), collections) if self.db is not None else 0
        return {"status": "ok", "models": models, "ingestion": {"pending_jobs": pending}}

    def store_info(self) -> dict:
        """Which store this process uses (the Postgres URL without its password), and the processes
        answering questions on it with the seconds since their last heartbeat."""
        if self.shared_store:
            from rag.store.pg import redact

            info = {"backend": "postgres", "url": redact(self.settings.database_url),
                    "worker": bool(self.ingest and self.ingest.worker_id and self.settings.serve_worker)}
        else:
            info = {"backend": "sqlite", "path": str(self.settings.db_path), "worker": True}
        return {**info, "servers": self._servers()}

    def _servers(self) -> list[dict] | None:
        """None when the store cannot say now: health still answers while the database is away."""
        if self.db is None:
            return []
        me = self.presence.id if self.presence else None
        try:
            listed = servers.list_servers(self.db.get())
        except Exception:  # noqa: BLE001 - a store outage is reported by the requests that need it (503)
            return None
        return [{"id": s.id, "host": s.host, "pid": s.pid, "data_dir": s.data_dir, "started_at": s.started_at,
                 "silent_s": round(s.silent_s, 1), "this": s.id == me} for s in listed]

    def close(self) -> None:
        if self.presence is not None:
            self.presence.close()
        if self.ingest is not None:
            self.ingest.stop()
        for model in (self.generator, self.embedder):  # HTTP clients of the server runtimes
            close = getattr(model, "close", None)
            if callable(close):
                close()
        if self.embed_process is not None:
            self.embed_process.close()
        if self.index is not None:
            self.index.close()
        if self.db is not None:
            self.db.close_all()
        if self.dir_lock is not None:
            self.dir_lock.release()


def machine_info() -> dict:
    """The CPU (its class decides what `RAG_GENERATOR_RUNTIME=auto` runs) and this process's memory: resident
    now and at its peak (VmHWM, which includes loading the models), in MB."""
    from rag.models.cpu import read_cpu

    cpu = read_cpu()
    memory = {}
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                memory[{"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}[key]] = round(int(value.split()[0]) / 1024)
    except OSError:  # not Linux: no figures rather than wrong ones
        pass
    return {"cpu": cpu.model, "cpu_class": cpu.cpu_class, "cpus": os.cpu_count(), **memory}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"service": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "sentence-transformers", "faiss-cpu", "pypdf", "fastapi", "bm25s", "psycopg",
                 "pgvector", "openai"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "missing"
    return out
