"""Questions over a collection: the asking loop wired to real retrieval, the generator and the ledger.

`QuestionService.prepare` checks everything a question can fail on before any model runs (the
collection, the text, the budget and options, a loaded generator), so the API can refuse it with
a 4xx before a stream starts. `QuestionService.ask` then opens a ledger row, runs `rag.ask.ask`
with a retriever scoped to one collection, commits every model call as it returns, and closes the
row with the result and the full trace before returning, whether the loop answered, abstained, was
stopped by a budget or failed. In-process generators answer one question at a time (they are not
re-entrant, and one generation already uses every core); a server runtime answers up to
`RAG_MAX_CONCURRENT_QUESTIONS` at once (the server batches them), the rest wait their turn.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, fields

from rag import store
from rag.ask import LLM, AskOptions, AskResult, Budget, Citation, ModelCall
from rag.ask.condense import History
from rag.ask.loop import ask as run_loop
from rag.ask.types import verified_of
from rag.errors import RagError
from rag.models.embedder import Embedder
from rag.service.searching import CollectionRetriever, Searcher
from rag.settings import Settings
from rag.store import Connections, ledger, open_configured


FEEDBACK_COMMENT_CHARS = 2000  # a comment says why; longer text is not feedback but a document


@dataclass
class AskRequest:
    collection: str
    question: str
    budget: dict | None = None
    options: dict | None = None
    history: History | None = None  # earlier turns: the question is a follow-up (rag.ask.condense)
    conversation: str | None = None  # the conversation the question is the next turn of


@dataclass(frozen=True)
class PreparedQuestion:
    """A question that passed every check that needs no model: what the loop runs with."""

    collection: str
    question: str
    budget: Budget
    options: AskOptions
    history: History | None = None
    conversation: str | None = None


@dataclass(frozen=True)
class Answer:
    """What `QuestionService.ask` returns: the loop's result under its question id, without the trace
    and the model calls (the ledger holds both). `to_dict()` is the API's JSON answer and what the
    ledger records as the question's result."""

    id: str
    question: str
    language: str
    answer: str
    abstained: bool
    citations: list[Citation]
    usage: dict
    stopped_by: str | None
    complete: bool  # False: the answer call was cut; the answer keeps only what could be checked
    incomplete_reason: str | None  # "timeout_s" | "max_answer_tokens" when not complete
    support: dict
    # A conversation's turn only (left out of the JSON otherwise): the conversation, the turn's index,
    # and the follow-up as it was searched when it was condensed (else None).
    conversation_id: str | None = None
    turn: int | None = None
    standalone_question: str | None = None

    @classmethod
    def of(cls, qid: str, result: AskResult, conversation: str | None = None, turn: int | None = None) -> Answer:
        return cls(qid, result.question, result.language, result.answer, result.abstained, result.citations,
                   result.usage, result.stopped_by, result.complete, result.incomplete_reason, result.support,
                   conversation, turn, result.standalone_question)

    def to_dict(self) -> dict:
        out = {**{f.name: getattr(self, f.name) for f in fields(self)},
               "citations": [c.to_dict() for c in self.citations],
               "verified": verified_of(self.abstained, self.support),
               "dropped_sentences": int(self.support.get("dropped", 0))}
        if self.conversation_id is None:
            for name in ("conversation_id", "turn", "standalone_question"):
                out.pop(name)
        return out


