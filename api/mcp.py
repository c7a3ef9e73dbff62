"""The service as MCP tools (Model Context Protocol), for agents: `list_collections`, `search`, `ask`
and `get_trace`, over stdio (`rag mcp`) or streamable HTTP (`/mcp` on the service).

Built on the official `mcp` SDK (`MCPServer`). Each tool is a thin call into `rag.service`, never
into HTTP, with the same rules as the matching `/v1` route: the caller's `Principal` must read the
collection (another tenant's collection or question is "not found", exactly as a 404), request
bodies are checked by the API's own models (`SearchIn`, `QuestionIn`), and every call counts
against the key's request rate, a question against its question slot. A refusal is a tool error
(`isError`) whose text names the error code in brackets, e.g. `[collection_not_found] ...`.

Who is calling is the transport's business: over HTTP the `Authorization: Bearer` header of each
request (a request without a valid key never reaches the SDK: 401 `unauthorized`, see `HttpEndpoint`);
over stdio the one key the process was started with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from api.schemas import QuestionIn, SearchIn, SearchOut
from rag import __version__
from rag.errors import NotFound, RagError
from rag.service.auth import OPEN, Principal, Unauthorized
from rag.service.runtime import Runtime

#: Finds the runtime and the caller of one tool call (HTTP: from the request; stdio: fixed).
RuntimeOf = Callable[[], Runtime]
PrincipalOf = Callable[[Context], Principal]

INSTRUCTIONS = ("Answers questions from the document collections of a self-hosted service, with citations. "
                "Call list_collections first; ask answers one standalone question from one collection and "
                "returns its question id, whose get_trace shows every step (queries, candidates, decisions, "
                "model calls). search is retrieval only (no model call).")


def build(runtime_of: RuntimeOf, principal_of: PrincipalOf) -> MCPServer:
    """An MCP server whose tools run on `runtime_of()` as `principal_of(ctx)`."""
    server = MCPServer("rag", version=__version__, instructions=INSTRUCTIONS)

    def caller(ctx: Context) -> tuple[Runtime, Principal]:
        return runtime_of(), principal_of(ctx)

    @server.tool()
    def list_collections(ctx: Context) -> dict[str, Any]:
        """The collections this key may read: name, description and creation time."""
        with _errors():
            runtime, who = caller(ctx)
            return {"collections": [{"name": c.name, "description": c.description, "created_at": c.created_at}
                                    for c in runtime.collections.list() if who.can_read(c.name)]}

    @server.tool()
    def search(collection: str, query: str, ctx: Context,
               k: Annotated[int, Field(ge=1, le=100, description="Hits to return.")] = 10) -> SearchOut:
        """Hybrid retrieval (dense + BM25, fused) in one collection, without any model call: the best
        chunks with their file, page, text and each retriever's score and rank."""
        with _errors():
            runtime, who = caller(ctx)
            body = SearchIn.model_validate({"query": query, "k": k})
            who.require(collection)
            return SearchOut.of(runtime.searcher.search_found(collection, body.query, body.k))

    @server.tool()
    def ask(collection: str, question: str, ctx: Context,
            max_model_calls: Annotated[int | None, Field(ge=0, le=50, description="Spend at most this many model "
                                                         "calls (at most the server's limit).")] = None) -> dict[str, Any]:
        """Answer one standalone question from one collection's documents: the answer, its citations
        (file, page, quoted text), usage (model calls, tokens, seconds) and the question's `id` for
        get_trace. `abstained` is true when the documents do not answer it."""
        from rag.service.answering import AskRequest

        with _errors():
            runtime, who = caller(ctx)
            budget = None if max_model_calls is None else {"max_model_calls": max_model_calls}
            body = QuestionIn.model_validate({"question": question, "budget": budget})
            who.require(collection)
            service = runtime.questions
            prepared = service.prepare(AskRequest(collection=collection, question=body.question,
                                                  budget=body.budget.model_dump(exclude_none=True) if body.budget else None))
            with runtime.quotas.question(who.key_id) as slot:
                answer = service.ask(prepared)
                slot.spent(answer.usage["model_calls"])
            return answer.to_dict()

    @server.tool()
    def get_trace(question_id: str, ctx: Context) -> dict[str, Any]:
        """A recorded question's trace: every step of the loop (queries, candidates with scores, decisions
        with reasons, model calls with tokens, packing) and the context the answer was written from."""
        with _errors():
            runtime, who = caller(ctx)
            service = runtime.questions
            missing = NotFound(f"question {question_id!r} does not exist", code="question_not_found")
            try:
                collection = service.collection_of(question_id)
            except NotFound:
                raise missing from None
            who.require(collection, missing=missing)
            return service.trace(question_id)

    return server


class _errors:
    """Turns what the service refuses into a tool error naming the code: `[code] message`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, RagError):
            raise ToolError(f"[{exc.code}] {exc.message}") from None
        if isinstance(exc, ValidationError):
            from api.app import named_error  # the codes the HTTP API gives the same failures

            if named := named_error(exc.errors()):
                raise ToolError(f"[{named.code}] {named.message}") from None
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ToolError(f"[invalid_request] {problems}") from None
        return False


# ------------------------------------------------------------------ streamable HTTP on the service


def header_principal(runtime_of: RuntimeOf) -> PrincipalOf:
    """The caller of a tool call over HTTP: the key in the request's `Authorization` header (checked
    again here; `HttpEndpoint` already refused a request without one)."""

    def principal_of(ctx: Context) -> Principal:
        runtime = runtime_of()
        if runtime.settings.auth == "off":
            return OPEN
        scheme, _, token = ((ctx.headers or {}).get("authorization") or "").partition(" ")
        who = runtime.keys.authenticate(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if who is None:
            raise Unauthorized("send an API key: Authorization: Bearer <key>")
        return who

    return principal_of


class HttpEndpoint:
    """`/mcp`: the SDK's streamable HTTP transport behind our key check. Stateless (each request stands
    alone and carries its key), so any server of a scaled-out install can answer any request and no
    session outlives the key that opened it. Host and Origin are checked by `api.security.Guards` in
    front of the whole app (the SDK's own DNS-rebinding check is off, it would not know RAG_ALLOWED_HOSTS)."""

    def __init__(self, server: MCPServer):
        server.streamable_http_app(stateless_http=True, transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=False))  # creates the session manager this endpoint hands requests to
        self.server = server

    def lifespan(self):
        """Runs the SDK's session manager (its task group) for as long as the app runs."""
        return self.server.session_manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from api.security import error_response, principal

        try:
            principal(Request(scope, receive))  # 401 without a valid key, 429 over the key's request rate
        except RagError as exc:
            return await error_response(exc)(scope, receive, send)
        await self.server.session_manager.handle_request(scope, receive, send)
