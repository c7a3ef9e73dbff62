"""Questions: ask (JSON or Server-Sent Events), read back answers and traces, and usage."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.openapi import EMBEDDING, errors
from api.schemas import (ChangeOut, CollectionPath, CollectionQuery, FeedbackIn, FeedbackOut, QuestionId, QuestionIn,
                         ReplayOut)
from api.security import principal
from rag.errors import NotFound, RagError
from rag.service.answering import AskRequest, PreparedQuestion, QuestionService
from rag.service.auth import Principal
from rag.service.quotas import QuestionSlot
from rag.service.replay import replay

router = APIRouter(tags=["questions"])


class ClientGone(Exception):
    code = "client_disconnected"


def _sse(event: str, data) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


# The questions a run can refuse before it starts (a stream starts only once these passed).
_ASKING = {409: ["collection_empty"], 422: ["empty_question", "budget_above_limit"], 429: ["too_many_questions"],
           502: ["generation_failed", *EMBEDDING[502]], 503: ["generator_unavailable", *EMBEDDING[503]]}
_ANSWER = {200: {"description": "The answer (`stream: false`), or Server-Sent Events (`stream: true`): `question` "
                                "(its id), `step` events as the loop runs, `token` events, then `final` (the same "
                                "object as the JSON answer) or `error`.",
                 "content": {"application/json": {"schema": {"type": "object"}},
                             "text/event-stream": {"schema": {  # one event
                                 "type": "object", "required": ["event", "data"],
                                 "properties": {"event": {"enum": ["question", "step", "token", "final", "error"]},
                                                "data": {"type": "string", "contentMediaType": "application/json"}}}}}}}
_QUESTION_404 = errors({404: ["question_not_found"]})


@router.post("/v1/collections/{name}/questions", responses={**_ANSWER, **errors({404: ["collection_not_found"], **_ASKING})})
def ask_question(name: CollectionPath, body: QuestionIn, request: Request, who: Principal = Depends(principal)):
    who.require(name)
    runtime = request.app.state.runtime
    service = runtime.questions
    budget, options = overrides(body)
    prepared = service.prepare(AskRequest(collection=name, question=body.question, budget=budget, options=options))
    return answer(runtime, who, prepared, stream=body.stream)


def overrides(body: QuestionIn) -> tuple[dict | None, dict | None]:
    """The request's budget and options, only the fields it set."""
    return (body.budget.model_dump(exclude_none=True) if body.budget else None,
            body.options.model_dump(exclude_none=True) if body.options else None)


def answer(runtime, who: Principal, prepared: PreparedQuestion, *, stream: bool):
    """A prepared question (or conversation turn) answered as JSON or as Server-Sent Events, within the
    key's question slot (a 429 before a stream starts)."""
    service = runtime.questions
    slot = runtime.quotas.question(who.key_id)
    if not stream:
        with slot:
            done = service.ask(prepared)
            slot.spent(done.usage["model_calls"])
        return done.to_dict()
    return _stream(service, prepared, slot)


@dataclass
class Running:
    """A question answered in a worker thread: what it produced arrives on `items` as (kind, data),
    `None` at the end; `gone` set by the reader stops the loop at its next event or token."""

    qid: str
    items: queue.Queue
    gone: threading.Event


def run_in_thread(service: QuestionService, prepared: PreparedQuestion, slot: QuestionSlot) -> Running:
    """The loop runs in a worker thread, which holds the key's question slot until the question
    ends. Items: ("step", event), ("token", {"text"}), then ("final", Answer) or ("error", body).

    When the client goes away the next event raises in the loop, which ends the question; the
    ledger already holds every call made, and the question is recorded as failed
    (`client_disconnected`)."""
    run = Running(uuid.uuid4().hex, queue.Queue(maxsize=1000), threading.Event())
    q, qid = run.items, run.qid

    def push(kind: str, data) -> None:
        if run.gone.is_set():
            raise ClientGone("the streaming client disconnected")
        q.put((kind, data))

    def work() -> None:
        try:
            with slot:
                final = service.ask(prepared, qid=qid, on_event=lambda e: push("step", e),
                                    on_token=lambda t: push("token", {"text": t}))
                slot.spent(final.usage["model_calls"])
            q.put(("final", final))
        except RagError as exc:
            q.put(("error", {"error": exc.to_dict(), "id": qid}))
        except ClientGone:
            pass
        except Exception as exc:  # noqa: BLE001 - reported to the client as an event
            q.put(("error", {"error": {"code": "internal_error", "message": type(exc).__name__}, "id": qid}))
        finally:
            q.put(None)

    threading.Thread(target=work, name=f"question-{qid}", daemon=True).start()
    return run


def _stream(service: QuestionService, prepared: PreparedQuestion, slot: QuestionSlot) -> StreamingResponse:
    """Server-Sent Events: `question`, `step`s and `token`s as they come, then `final` or `error`."""
    run = run_in_thread(service, prepared, slot)

    def body():
        try:
            yield _sse("question", {"id": run.qid})
            while (item := run.items.get()) is not None:
                kind, data = item
                yield _sse(kind, data.to_dict() if kind == "final" else data)
        finally:
            run.gone.set()

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _readable_question(request: Request, who: Principal, qid: str) -> QuestionService:
    service = request.app.state.runtime.questions
    who.require(service.collection_of(qid), missing=NotFound(f"question {qid!r} does not exist", code="question_not_found"))
    return service