class QuestionService:
    def __init__(self, settings: Settings, db: Connections, searcher: Searcher, generator: LLM | None,
                 embedder: Embedder, *, server_id: str | None = None):
        self.settings = settings
        self.server_id = server_id  # this process in the servers table: its death closes its questions
        self.db = db
        self.searcher = searcher
        self.generator = generator
        self.embedder = embedder
        self.slots = question_slots(settings, generator)
        self._slots = threading.BoundedSemaphore(self.slots)

    def prepare(self, req: AskRequest) -> PreparedQuestion:
        """Validates a request: unknown collection (404), empty question, budget or options (422), no
        generator (503), a collection with no documents (409). The collection is checked first so a
        missing one is a 404 in every setup."""
        store.get_collection(self.db.get(), req.collection)
        question = req.question.strip()
        if not question:
            raise RagError("the question is empty", code="empty_question", status=422)
        ceiling = Budget.from_settings(self.settings)
        _refuse_above(req.budget or {}, ceiling.to_dict())
        _refuse_above({k: v for k, v in (req.options or {}).items() if k == "max_answer_tokens"},
                      {"max_answer_tokens": self.settings.max_answer_tokens})
        budget = ceiling.merged(req.budget)
        options = AskOptions.from_settings(self.settings).merged(req.options)
        if self.generator is None:
            raise RagError("the generator is not loaded (RAG_LOAD_GENERATOR=false)", code="generator_unavailable", status=503)
        if not store.has_chunks(self.db.get(), req.collection):  # else the loop would answer "the documents do not say"
            raise RagError(f"collection {req.collection!r} is empty: upload documents before asking",
                           code="collection_empty", status=409)
        return PreparedQuestion(req.collection, question, budget, options, req.history, req.conversation)

    def ask(self, req: AskRequest | PreparedQuestion, *, on_event: Callable[[dict], None] | None = None,
            on_token: Callable[[str], None] | None = None, qid: str | None = None) -> Answer:
        q = req if isinstance(req, PreparedQuestion) else self.prepare(req)
        qid = qid or uuid.uuid4().hex
        generator = self.generator
        models = {"generator": generator.model_id, "embedder": self.embedder.model_id,
                  "generator_mode": generator.mode, "generator_runtime": generator.runtime}
        turn = ledger.start_question(self.db.get(), qid, q.collection, q.question, budget=q.budget.to_dict(),
                                     options=q.options.to_dict(), models=models, conversation=q.conversation,
                                     server=self.server_id)
        events: list[dict] = []

        def record(event: dict) -> None:
            events.append(event)
            if on_event:
                on_event(event)

        def on_call(call: ModelCall) -> None:
            ledger.record_call(self.db.get(), qid, call)

        retriever = CollectionRetriever(self.searcher, q.collection)
        t0 = time.monotonic()
        try:
            with self._slots:
                result = run_loop(q.question, retriever, generator, q.budget, q.options, record, on_token,
                                  on_call=on_call, history=q.history)
        except BaseException as exc:
            code = getattr(exc, "code", "client_disconnected" if isinstance(exc, GeneratorExit) else "internal_error")
            ledger.finish_question(self.db.get(), qid, status="failed", result=None,
                                   trace={"events": events, "context": []}, seconds=time.monotonic() - t0,
                                   error_code=code, error_message=str(exc) or type(exc).__name__)
            raise
        answer = Answer.of(qid, result, q.conversation, turn)
        status = "abstained" if result.abstained else ("stopped" if result.stopped_by else "answered")
        ledger.finish_question(self.db.get(), qid, status=status, result=answer.to_dict(),
                               trace=result.trace, seconds=time.monotonic() - t0)
        return answer

    def get(self, qid: str) -> dict:
        return ledger.get_question(self.db.get(), qid)

    def trace(self, qid: str) -> dict:
        return ledger.get_trace(self.db.get(), qid)

    def list(self, collection: str | None, since: str | None, limit: int, *, order: str = "recent",
             scope: list[str] | None = None) -> list[dict]:
        """`order`: `recent` (newest first) or `tokens` (prompt + completion tokens, most first; ties newest
        first); 422 `invalid_order` otherwise. `scope`: only these collections (None: all)."""
        return ledger.list_questions(self.db.get(), collection=collection, since=since, limit=limit, collections=scope,
                                     order=order)

    def usage(self, collection: str | None, group_by: str, *, scope: list[str] | None = None) -> list[dict]:
        """Rows per `day` (newest first) or per `collection` (by name); 400 `invalid_group_by` otherwise."""
        return ledger.usage(self.db.get(), collection=collection, group_by=group_by, collections=scope)

    def feedback(self, qid: str, key_id: str, rating: str, comment: str = "") -> dict:
        """Records a key's rating (`up`/`down`) of a question's answer, replacing its earlier one; the
        comment is at most `FEEDBACK_COMMENT_CHARS` characters (422 `invalid_request` beyond)."""
        comment = comment.strip()
        if len(comment) > FEEDBACK_COMMENT_CHARS:
            raise RagError(f"the comment is over {FEEDBACK_COMMENT_CHARS} characters", code="invalid_request",
                           status=422)
        return ledger.record_feedback(self.db.get(), qid, key_id, rating, comment)

    def export(self, *, collection: str | None = None, since: str | None = None, rated: str = "any",
               limit: int = 10_000, scope: list[str] | None = None) -> list[dict]:
        """Finished questions as evaluation records (question, answer, citations, context, usage, ratings),
        oldest first; `rated`: any, rated, up or down. `scope`: only these collections (None: all)."""
        return ledger.export_questions(self.db.get(), collection=collection, since=since, collections=scope,
                                       rated=rated, limit=limit)

    def collection_of(self, qid: str) -> str:
        """The collection a question was asked of (404 `question_not_found` when there is none)."""
        return ledger.collection_of(self.db.get(), qid)


def question_slots(settings: Settings, generator: LLM | None) -> int:
    """Questions answered at once: `max_concurrent_questions` with a runtime that serves concurrent calls
    (a server), else one."""
    from rag.models import runtimes

    kind = runtimes.of(generator)
    return settings.max_concurrent_questions if kind is not None and kind.concurrent else 1


def _refuse_above(asked: dict, ceilings: dict) -> None:
    """Server settings are ceilings: a request may lower a budget, never raise it."""
    for name, limit in ceilings.items():
        value = asked.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            raise RagError(f"{name} {value} is above this server's limit of {limit}", code="budget_above_limit",
                           status=422)


def recorded_trace(settings: Settings, qid: str) -> dict:
    """A question's trace straight from the ledger, without loading any model (`rag trace`)."""
    with closing(open_configured(settings)) as conn:
        return ledger.get_trace(conn, qid)


def recorded_export(settings: Settings, *, collection: str | None = None, since: str | None = None,
                    rated: str = "any", limit: int = 10_000) -> list[dict]:
    """Evaluation records straight from the ledger, without loading any model (`rag questions export`)."""
    with closing(open_configured(settings)) as conn:
        if collection:
            store.get_collection(conn, collection)
        return ledger.export_questions(conn, collection=collection, since=since, rated=rated, limit=limit)
