"""Conversations: a collection's sequence of questions, each turn answered with the earlier ones as
history (`rag.service.conversations`); a turn is asked and streamed exactly like a question."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from api.openapi import errors
from api.questions import _ANSWER, _ASKING, answer, overrides
from api.schemas import (
    CollectionPath,
    ConversationId,
    ConversationIn,
    ConversationListOut,
    ConversationOut,
    QuestionIn,
)
from api.security import principal
from rag.errors import NotFound
from rag.service.auth import Principal
from rag.service.conversations import ConversationService

router = APIRouter(tags=["conversations"])

_CONVERSATION_404 = errors({404: ["conversation_not_found"]})


def _readable(request: Request, who: Principal, cid: str) -> ConversationService:
    """The service, once the key may read the conversation's collection: another tenant's conversation
    is the same 404 as a missing one."""
    service = request.app.state.runtime.conversations
    missing = NotFound(f"conversation {cid!r} does not exist", code="conversation_not_found")
    try:
        collection = service.collection_of(cid)
    except NotFound:
        raise missing from None
    who.require(collection, missing=missing)
    return service


@router.post("/v1/collections/{name}/conversations", status_code=201, response_model=ConversationOut,
             responses=errors({404: ["collection_not_found"]}))
def create_conversation(name: CollectionPath, request: Request, body: ConversationIn | None = None,
                        who: Principal = Depends(principal)) -> dict:
    who.require(name)
    return request.app.state.runtime.conversations.create(name, body.title if body else "")


@router.get("/v1/collections/{name}/conversations", response_model=ConversationListOut,
            responses=errors({404: ["collection_not_found"]}))
def list_conversations(name: CollectionPath, request: Request, limit: int = Query(50, ge=1, le=1000),
                       who: Principal = Depends(principal)) -> dict:
    who.require(name)
    return {"conversations": request.app.state.runtime.conversations.list(name, limit)}


@router.get("/v1/conversations/{cid}", responses=_CONVERSATION_404)
def get_conversation(cid: ConversationId, request: Request, who: Principal = Depends(principal)) -> dict:
    """The conversation and its turns in order: each an answered question as `GET /v1/questions/{id}`
    returns it (answer, citations, usage, calls, feedback), with its `turn` index and, when it was condensed,
    its `standalone_question`."""
    return _readable(request, who, cid).get(cid)


@router.delete("/v1/conversations/{cid}", status_code=204, responses=_CONVERSATION_404)
def delete_conversation(cid: ConversationId, request: Request, who: Principal = Depends(principal)) -> Response:
    """Deletes the conversation; its questions stay in the ledger (usage still counts them)."""
    _readable(request, who, cid).delete(cid)
    return Response(status_code=204)


@router.post("/v1/conversations/{cid}/questions",
             responses={**_ANSWER, **errors({404: ["conversation_not_found", "collection_not_found"],
                                            409: ["conversation_busy"], **_ASKING})})
def ask_turn(cid: ConversationId, body: QuestionIn, request: Request, who: Principal = Depends(principal)):
    """The conversation's next turn: the body and the answer (JSON or Server-Sent Events) are those of
    `POST /v1/collections/{name}/questions`, plus `conversation_id`, `turn` and `standalone_question`."""
    service = _readable(request, who, cid)
    prepared = service.prepare(cid, body.question, *overrides(body))
    return answer(request.app.state.runtime, who, prepared, stream=body.stream)
