"""Questions: ask (JSON or Server-Sent Events), read back answers and traces, and usage."""

from __future__ import annotations

import json
import queue
import threading
import uuid

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.schemas import QuestionIn
from rag.errors import RagError
from rag.service.answering import AskRequest, PreparedQuestion, QuestionService

router = APIRouter(tags=["questions"])


class ClientGone(Exception):
    code = "client_disconnected"


def _sse(event: str, data) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


@router.post("/v1/collections/{name}/questions")
def ask_question(name: str, body: QuestionIn, request: Request):
    service = request.app.state.runtime.questions
    budget = body.budget.model_dump(exclude_none=True) if body.budget else None
    req = AskRequest(collection=name, question=body.question, budget=budget, options=body.options)
    prepared = service.prepare(req)  # every 4xx/503 before a stream starts
    if not body.stream:
        return service.ask(prepared)
    return _stream(service, prepared)


def _stream(service: QuestionService, prepared: PreparedQuestion) -> StreamingResponse:
    """The loop runs in a worker thread; events and tokens reach the client through a queue.

    When the client goes away the next event raises in the loop, which ends the question; the
    ledger already holds every call made, and the question is recorded as failed
    (`client_disconnected`)."""
    q: queue.Queue = queue.Queue(maxsize=1000)
    gone = threading.Event()
    qid = uuid.uuid4().hex

    def push(kind: str, data) -> None:
        if gone.is_set():
            raise ClientGone("the streaming client disconnected")
        q.put((kind, data))

    def run() -> None:
        try:
            final = service.ask(prepared, qid=qid, on_event=lambda e: push("step", e), on_token=lambda t: push("token", {"text": t}))
            q.put(("final", final))
        except RagError as exc:
            q.put(("error", {"error": exc.to_dict(), "id": qid}))
        except ClientGone:
            pass
        except Exception as exc:  # noqa: BLE001 - reported to the client as an event
            q.put(("error", {"error": {"code": "internal_error", "message": type(exc).__name__}, "id": qid}))
        finally:
            q.put(None)

    threading.Thread(target=run, name=f"question-{qid}", daemon=True).start()

    def body():
        try:
            yield _sse("question", {"id": qid})
            while (item := q.get()) is not None:
                yield _sse(*item)
        finally:
            gone.set()

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/v1/questions/{qid}")
def get_question(qid: str, request: Request) -> dict:
    return request.app.state.runtime.questions.get(qid)


@router.get("/v1/questions/{qid}/trace")
def get_trace(qid: str, request: Request) -> dict:
    return request.app.state.runtime.questions.trace(qid)


@router.get("/v1/questions")
def list_questions(request: Request, collection: str | None = None, since: str | None = None,
                   limit: int = Query(50, ge=1, le=1000)) -> dict:
    return {"questions": request.app.state.runtime.questions.list(collection, since, limit)}


@router.get("/v1/usage")
def usage(request: Request, collection: str | None = None, group_by: str = "day") -> dict:
    return {"group_by": group_by, "collection": collection,
            "usage": request.app.state.runtime.questions.usage(collection, group_by)}
