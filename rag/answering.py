"""Questions over a collection: the asking loop wired to real retrieval, the generator and the ledger.

`QuestionService.ask` opens a ledger row, runs `rag.ask.ask` with a retriever scoped to one
collection, commits every model call as it returns, and closes the row with the result and the
full trace before returning, whether the loop answered, abstained, was stopped by a budget or
failed. Questions run one at a time (the generator is not re-entrant).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from rag.ask import AskOptions, Budget, Candidate
from rag.ask.loop import ask as run_loop
from rag.errors import RagError
from rag.search import SearchResult, Searcher
from rag.settings import Settings
from rag.store import ThreadConnections, ledger
from rag.store import repository as repo



def _candidate(r: SearchResult, *, scored: bool = True) -> Candidate:
    s = r.scores if scored else {}
    bm25 = s.get("bm25")
    has_bm25 = bm25 is not None and bm25 > 0
    return Candidate(
        chunk_id=r.chunk_id, document_id=r.document_id, filename=r.filename, page=r.page, ordinal=r.ordinal,
        text=r.text, char_start=r.char_start, char_end=r.char_end, prev_id=r.prev_id, next_id=r.next_id,
        dense_score=s.get("dense"), dense_rank=s.get("dense_rank"),
        bm25_score=bm25 if has_bm25 else None, bm25_rank=s.get("bm25_rank") if has_bm25 else None,
        fused_score=float(s.get("fused") or 0.0),
    )


class CollectionRetriever:
    """The loop's `Retriever` over one collection: hybrid search, chunks by id, and languages present."""

    def __init__(self, searcher: Searcher, collection: str, *, dense: bool = True, lexical: bool = True):
        self.searcher = searcher
        self.collection = collection
        self.dense, self.lexical = dense, lexical

    def search(self, query: str, k: int) -> list[Candidate]:
        hits = self.searcher.hits(self.collection, query, k, dense=self.dense, lexical=self.lexical)
        return [_candidate(r) for r in self.searcher.hydrate(hits)]

    def get_chunk(self, chunk_id: int) -> Candidate | None:
        conn = self.searcher.db.get()
        chunks = repo.get_chunks(conn, [chunk_id])
        if not chunks or chunks[0].collection != self.collection:
            return None
        c = chunks[0]
        doc = repo.get_document(conn, c.document_id)
        return Candidate(chunk_id=c.id, document_id=c.document_id, filename=doc.filename, page=c.page,
                         ordinal=c.ordinal, text=c.text, char_start=c.char_start, char_end=c.char_end,
                         prev_id=c.prev_id, next_id=c.next_id)

    def languages(self) -> set[str]:
        return set(self.searcher.languages(self.collection))

    def lexical_skipped(self, query: str) -> str | None:
        return self.searcher.plan(self.collection, query, dense=self.dense, lexical=self.lexical).lexical_skipped


@dataclass
class AskRequest:
    collection: str
    question: str
    budget: dict | None = None
    options: dict | None = None


class QuestionService:
    def __init__(self, settings: Settings, db: ThreadConnections, searcher: Searcher, generator, embedder):
        self.settings = settings
        self.db = db
        self.searcher = searcher
        self.generator = generator
        self.embedder = embedder
        self._lock = threading.Lock()

    def recover(self) -> None:
        ledger.fail_running(self.db.get())

    def ask(self, req: AskRequest, *, on_event: Callable[[dict], None] | None = None,
            on_token: Callable[[str], None] | None = None, qid: str | None = None) -> dict:
        if self.generator is None:
            raise RagError("the generator is not loaded (RAG_LOAD_GENERATOR=false)", code="generator_unavailable", status=503)
        conn = self.db.get()
        repo.get_collection(conn, req.collection)
        question = req.question.strip()
        if not question:
            raise RagError("the question is empty", code="empty_question", status=422)
        budget = Budget.from_settings(self.settings).merged(req.budget)
        options = AskOptions.from_settings(self.settings).merged(req.options)
        qid = qid or uuid.uuid4().hex
        models = {"generator": self.generator.model_id, "embedder": self.embedder.model_id,
                  "generator_mode": getattr(self.generator, "mode", self.settings.generator_mode),
                  "generator_runtime": getattr(self.generator, "runtime", "transformers")}
        ledger.start_question(conn, qid, req.collection, question, budget=budget.to_dict(),
                              options=options.to_dict(), models=models)
        events: list[dict] = []

        def record(event: dict) -> None:
            events.append(event)
            if event.get("type") == "model_call":
                ledger.record_call(self.db.get(), qid, event)
            if on_event:
                on_event(event)

        retriever = CollectionRetriever(self.searcher, req.collection)
        t0 = time.monotonic()
        try:
            with self._lock:
                result = run_loop(question, retriever, self.generator, budget, options, record, on_token)
        except BaseException as exc:
            code = getattr(exc, "code", "client_disconnected" if isinstance(exc, GeneratorExit) else "internal_error")
            ledger.finish_question(self.db.get(), qid, status="failed", result=None,
                                   trace={"events": events, "context": []}, seconds=time.monotonic() - t0,
                                   error_code=code, error_message=str(exc) or type(exc).__name__)
            raise
        data = result.to_dict()
        trace = data.pop("trace")
        data.pop("calls", None)
        out = {"id": qid, **data}
        status = "abstained" if result.abstained else ("stopped" if result.stopped_by else "answered")
        ledger.finish_question(self.db.get(), qid, status=status, result=out, trace=trace,
                               seconds=time.monotonic() - t0)
        return out

    def get(self, qid: str) -> dict:
        return ledger.get_question(self.db.get(), qid)

    def trace(self, qid: str) -> dict:
        return ledger.get_trace(self.db.get(), qid)

    def list(self, collection: str | None, since: str | None, limit: int) -> list[dict]:
        return ledger.list_questions(self.db.get(), collection=collection, since=since, limit=limit)

    def usage(self, collection: str | None, group_by: str) -> list[dict]:
        return ledger.usage(self.db.get(), collection=collection, group_by=group_by)