_EXPORT = {200: {"description": "One JSON object per line (JSON Lines), oldest question first: `id`, "
                               "`collection`, `question`, `status`, `answer`, `abstained`, `citations`, `context` (the "
                               "passages the answer was written from), `usage`, `error`, `created_at` and `feedback` "
                               "(`rating`, `comment`, `created_at`).",
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}}


# Before `/v1/questions/{qid}`, which would take `export` for an id.
@router.get("/v1/questions/export", response_class=StreamingResponse,
            responses={**_EXPORT, **errors({404: ["collection_not_found"]})})
def export_questions(request: Request, collection: CollectionQuery = None,
                     since: str | None = Query(None, max_length=64, description="Only questions asked at or after "
                                               "this UTC time (ISO 8601)."),
                     feedback: Literal["any", "rated", "up", "down"] = Query(
                         "any", description="any: every finished question; rated: those with a rating; up or "
                                            "down: those with a rating of that kind."),
                     limit: int = Query(10_000, ge=1, le=100_000),
                     who: Principal = Depends(principal)) -> StreamingResponse:
    """Finished questions of the collections the key may read as evaluation data (what `rag questions
    export` writes): the question, the answer, its citations and context, usage and ratings."""
    if collection:
        who.require(collection)
    records = request.app.state.runtime.questions.export(collection=collection, since=since, rated=feedback,
                                                         limit=limit, scope=who.scope())
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.get("/v1/questions/{qid}", responses=_QUESTION_404)
def get_question(qid: QuestionId, request: Request, who: Principal = Depends(principal)) -> dict:
    return _readable_question(request, who, qid).get(qid)


@router.get("/v1/questions/{qid}/trace", responses=_QUESTION_404)
def get_trace(qid: QuestionId, request: Request, who: Principal = Depends(principal)) -> dict:
    return _readable_question(request, who, qid).trace(qid)


@router.post("/v1/questions/{qid}/feedback", response_model=FeedbackOut, responses=_QUESTION_404)
def give_feedback(qid: QuestionId, body: FeedbackIn, request: Request, who: Principal = Depends(principal)) -> FeedbackOut:
    """Rates a question's answer (`up` or `down`, an optional comment): any key that may read the question's
    collection. One rating per key and question; a new one replaces the key's earlier one."""
    service = _readable_question(request, who, qid)
    return FeedbackOut(**service.feedback(qid, who.key_id, body.rating, body.comment))


@router.post("/v1/questions/{qid}/replay", response_model=ReplayOut,
             responses=errors({404: ["question_not_found", "collection_not_found"], **_ASKING}))
def replay_question(qid: QuestionId, request: Request, who: Principal = Depends(principal)) -> ReplayOut:
    """Re-runs a recorded question with its recorded budget and options (as `rag replay` does) and
    compares the outcome, queries, candidates, context and cost with the recording."""
    service = _readable_question(request, who, qid)
    runtime = request.app.state.runtime
    with runtime.quotas.question(who.key_id) as slot:
        done = replay(service, runtime.settings, qid)
        slot.spent(done.model_calls)
    return ReplayOut(id=done.id, replayed_from=done.replayed_from, identical=done.identical, note=done.note,
                     changes=[ChangeOut(aspect=c.aspect, changed=c.changed, before=c.before, after=c.after)
                              for c in done.changes])


@router.get("/v1/questions", responses=errors({404: ["collection_not_found"]}))
def list_questions(request: Request, collection: CollectionQuery = None,
                   since: str | None = Query(None, max_length=64, description="Only questions asked at or after "
                                             "this UTC time (ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00:00)."),
                   limit: int = Query(50, ge=1, le=1000),
                   order: Literal["recent", "tokens"] = Query("recent", description="recent: newest first; tokens: "
                                                              "prompt + completion tokens, most first (ties newest first)."),
                   who: Principal = Depends(principal)) -> dict:
    if collection:
        who.require(collection)
    return {"questions": request.app.state.runtime.questions.list(collection, since, limit, order=order,
                                                                  scope=who.scope())}


@router.get("/v1/usage", responses=errors({400: ["invalid_group_by"], 404: ["collection_not_found"]}))
def usage(request: Request, collection: CollectionQuery = None,
          # Checked by the ledger (400 `invalid_group_by`, naming the choices); the schema lists them.
          group_by: str = Query("day", description="day (UTC, newest first) or collection (by name).",
                                json_schema_extra={"enum": ["day", "collection"]}),
          who: Principal = Depends(principal)) -> dict:
    if collection:
        who.require(collection)
    return {"group_by": group_by, "collection": collection,
            "usage": request.app.state.runtime.questions.usage(collection, group_by, scope=who.scope())}
