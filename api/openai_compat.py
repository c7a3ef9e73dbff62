"""OpenAI-compatible chat: any OpenAI client (the `openai` library, Open WebUI) talks to a collection as
if it were a model. `GET /v1/models` lists the collections the key may read; `POST /v1/chat/completions`
answers the last user message with the earlier messages as history (`rag.service.chat`), as JSON or as
OpenAI's stream of `chat.completion.chunk`s ending with `data: [DONE]`. Errors have OpenAI's shape
(`{"error": {"message", "type", "code", "param"}}`, written by `api.app`'s handlers for these paths).

The stream carries the checked answer: the loop answers first (its citations and clean-up need the
whole text), then the text is sent in pieces; a role chunk goes out at once so the client sees the
stream open during the prefill.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from api.openapi import errors
from api.questions import _ASKING, run_in_thread
from api.schemas import ChatCompletionOut, ChatIn, ModelListOut
from api.security import principal
from rag.service.answering import Answer
from rag.service.auth import Principal
from rag.service.chat import ChatMessage, ChatService

router = APIRouter(tags=["openai"])

OPENAI_PATHS = frozenset({"/v1/models", "/v1/chat/completions"})
_PIECE_RE = re.compile(r".{1,24}(?:\s+|$)|.{1,24}", re.DOTALL)  # ~a few words per chunk, as a model streams


def _epoch(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


@router.get("/v1/models", response_model=ModelListOut)
def list_models(request: Request, who: Principal = Depends(principal)) -> dict:
    scope = who.scope()
    records = request.app.state.runtime.collections.list()
    return {"object": "list", "data": [{"id": c.name, "object": "model", "created": _epoch(c.created_at),
                                        "owned_by": "rag"} for c in records if scope is None or c.name in scope]}


_CHAT_200 = {200: {"model": ChatCompletionOut, "description": "The answer (`stream: false`), or with `stream: true` "
                   "Server-Sent Events: `data: <chat.completion.chunk>` lines (the role, the text in pieces, the "
                   "finish with `question_id` and `citations`, then one with `usage` and no choices), then "
                   "`data: [DONE]`; a failure mid-stream is a `data: {\"error\": ...}` line.",
                   "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.post("/v1/chat/completions", response_model=ChatCompletionOut,
             responses={**_CHAT_200, **errors({400: ["invalid_messages"], 404: ["collection_not_found"], **_ASKING})})
def chat_completions(body: ChatIn, request: Request, who: Principal = Depends(principal)):
    who.require(body.model)
    runtime = request.app.state.runtime
    messages = [ChatMessage(m.role, m.text()) for m in body.messages]
    prepared = runtime.chat.prepare(body.model, messages, max_tokens=body.max_completion_tokens or body.max_tokens)
    slot = runtime.quotas.question(who.key_id)  # every 4xx/429/503 before a stream starts
    created = int(time.time())
    if not body.stream:
        with slot:
            done = runtime.questions.ask(prepared)
            slot.spent(done.usage["model_calls"])
        return completion(done, body.model, created)
    run = run_in_thread(runtime.questions, prepared, slot)

    def chunk(delta: dict | None, finish: str | None = None, **extra) -> bytes:
        obj = {"id": f"chatcmpl-{run.qid}", "object": "chat.completion.chunk", "created": created, "model": body.model,
               "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()

    def stream():
        try:
            yield chunk({"role": "assistant", "content": ""})
            while (item := run.items.get()) is not None:
                kind, data = item
                if kind == "error":
                    yield f"data: {json.dumps(openai_error(data['error']['code'], data['error']['message'], 500))}\n\n".encode()
                elif kind == "final":
                    for piece in _PIECE_RE.findall(ChatService.content(data)):
                        if piece:
                            yield chunk({"content": piece})
                    yield chunk({}, _finish(data), question_id=data.id, citations=[c.to_dict() for c in data.citations])
                    yield chunk(None, usage=usage(data))
            yield b"data: [DONE]\n\n"
        finally:
            run.gone.set()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _finish(answer: Answer) -> str:
    return "length" if answer.incomplete_reason == "max_answer_tokens" else "stop"


def usage(answer: Answer) -> dict:
    """OpenAI's usage from the ledger's totals: every model call of the question (condense, rewrite, answer)."""
    p, c = int(answer.usage.get("prompt_tokens", 0)), int(answer.usage.get("completion_tokens", 0))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def completion(answer: Answer, model: str, created: int) -> dict:
    return {"id": f"chatcmpl-{answer.id}", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ChatService.content(answer)},
                         "finish_reason": _finish(answer)}],
            "usage": usage(answer), "question_id": answer.id, "citations": [c.to_dict() for c in answer.citations]}


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(code: str, message: str, status: int) -> dict:
    """OpenAI's error body, with our machine-readable code (the README's error table)."""
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "code": code, "param": None}}
