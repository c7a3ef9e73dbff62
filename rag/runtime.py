"""The running service's state: settings, loaded models, and (later) store and indexes.

The API builds one Runtime at start-up and hands it to its routes; the CLI builds one for
commands that need models. Nothing here knows about HTTP.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

from rag import __version__
from rag.models.loader import ModelStatus, load_embedder, load_generator
from rag.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    embedder: object | None = None
    generator: object | None = None
    models: dict[str, ModelStatus] = field(default_factory=dict)
    db: object | None = None
    index: object | None = None
    ingest: object | None = None
    searcher: object | None = None
    questions: object | None = None

    def load_models(self, *, progress: bool = False) -> None:
        self.embedder, status = load_embedder(self.settings, progress=progress)
        self.models["embedder"] = status
        if self.settings.load_generator:
            self.generator, status = load_generator(self.settings, progress=progress)
            self.models["generator"] = status

    def start(self, *, progress: bool = False, worker: bool = True) -> None:
        """Everything the service needs before it answers: models, database, indexes, ingestion."""
        from ingest.service import IngestService
        from rag.index.manager import IndexManager
        from rag.search import Searcher
        from rag.store import ThreadConnections, open_db

        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.load_models(progress=progress)
        open_db(self.settings.db_path).close()  # migrations, once, before any other connection
        self.db = ThreadConnections(self.settings.db_path)
        self.index = IndexManager.from_settings(self.settings)
        self.index_reports = self.index.open()
        self.searcher = Searcher(self.db, self.index, self.embedder)
        self.ingest = IngestService(self.settings, self.db, self.index, self.embedder)
        from rag.answering import QuestionService

        self.questions = QuestionService(self.settings, self.db, self.searcher, self.generator, self.embedder)
        self.questions.recover()
        if worker:
            self.ingest.start()

    def search(self, collection: str, query: str, k: int) -> dict:
        return self.searcher.search_view(collection, query, k)

    def health(self) -> dict:
        return {
            "status": "ok",
            "version": __version__,
            "versions": versions(),
            "models": {kind: vars(status) for kind, status in self.models.items()},
            "ingestion": {"pending_jobs": self.ingest.pending() if self.ingest else 0},
        }

    def close(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
        if self.index is not None:
            self.index.close()
        if self.db is not None:
            self.db.close_all()


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"service": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "sentence-transformers", "faiss-cpu", "pypdf", "fastapi", "bm25s"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "missing"
    return out
